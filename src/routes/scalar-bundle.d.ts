// The API reference's browser bundle, imported as text by a module rule in wrangler.toml.
declare module "*/@scalar/api-reference/dist/browser/standalone.js" {
  const text: string;
  export default text;
}
