/**
 * Address checks for URLs the bridge fetches on a model's behalf: parsing IPv4 and IPv6 literals
 * and saying why an address or host name is not on the public internet (loopback, private,
 * link-local, CGNAT, reserved, IPv4 embedded in IPv6, `localhost`, `*.local`, ...). Pure: no DNS
 * here; the caller resolves names and checks every address with
 * {@linkcode nonPublicAddressReason}.
 */

/** The four octets of a dotted IPv4 address, or undefined. Pure. */
function parseIpv4(text: string): [number, number, number, number] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const octets = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : NaN));
  if (octets.some((o) => !(o >= 0 && o <= 255))) return undefined;
  return octets as [number, number, number, number];
}

/** The eight 16-bit groups of an IPv6 address (embedded IPv4 tail allowed), or undefined. Pure. */
export function parseIpv6(text: string): number[] | undefined {
  let s = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  if (!s.includes(":")) return undefined;
  const lastColon = s.lastIndexOf(":");
  const maybeV4 = s.slice(lastColon + 1);
  if (maybeV4.includes(".")) {
    // An embedded IPv4 tail (::ffff:127.0.0.1) becomes two hex groups.
    const v4 = parseIpv4(maybeV4);
    if (v4 === undefined) return undefined;
    const hi = ((v4[0] << 8) | v4[1]).toString(16);
    const lo = ((v4[2] << 8) | v4[3]).toString(16);
    s = `${s.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === "") return [];
    const groups = part.split(":");
    const out: number[] = [];
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0] ?? "");
  const rest = halves.length === 2 ? parse(halves[1] ?? "") : [];
  if (head === undefined || rest === undefined) return undefined;
  const known = head.length + rest.length;
  if (halves.length === 2) {
    if (known > 7) return undefined;
    return [...head, ...new Array<number>(8 - known).fill(0), ...rest];
  }
  return known === 8 ? head : undefined;
}

function ipv4Reason(o: readonly [number, number, number, number]): string | undefined {
  const [a, b, c] = o;
  if (a === 0) return "an unspecified address (0.0.0.0/8)";
  if (a === 10) return "a private address (10.0.0.0/8)";
  if (a === 127) return "a loopback address (127.0.0.0/8)";
  if (a === 100 && b >= 64 && b <= 127) return "a carrier-grade NAT address (100.64.0.0/10)";
  if (a === 169 && b === 254) return "a link-local address (169.254.0.0/16)";
  if (a === 172 && b >= 16 && b <= 31) return "a private address (172.16.0.0/12)";
  if (a === 192 && b === 168) return "a private address (192.168.0.0/16)";
  if (a === 192 && b === 0 && c === 0) return "a reserved address (192.0.0.0/24)";
  if (a === 198 && (b === 18 || b === 19)) return "a benchmarking address (198.18.0.0/15)";
  if (a >= 224) return "a multicast or reserved address (224.0.0.0/3)";
  return undefined;
}

/**
 * Why an IP address literal is not a public internet address ("a loopback address (127.0.0.0/8)"),
 * or undefined when it is public or not an IP address at all. Covers IPv4 private, loopback,
 * link-local, CGNAT and reserved ranges, IPv6 ::, ::1, fc00::/7, fe80::/10, multicast, and IPv4
 * embedded in IPv6 (mapped ::ffff:0:0/96, compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16).
 * Pure.
 */
export function nonPublicAddressReason(address: string): string | undefined {
  const v4 = parseIpv4(address);
  if (v4 !== undefined) return ipv4Reason(v4);
  const g = parseIpv6(address);
  if (g === undefined) return undefined;
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g;
  const embedded = (hi: number, lo: number) => ipv4Reason([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  const upperZero = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0;
  if (upperZero && g5 === 0 && g6 === 0 && g7 === 0) return "the unspecified address (::)";
  if (upperZero && g5 === 0 && g6 === 0 && g7 === 1) return "the loopback address (::1)";
  if (upperZero && (g5 === 0xffff || g5 === 0)) {
    const r = embedded(g6, g7);
    if (r !== undefined) return `${r}, as IPv4 inside IPv6`;
    return undefined;
  }
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) {
    const r = embedded(g6, g7);
    return r === undefined ? undefined : `${r}, through NAT64`;
  }
  if (g0 === 0x2002) {
    const r = embedded(g1, g2);
    return r === undefined ? undefined : `${r}, through 6to4`;
  }
  if ((g0 & 0xfe00) === 0xfc00) return "a unique-local address (fc00::/7)";
  if ((g0 & 0xffc0) === 0xfe80) return "a link-local address (fe80::/10)";
  if ((g0 & 0xffc0) === 0xfec0) return "a site-local address (fec0::/10)";
  if ((g0 & 0xff00) === 0xff00) return "a multicast address (ff00::/8)";
  return undefined;
}

/**
 * Why a URL host name is not public judging by the name alone (an address literal, "localhost",
 * `*.local`, ...), or undefined when only DNS can tell. Pure.
 */
export function nonPublicHostReason(hostname: string): string | undefined {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  const literal = nonPublicAddressReason(host);
  if (literal !== undefined) return literal;
  if (host === "" || host === "localhost" || host.endsWith(".localhost")) return "this machine";
  if (host === "localhost.localdomain") return "this machine";
  if (host.endsWith(".local")) return "a local-network (mDNS) name";
  if (host.endsWith(".internal") || host.endsWith(".home.arpa") || host.endsWith(".lan")) {
    return "a local-network name";
  }
  return undefined;
}

/** True when `hostname` is an IPv4 or IPv6 address literal (brackets and zone allowed). Pure. */
export function isIpLiteral(hostname: string): boolean {
  return parseIpv4(hostname) !== undefined || parseIpv6(hostname) !== undefined;
}
