// Vite (and so vitest) turns `import text from "../file?raw"` into the file's text; tests use it
// to hold documentation against the code it describes.
declare module "*?raw" {
  const text: string;
  export default text;
}
