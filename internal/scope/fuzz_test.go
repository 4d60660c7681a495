package scope

import (
	"errors"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"atproto",
		"transition:generic",
		"repo:app.bsky.feed.post?action=create",
		"repo?collection=a.example.post&collection=*&action=delete",
		"rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview",
		"rpc?lxm=a.b.c&lxm=a.b.d&aud=did:plc:l3rouwludahu3ui3bt66mfvj#x",
		"blob?accept=image/svg%2Bxml&accept=video/*",
		"blob:image/svg+xml",
		"account:email?action=manage",
		"identity:*?",
		"include:fm.plyr.authFullApp?aud=did:web:x.com%23a%25b",
		"repo:%zz",
		"rpc:*?aud=*",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		s, err := Parse(token)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", token, err)
			}
			return
		}
		norm := s.String()
		again, err := Parse(norm)
		if err != nil {
			t.Fatalf("Parse(%q) (normalized from %q): %v", norm, token, err)
		}
		if again != s {
			t.Fatalf("Parse(%q) = %#v, want %#v (normalized from %q)", norm, again, s, token)
		}
		if again.String() != norm {
			t.Fatalf("String is not stable: %q then %q", norm, again.String())
		}
		set, errs := ParseSet(token)
		if len(errs) != 0 || !set.Covers(s) {
			t.Fatalf("ParseSet(%q) = %q, %v; want a set that covers %q", token, set, errs, norm)
		}
	})
}
