import { nonPublicAddressReason, nonPublicHostReason, parseIpv6 } from "../lib/addresses.ts";
import { assert, assertEquals } from "./assert.ts";

Deno.test("address checks know which addresses are not public", () => {
  for (
    const address of [
      "127.0.0.1",
      "10.2.3.4",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "::",
      "fd00::1",
      "fe80::1",
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "::ffff:10.0.0.1",
      "64:ff9b::a00:1",
      "2002:c0a8:101::1",
    ]
  ) {
    assert(nonPublicAddressReason(address) !== undefined, `${address} must be refused`);
  }
  for (const address of ["8.8.8.8", "93.184.215.14", "172.32.0.1", "2606:4700::1111"]) {
    assertEquals(nonPublicAddressReason(address), undefined, `${address} is public`);
  }
  assertEquals(parseIpv6("::ffff:127.0.0.1"), [0, 0, 0, 0, 0, 0xffff, 0x7f00, 1]);
  assertEquals(parseIpv6("1:2:3:4:5:6:7:8:9"), undefined);
  for (const host of ["localhost", "LOCALHOST.", "app.localhost", "printer.local", "[::1]"]) {
    assert(nonPublicHostReason(host.replace(/^\[|\]$/g, "")) !== undefined, host);
  }
  assertEquals(nonPublicHostReason("images.example.com"), undefined);
});
