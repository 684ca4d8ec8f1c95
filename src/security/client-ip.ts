import type { Context } from "hono";
import type { AppEnv } from "../app/env.ts";

/** Set by Cloudflare's edge, which overwrites any value a client sends; the only source of the client ip. */
const CLIENT_IP_HEADER = "cf-connecting-ip";
/** Longer than any textual address with a zone id; anything longer is not parsed at all. */
const MAX_ADDRESS_CHARS = 100;
export const UNKNOWN_ADDRESS = "unknown";

function parseIpv4(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes: number[] = [];
  for (const part of parts) {
    // No leading zeros: "010" means 8 to some parsers and 10 to others.
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return undefined;
    const byte = Number(part);
    if (byte > 255) return undefined;
    bytes.push(byte);
  }
  return bytes;
}

function parseGroups(text: string): number[] | undefined {
  if (text === "") return [];
  const groups: number[] = [];
  for (const group of text.split(":")) {
    if (!/^[0-9A-Fa-f]{1,4}$/.test(group)) return undefined;
    groups.push(Number.parseInt(group, 16));
  }
  return groups;
}

/** The eight 16-bit groups of an IPv6 address (RFC 4291 §2.2 text forms, zone id allowed), or undefined. */
export function parseIpv6(text: string): number[] | undefined {
  let address = text;
  const zone = address.indexOf("%");
  if (zone !== -1) {
    // RFC 6874: a zone id names a local interface; it says nothing about who is calling.
    if (!/^[\w.~-]+$/.test(address.slice(zone + 1))) return undefined;
    address = address.slice(0, zone);
  }
  const lastColon = address.lastIndexOf(":");
  if (lastColon === -1) return undefined;
  let tail: number[] = [];
  if (address.includes(".", lastColon)) {
    const ipv4 = parseIpv4(address.slice(lastColon + 1));
    if (!ipv4) return undefined;
    const [a = 0, b = 0, c = 0, d = 0] = ipv4;
    tail = [(a << 8) | b, (c << 8) | d];
    address = address.slice(0, lastColon + 1);
    // "::1.2.3.4" keeps its "::"; "x:…:1.2.3.4" loses only the colon before the dotted part.
    if (!address.endsWith("::")) address = address.slice(0, -1);
  }
  const halves = address.split("::");
  if (halves.length > 2) return undefined;
  const head = parseGroups(halves[0] ?? "");
  const rest = halves.length === 2 ? parseGroups(halves[1] ?? "") : [];
  if (!head || !rest) return undefined;
  const known = [...head, ...rest, ...tail];
  if (halves.length === 1) return known.length === 8 ? known : undefined;
  // "::" stands for at least one group of zeros.
  if (known.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - known.length).fill(0), ...rest, ...tail];
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run of two or more zero groups as "::". */
function formatIpv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === 0) j += 1;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

/**
 * The key under which a client address is counted: an IPv4 address as itself (also when it comes
 * IPv4-mapped, `::ffff:a.b.c.d`), an IPv6 address as its /64 (`2001:db8:1:2::/64`), since one
 * subscriber usually holds a whole /64 and could otherwise take a new key per request; anything
 * that is not an address is `unknown`.
 */
export function clientAddressKey(raw: string | undefined): string {
  const text = raw?.trim() ?? "";
  if (text === "" || text.length > MAX_ADDRESS_CHARS) return UNKNOWN_ADDRESS;
  const ipv4 = parseIpv4(text);
  if (ipv4) return ipv4.join(".");
  const groups = parseIpv6(text);
  if (!groups) return UNKNOWN_ADDRESS;
  const [g0, g1, g2, g3, g4, g5, g6 = 0, g7 = 0] = groups;
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0xffff) {
    return [g6 >> 8, g6 & 0xff, g7 >> 8, g7 & 0xff].join(".");
  }
  return `${formatIpv6([...groups.slice(0, 4), 0, 0, 0, 0])}/64`;
}

/**
 * The key of the one address Cloudflare gives as CF-Connecting-IP to every request a Worker on
 * another zone sends (`2a06:98c0:3600::103`, Workers docs "Headers"): every such caller would
 * share one limit, and anyone with a Worker could lock all of them out.
 */
const WORKER_SUBREQUEST_KEY = "2a06:98c0:3600::/64";
/** Cloudflare adds it to every Worker subrequest: the zone that owns the calling Worker. */
const CF_WORKER_HEADER = "cf-worker";
const ZONE_NAME = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/;

/**
 * The client address key (see clientAddressKey) for anonymous callers and rejected credentials;
 * for a request from another zone's Worker, that zone (`worker:<zone>`), so one zone's guesses
 * lock out only its own Workers.
 */
export function clientIp(c: Context<AppEnv>): string {
  const key = clientAddressKey(c.req.header(CLIENT_IP_HEADER));
  if (key !== WORKER_SUBREQUEST_KEY) return key;
  const zone = c.req.header(CF_WORKER_HEADER)?.trim().toLowerCase();
  return zone !== undefined && ZONE_NAME.test(zone) ? `worker:${zone}` : key;
}
