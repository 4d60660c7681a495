package safehttp

import "net/netip"

// forbiddenPrefixes are the ranges a default client never connects to:
// everything that is not a globally reachable unicast address. The reasons
// are given per range; the IANA special-purpose registries list them all.
var forbiddenPrefixes = []netip.Prefix{
	// IPv4.
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network", includes 0.0.0.0
	netip.MustParsePrefix("10.0.0.0/8"),      // private
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, includes cloud metadata 169.254.169.254
	netip.MustParsePrefix("172.16.0.0/12"),   // private
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast, deprecated
	netip.MustParsePrefix("192.168.0.0/16"),  // private
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, includes broadcast 255.255.255.255
	// IPv6. IPv4-mapped addresses (::ffff:0:0/96) are unmapped and checked
	// as IPv4 before this list is consulted.
	netip.MustParsePrefix("::/96"),          // unspecified, loopback, deprecated IPv4-compatible
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("2001::/23"),      // IETF protocol assignments, includes Teredo
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("3fff::/20"),      // documentation
	netip.MustParsePrefix("fc00::/7"),       // unique local (private)
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // site-local, deprecated
	netip.MustParsePrefix("ff00::/8"),       // multicast
}

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// IsForbidden reports whether a default client refuses to connect to addr:
// any address that is not globally reachable unicast, such as loopback,
// private, link-local, carrier-grade NAT, multicast, unspecified, broadcast
// and documentation ranges. IPv6 forms that embed an IPv4 address
// (IPv4-mapped, NAT64 64:ff9b::/96 and 6to4 2002::/16) are judged by the
// embedded address. An invalid addr is forbidden.
func IsForbidden(addr netip.Addr) bool {
	if !addr.IsValid() {
		return true
	}
	addr = addr.WithZone("").Unmap()
	if addr.Is6() {
		switch {
		case nat64Prefix.Contains(addr):
			b := addr.As16()
			return IsForbidden(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(addr):
			b := addr.As16()
			return IsForbidden(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
