import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { clientAddressKey, parseIpv6 } from "../../../src/security/client-ip.ts";

describe("clientAddressKey", () => {
  it.each([
    ["an IPv4 address", "203.0.113.9", "203.0.113.9"],
    ["an IPv4 address with blanks around it", " 203.0.113.9 ", "203.0.113.9"],
    ["IPv4-mapped IPv6", "::ffff:203.0.113.9", "203.0.113.9"],
    ["IPv4-mapped IPv6 in hex", "::ffff:cb00:7109", "203.0.113.9"],
    ["IPv4-mapped IPv6 spelled out", "0:0:0:0:0:FFFF:203.0.113.9", "203.0.113.9"],
    ["a compressed IPv6 address", "2001:db8::1", "2001:db8::/64"],
    ["another address of the same /64", "2001:db8::ffff:1:2:3", "2001:db8::/64"],
    ["the same /64 spelled out", "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::/64"],
    ["upper case", "2001:DB8:0:0:AB::1", "2001:db8::/64"],
    ["a /64 without zeros", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["zeros in the middle of the prefix", "2001:0:0:5::9", "2001:0:0:5::/64"],
    ["a zone id", "fe80::1%eth0", "fe80::/64"],
    ["a numeric zone id", "fe80::abcd%3", "fe80::/64"],
    ["an IPv4 tail on a non-mapped address", "64:ff9b::192.0.2.33", "64:ff9b::/64"],
    ["the unspecified address", "::", "::/64"],
    ["loopback", "::1", "::/64"],
  ])("keys %s", (_name, raw, key) => {
    expect(clientAddressKey(raw)).toBe(key);
  });

  it.each([
    ["no header", undefined],
    ["an empty header", ""],
    ["a host name", "example.com"],
    ["an IPv4 octet over 255", "203.0.113.256"],
    ["an IPv4 octet with a leading zero", "203.0.113.09"],
    ["three IPv4 octets", "203.0.113"],
    ["two `::`", "2001::db8::1"],
    ["nine groups", "1:2:3:4:5:6:7:8:9"],
    ["seven groups without `::`", "1:2:3:4:5:6:7"],
    ["`::` standing for no group", "1:2:3:4::5:6:7:8"],
    ["a five-digit group", "2001:db8::12345"],
    ["a leading single colon", ":2001:db8::1"],
    ["a trailing single colon", "2001:db8::1:"],
    ["a non-hex group", "2001:db8::g"],
    ["an empty zone id", "fe80::1%"],
    ["a zone id with a space", "fe80::1%eth 0"],
    ["brackets", "[2001:db8::1]"],
    ["a port", "203.0.113.9:443"],
    ["a list of addresses", "203.0.113.9, 198.51.100.1"],
    ["a bad IPv4 tail", "::ffff:1.2.3"],
    ["an IPv4 tail in the middle", "::1.2.3.4:5"],
    ["a very long value", `2001:db8::1%${"a".repeat(200)}`],
  ])("keys %s as unknown", (_name, raw) => {
    expect(clientAddressKey(raw)).toBe("unknown");
  });

  const groups = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 });

  it("gives every spelling of one address the key of its /64, and every /64 its own key", () => {
    fc.assert(
      fc.property(groups, groups, fc.boolean(), (a, b, upper) => {
        const full = a.map((g) => g.toString(16).padStart(4, "0")).join(":");
        const spelled = upper ? full.toUpperCase() : full;
        // Same first 64 bits, any last 64 bits.
        const sibling = [...a.slice(0, 4), ...b.slice(4)].map((g) => g.toString(16)).join(":");
        const key = clientAddressKey(spelled);
        expect(parseIpv6(spelled)).toEqual(a);
        const mapped = a.slice(0, 6).every((g, i) => g === (i === 5 ? 0xffff : 0));
        if (mapped) return;
        expect(key).toMatch(/\/64$/);
        expect(clientAddressKey(sibling)).toBe(key);
        expect(clientAddressKey(`${spelled}%eth0`)).toBe(key);
        // The key itself parses back to the /64's first address.
        expect(parseIpv6(key.slice(0, -3))).toEqual([...a.slice(0, 4), 0, 0, 0, 0]);
        const other = [...b.slice(0, 4), ...a.slice(4)];
        if (other.slice(0, 4).join() !== a.slice(0, 4).join()) {
          expect(clientAddressKey(other.map((g) => g.toString(16)).join(":"))).not.toBe(key);
        }
      }),
    );
  });

  it("parses `::` wherever it stands", () => {
    fc.assert(
      fc.property(groups, fc.nat(7), fc.integer({ min: 1, max: 8 }), (a, start, length) => {
        const run = Math.min(length, 8 - start);
        const address = [...a];
        for (let i = start; i < start + run; i++) address[i] = 0;
        const hex = address.map((g) => g.toString(16));
        const compressed = `${hex.slice(0, start).join(":")}::${hex.slice(start + run).join(":")}`;
        expect(parseIpv6(compressed)).toEqual(address);
      }),
    );
  });
});
