package scope

import (
	"strings"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

func validNSID(s string) bool {
	_, err := syntax.ParseNSID(s)
	return err == nil
}

// validAudience reports whether s is an absolute DID reference with an
// atproto DID method (plc or web) and a service fragment, such as
// did:web:api.bsky.app#bsky_appview. The rules follow isAtprotoDidRefAbsolute
// in bluesky-social/atproto packages/did.
func validAudience(s string) bool {
	did, frag, ok := strings.Cut(s, "#")
	if !ok || frag == "" || !validFragment(frag) {
		return false
	}
	d, err := syntax.ParseDID(did)
	if err != nil {
		return false
	}
	id := d.Identifier()
	switch d.Method() {
	case "plc":
		if len(id) != 24 {
			return false
		}
		for i := 0; i < len(id); i++ {
			if c := id[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
				return false
			}
		}
		return true
	case "web":
		// atproto does not allow paths in did:web.
		return !strings.Contains(id, ":")
	}
	return false
}

// validFragment reports whether s is an RFC 3986 fragment:
// *( pchar / "/" / "?" ). A '#' is not allowed, so a reference has exactly
// one.
func validFragment(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0:
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validAccept reports whether s is a lowercase MIME type (type/subtype), a
// type wildcard (type/*) or */*. Both parts are RFC 9110 tokens; a '*'
// may only stand for a whole part, and a type wildcard needs a subtype
// wildcard.
func validAccept(s string) bool {
	if s == "*/*" {
		return true
	}
	typ, sub, ok := strings.Cut(s, "/")
	if !ok || !isToken(typ) || strings.Contains(typ, "*") {
		return false
	}
	return sub == "*" || isToken(sub) && !strings.Contains(sub, "*")
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// underAuthority reports whether a permission set named set may grant access
// to name: name must be in the set's NSID group (the set's NSID without its
// last segment) or below it. This is the spec's "Namespace Authority" rule:
// fm.plyr.authFullApp may name fm.plyr.track and fm.plyr.x.y, but not
// fm.other.track or fm.plyr itself.
func underAuthority(set, name string) bool {
	i := strings.LastIndexByte(set, '.')
	if i < 0 {
		return false
	}
	group := set[:i+1]
	return len(name) > len(group) && strings.HasPrefix(name, group)
}
