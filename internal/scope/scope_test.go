package scope

import (
	"errors"
	"testing"
)

func mustParse(t testing.TB, token string) Scope {
	t.Helper()
	s, err := Parse(token)
	if err != nil {
		t.Fatalf("Parse(%q): %v", token, err)
	}
	return s
}

func TestParseNormalizes(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		// static
		{"atproto", "atproto"},
		{"transition:generic", "transition:generic"},
		{"transition:email", "transition:email"},
		{"transition:chat.bsky", "transition:chat.bsky"},

		// repo
		{"repo:app.bsky.feed.post", "repo:app.bsky.feed.post"},
		{"repo?collection=app.bsky.feed.post", "repo:app.bsky.feed.post"},
		{"repo:app.bsky.feed.post?action=create&action=update&action=delete", "repo:app.bsky.feed.post"},
		{"repo:app.bsky.feed.post?action=delete&action=create", "repo:app.bsky.feed.post?action=create&action=delete"},
		{"repo:app.bsky.feed.post?action=create&action=create", "repo:app.bsky.feed.post?action=create"},
		{"repo:*", "repo:*"},
		{"repo:*?action=delete", "repo:*?action=delete"},
		{"repo:%2A", "repo:*"},
		{"repo?collection=b.example.post&collection=a.example.post", "repo?collection=a.example.post&collection=b.example.post"},
		{"repo?collection=a.example.post&collection=a.example.post", "repo:a.example.post"},
		{"repo?collection=a.example.post&collection=*&action=update", "repo:*?action=update"},
		{"repo?action=create&collection=com.example.foo&collection=com.example.bar", "repo?collection=com.example.bar&collection=com.example.foo&action=create"},
		{"repo:app.bsky.feed.post?", "repo:app.bsky.feed.post"},

		// rpc
		{"rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview", "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"},
		{"rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app#bsky_appview", "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"},
		{"rpc:app.bsky.feed.getTimeline?aud=did%3Aweb%3Aapi.bsky.app%23bsky_appview", "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"},
		{"rpc?lxm=app.bsky.feed.getTimeline&aud=did:web:api.bsky.app%23bsky_appview", "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"},
		{"rpc?aud=*&lxm=com.example.method2&lxm=com.example.method1", "rpc?lxm=com.example.method1&lxm=com.example.method2&aud=*"},
		{"rpc?lxm=*&aud=did:web:api.example.com%23svc_appview", "rpc:*?aud=did:web:api.example.com%23svc_appview"},
		{"rpc:com.example.method1?aud=*", "rpc:com.example.method1?aud=*"},
		{"rpc:com.example.m?aud=did:plc:l3rouwludahu3ui3bt66mfvj%23atproto_labeler", "rpc:com.example.m?aud=did:plc:l3rouwludahu3ui3bt66mfvj%23atproto_labeler"},

		// blob
		{"blob:*/*", "blob:*/*"},
		{"blob:image/*", "blob:image/*"},
		{"blob:image/png", "blob:image/png"},
		{"blob:IMAGE/PNG", "blob:image/png"},
		{"blob:image%2Fpng", "blob:image/png"},
		{"blob:image/svg+xml", "blob:image/svg+xml"},
		{"blob?accept=image/svg%2Bxml&accept=video/*", "blob?accept=image/svg%2Bxml&accept=video/*"},
		{"blob?accept=image/png", "blob:image/png"},
		{"blob?accept=video/*&accept=text/html", "blob?accept=text/html&accept=video/*"},
		{"blob?accept=image/png&accept=image/*", "blob:image/*"},
		{"blob?accept=image/png&accept=*/*", "blob:*/*"},

		// account
		{"account:email", "account:email"},
		{"account:email?action=read", "account:email"},
		{"account:email?action=manage", "account:email?action=manage"},
		{"account:email?action=read&action=manage", "account:email?action=manage"},
		{"account?attr=email", "account:email"},
		{"account?action=manage&attr=repo", "account:repo?action=manage"},
		{"account:status", "account:status"},

		// identity
		{"identity:handle", "identity:handle"},
		{"identity:*", "identity:*"},
		{"identity:*?", "identity:*"},
		{"identity?attr=handle", "identity:handle"},

		// include
		{"include:fm.plyr.authFullApp", "include:fm.plyr.authFullApp"},
		{"include?nsid=com.example.baz", "include:com.example.baz"},
		{"include:com.example.baz?aud=did:web:example.com%23my_service", "include:com.example.baz?aud=did:web:example.com%23my_service"},
		{"include:com.example.baz?aud=did:web:example.com#my_service", "include:com.example.baz?aud=did:web:example.com%23my_service"},
		{"include?aud=did:web:example.com%23my_service&nsid=com.example.baz", "include:com.example.baz?aud=did:web:example.com%23my_service"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := s.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Errorf("Parse(%q) (normalized from %q): %v", s.String(), tt.in, err)
		} else if again != s {
			t.Errorf("Parse(%q) = %#v, want %#v (from %q)", s.String(), again, s, tt.in)
		}
	}
}

func TestParseEquivalentForms(t *testing.T) {
	groups := [][]string{
		{"repo:app.bsky.feed.post", "repo?collection=app.bsky.feed.post", "repo:app.bsky.feed.post?action=delete&action=update&action=create"},
		{"account:email", "account?attr=email&action=read", "account:email?action=read"},
		{"rpc:a.b.c?aud=did:web:x.com%23s", "rpc?aud=did:web:x.com%23s&lxm=a.b.c", "rpc:a.b.c?aud=did:web:x.com#s"},
	}
	for _, g := range groups {
		first := mustParse(t, g[0])
		for _, tok := range g[1:] {
			if got := mustParse(t, tok); got != first {
				t.Errorf("Parse(%q) = %v, want equal to Parse(%q) = %v", tok, got, g[0], first)
			}
		}
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []string{
		"",
		"invalid",
		"scope",
		"openid",
		"Atproto",
		"atproto?",
		"atproto:x",
		"transition:unknown",
		"transition",
		"resource:positional?key=val",
		"repo:foo bar",
		"repo:québec",
		"repo:app.bsky.feed.post\x00",
		"repo:app.bsky.feed.post?key=québec",

		// repo
		"repo",
		"repo:",
		"repo?",
		"repo:123",
		"repo:.foo",
		"repo:bar.",
		"repo:invalid",
		"repo:com.example",
		"repo:com.example.*",
		"repo:fm.plyr.*",
		"repo:*?action=*",
		"repo:com.example.foo?action=invalid",
		"repo:com.example.foo?action=",
		"repo:com.example.foo?action",
		"repo:*?action=Create",
		"repo:*?Action=create",
		"Repo:com.example.foo",
		"repo:com.example.record?collection=com.example.other",
		"repo:com.example.foo?unknown=1",
		"repo:com.example.foo?aud=*",
		"repo:%zz",
		"repo:com.example.foo?action=%zz",
		"repo:com.example.foo?action=create;action=delete",

		// rpc
		"rpc",
		"rpc:*",
		"rpc:123",
		"rpc:com.example.method1",
		"rpc?lxm=com.example.method1",
		"rpc?aud=*&lxm=*",
		"rpc:*?aud=*",
		"rpc?lxm=com.example.a&lxm=*&aud=*",
		"rpc?aud=did:web:example.com%23service_id",
		"rpc:?aud=did:web:example.com%23service_id",
		"rpc:invalid?aud=did:web:example.com%23service_id",
		"rpc:com.example.query?aud=api.example.com",
		"rpc:com.example.query?aud=did:web:example.com",
		"rpc:foo.bar.baz?aud=did:web",
		"rpc:foo.bar.baz?aud=did:web%23service_id",
		"rpc:foo.bar.baz?aud=did:plc:111%23x",
		"rpc:foo.bar.baz?aud=did:foo:bar%23x",
		"rpc:foo.bar.baz?aud=did:web:example.com%23",
		"rpc:foo.bar.baz?aud=did:web:example.com%23a%23b",
		"rpc:foo.bar.baz?aud=did:web:example.com:path%23svc",
		"rpc:foo.bar.baz?aud=did:web:example.com%23a%20b",
		"rpc:foo.bar.baz?aud=*&aud=*",
		"rpc:com.example.method1?aud=did:web:example.com%23s&lxm=com.example.method2",
		"rpc:com.example.service?aud=did:web:example.com%23service_id&invalid=param",
		"rpc?Lxm=com.example.method1&aud=*",
		"Rpc?lxm=com.example.method1&aud=*",

		// blob
		"blob",
		"blob:",
		"blob:invalid",
		"blob?accept=invalid",
		"blob:*/**",
		"blob:*/png",
		"blob:image/",
		"blob:/png",
		"blob:image/png/x",
		"blob:image/p*g",
		"blob:image/png?accept=image/gif",
		"blob?Accept=image/png",
		"blob?accept=image/svg+xml", // '+' decodes to a space in a query value
		"Blob?accept=image/png",

		// account
		"account",
		"account:",
		"account:invalid",
		"account:Email",
		"account:*",
		"account:email?action=invalid",
		"account:email?action=Read",
		"account:email?attr=repo",
		"account?attr=email&attr=repo",
		"account:email?unknown=x",
		"Account:email",

		// identity
		"identity",
		"identity:",
		"identity:invalid",
		"identity:Handle",
		"identity:*?attr=*",
		"identity:*?action=manage",
		"identity:handle?action=invalid",
		"identity?attr=handle&attr=*",
		"Identity:handle",

		// include
		"include",
		"include:",
		"include#",
		"include:#",
		"include:&",
		"include:com",
		"include:com.example",
		"include:com..example",
		"include:9com.example.foo",
		"include:com.example.-bar",
		"include:invalid^nsid",
		"include:fm.plyr.*",
		"include:*",
		"include:com.example.baz?aud=",
		"include:com.example.baz?aud=*",
		"include:com.example.baz?aud=did:web:example.com",
		"include:com.example.baz?aud=invalid^did",
		"include:com.example.baz?nsid=com.example.baz",
		"include:com.example.baz?lxm=a.b.c",
		"Include:app.example.authBasics",
	}
	for _, tok := range tests {
		s, err := Parse(tok)
		if err == nil {
			t.Errorf("Parse(%q) = %q, want error", tok, s)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) error = %v, want ErrInvalid", tok, err)
		}
	}
}

func TestZeroScope(t *testing.T) {
	var zero Scope
	if got := zero.String(); got != "" {
		t.Errorf("Scope{}.String() = %q, want empty", got)
	}
	set, _ := ParseSet("atproto transition:generic transition:chat.bsky transition:email repo:* rpc:*?aud=did:web:x.com%23s identity:* account:email?action=manage blob:*/*")
	if set.Covers(zero) {
		t.Errorf("a broad set covers the zero Scope, want not")
	}
}

func TestEscape(t *testing.T) {
	tests := []struct {
		in    string
		query bool
		want  string
	}{
		{"did:web:x.com#svc", true, "did:web:x.com%23svc"},
		{"a+b", true, "a%2Bb"},
		{"a+b", false, "a+b"},
		{"a b&c=d?e%f", false, "a%20b%26c%3Dd%3Fe%25f"},
	}
	for _, tt := range tests {
		if got := escape(tt.in, tt.query); got != tt.want {
			t.Errorf("escape(%q, %v) = %q, want %q", tt.in, tt.query, got, tt.want)
		}
	}
}
