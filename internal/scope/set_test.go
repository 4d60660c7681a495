package scope

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustSet(t testing.TB, space string) Set {
	t.Helper()
	s, errs := ParseSet(space)
	if len(errs) > 0 {
		t.Fatalf("ParseSet(%q): %v", space, errs)
	}
	return s
}

type coverCase struct {
	granted  string
	required string
	want     bool
}

func runCoverCases(t *testing.T, tests []coverCase) {
	t.Helper()
	for _, tt := range tests {
		set := mustSet(t, tt.granted)
		req := mustParse(t, tt.required)
		if got := set.Covers(req); got != tt.want {
			t.Errorf("ParseSet(%q).Covers(%q) = %v, want %v", tt.granted, tt.required, got, tt.want)
		}
	}
}

func TestCoversStatic(t *testing.T) {
	runCoverCases(t, []coverCase{
		{"atproto", "atproto", true},
		{"", "atproto", false},
		{"transition:generic repo:* blob:*/* identity:*", "atproto", false},
		{"atproto", "transition:generic", false},
		{"transition:generic", "transition:generic", true},
		{"transition:generic transition:chat.bsky", "transition:email", false},
		{"transition:email", "transition:email", true},
		{"account:email?action=manage", "transition:email", false},
		{"transition:generic", "transition:chat.bsky", false},
		{"transition:chat.bsky", "transition:chat.bsky", true},
		// Granular grants never add up to a transition scope.
		{"repo:* blob:*/* rpc:*?aud=did:web:x.com%23s", "transition:generic", false},
	})
}

func TestCoversRepo(t *testing.T) {
	runCoverCases(t, []coverCase{
		{"repo:*", "repo:app.bsky.feed.post?action=create", true},
		{"repo:*", "repo:app.bsky.feed.post", true},
		{"repo:*", "repo:*", true},
		{"repo:*?action=create", "repo:app.bsky.feed.post?action=create", true},
		{"repo:*?action=create", "repo:app.bsky.feed.post", false},
		{"repo:app.bsky.feed.post", "repo:app.bsky.feed.post?action=delete", true},
		{"repo:app.bsky.feed.post?action=create", "repo:app.bsky.feed.post?action=delete", false},
		{"repo:app.bsky.feed.post?action=create", "repo:app.bsky.feed.post?action=create", true},
		{"repo:app.bsky.feed.post?action=create", "repo:app.bsky.feed.post", false},
		{"repo:app.bsky.feed.post?action=create repo:app.bsky.feed.post?action=update&action=delete", "repo:app.bsky.feed.post", true},
		{"repo:app.bsky.feed.post", "repo:app.bsky.feed.like", false},
		{"repo:app.bsky.feed.post", "repo:*", false},
		{"repo:app.bsky.feed.post", "repo:*?action=create", false},
		{"repo?collection=app.bsky.feed.post&collection=app.bsky.feed.like", "repo:app.bsky.feed.like?action=create", true},
		{"repo:a.example.post repo:b.example.post", "repo?collection=a.example.post&collection=b.example.post", true},
		{"repo:a.example.post", "repo?collection=a.example.post&collection=b.example.post", false},
		// Namespaces do not nest.
		{"repo:fm.plyr.track", "repo:fm.plyr.track.comment", false},
		{"repo:fm.plyr.track.comment", "repo:fm.plyr.track", false},
		{"transition:generic", "repo:*", true},
		{"transition:generic", "repo:app.bsky.feed.post?action=delete", true},
		{"transition:email transition:chat.bsky", "repo:app.bsky.feed.post", false},
		{"rpc:app.bsky.feed.post?aud=*", "repo:app.bsky.feed.post", false},
	})
}

func TestCoversRPC(t *testing.T) {
	const appview = "did:web:api.bsky.app%23bsky_appview"
	const chat = "did:web:api.bsky.chat%23bsky_chat"
	runCoverCases(t, []coverCase{
		{"rpc:app.bsky.feed.getTimeline?aud=" + appview, "rpc:app.bsky.feed.getTimeline?aud=" + appview, true},
		{"rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app#bsky_appview", "rpc?lxm=app.bsky.feed.getTimeline&aud=" + appview, true},
		{"rpc:app.bsky.feed.getTimeline?aud=" + appview, "rpc:app.bsky.feed.getTimeline?aud=did:web:other.example%23bsky_appview", false},
		{"rpc:app.bsky.feed.getTimeline?aud=" + appview, "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23other", false},
		{"rpc:app.bsky.feed.getTimeline?aud=" + appview, "rpc:app.bsky.feed.getTimeline?aud=*", false},
		{"rpc:app.bsky.feed.getTimeline?aud=*", "rpc:app.bsky.feed.getTimeline?aud=" + appview, true},
		{"rpc:app.bsky.feed.getTimeline?aud=*", "rpc:app.bsky.feed.getTimeline?aud=*", true},
		{"rpc:app.bsky.feed.getTimeline?aud=" + appview, "rpc:app.bsky.feed.getAuthorFeed?aud=" + appview, false},
		{"rpc:*?aud=" + appview, "rpc:app.bsky.feed.getAuthorFeed?aud=" + appview, true},
		{"rpc:*?aud=" + appview, "rpc:*?aud=" + appview, true},
		{"rpc:*?aud=" + appview, "rpc:app.bsky.feed.getAuthorFeed?aud=*", false},
		{"rpc:app.bsky.feed.getTimeline?aud=*", "rpc:*?aud=" + appview, false},
		{"rpc?lxm=a.example.one&lxm=a.example.two&aud=*", "rpc:a.example.two?aud=" + appview, true},
		{"rpc:a.example.one?aud=* rpc:a.example.two?aud=" + appview, "rpc?lxm=a.example.one&lxm=a.example.two&aud=" + appview, true},
		{"rpc:a.example.one?aud=*", "rpc?lxm=a.example.one&lxm=a.example.two&aud=" + appview, false},

		// transition:generic: any non-chat method at any service.
		{"transition:generic", "rpc:app.bsky.feed.getTimeline?aud=" + appview, true},
		{"transition:generic", "rpc:com.example.anything?aud=*", true},
		{"transition:generic", "rpc:chat.bsky.convo.listConvos?aud=" + chat, false},
		{"transition:generic", "rpc:*?aud=" + appview, false},
		{"transition:generic", "rpc?lxm=app.bsky.feed.getTimeline&lxm=chat.bsky.convo.listConvos&aud=*", false},
		// transition:chat.bsky works only together with transition:generic.
		{"transition:chat.bsky", "rpc:chat.bsky.convo.listConvos?aud=" + chat, false},
		{"transition:generic transition:chat.bsky", "rpc:chat.bsky.convo.listConvos?aud=" + chat, true},
		{"transition:generic transition:chat.bsky", "rpc:*?aud=" + appview, true},
		{"transition:generic transition:chat.bsky", "rpc?lxm=app.bsky.feed.getTimeline&lxm=chat.bsky.convo.listConvos&aud=*", true},
		{"transition:chat.bsky", "rpc:app.bsky.feed.getTimeline?aud=" + appview, false},
		// chat.bsky is a namespace, not a string prefix.
		{"transition:generic", "rpc:chat.bskyx.foo.bar?aud=*", true},
		{"transition:email", "rpc:app.bsky.feed.getTimeline?aud=*", false},
	})
}

func TestCoversBlob(t *testing.T) {
	runCoverCases(t, []coverCase{
		{"blob:*/*", "blob:image/png", true},
		{"blob:*/*", "blob:*/*", true},
		{"blob:*/*", "blob:video/*", true},
		{"blob:image/*", "blob:image/png", true},
		{"blob:image/*", "blob:IMAGE/PNG", true},
		{"blob:image/*", "blob:image/*", true},
		{"blob:image/*", "blob:video/mp4", false},
		{"blob:image/*", "blob:*/*", false},
		{"blob:image/png", "blob:image/png", true},
		{"blob:image/png", "blob:image/jpeg", false},
		{"blob:image/png", "blob:image/*", false},
		// "image/" is not a prefix of "imagex/png".
		{"blob:image/*", "blob:imagex/png", false},
		{"blob?accept=image/*&accept=video/*", "blob?accept=image/png&accept=video/mp4", true},
		{"blob:image/* blob:video/mp4", "blob?accept=image/png&accept=video/mp4", true},
		{"blob:image/*", "blob?accept=image/png&accept=video/mp4", false},
		{"transition:generic", "blob:*/*", true},
		{"transition:generic", "blob:video/mp4", true},
		{"repo:*", "blob:image/png", false},
	})
}

func TestCoversAccount(t *testing.T) {
	runCoverCases(t, []coverCase{
		{"account:email", "account:email", true},
		{"account:email", "account:email?action=manage", false},
		{"account:email?action=manage", "account:email", true},
		{"account:email?action=manage", "account:email?action=read", true},
		{"account:email?action=manage", "account:email?action=manage", true},
		{"account:email?action=manage", "account:repo", false},
		{"account:repo?action=manage", "account:repo", true},
		{"account:status", "account:status", true},
		{"account:status", "account:email", false},
		{"transition:email", "account:email", true},
		{"transition:email", "account:email?action=manage", false},
		{"transition:email", "account:repo", false},
		{"transition:generic", "account:email", false},
		{"transition:generic", "account:repo?action=manage", false},
		{"transition:generic", "account:status", false},
	})
}

func TestCoversIdentity(t *testing.T) {
	runCoverCases(t, []coverCase{
		{"identity:*", "identity:handle", true},
		{"identity:*", "identity:*", true},
		{"identity:handle", "identity:handle", true},
		{"identity:handle", "identity:*", false},
		{"transition:generic", "identity:handle", false},
		{"account:email?action=manage", "identity:handle", false},
	})
}

func TestCoversInclude(t *testing.T) {
	const aud = "did:web:api.example.com%23svc"
	runCoverCases(t, []coverCase{
		{"include:fm.plyr.authFullApp", "include:fm.plyr.authFullApp", true},
		{"include:fm.plyr.authFullApp", "include:fm.plyr.authOther", false},
		{"include:fm.plyr.authFullApp?aud=" + aud, "include:fm.plyr.authFullApp", true},
		{"include:fm.plyr.authFullApp", "include:fm.plyr.authFullApp?aud=" + aud, false},
		{"include:fm.plyr.authFullApp?aud=" + aud, "include:fm.plyr.authFullApp?aud=did:web:other.example%23svc", false},

		// W36: grants in the set's namespace say nothing about its contents.
		{"repo:fm.plyr.track", "include:fm.plyr.authFullApp", false},
		{"repo:fm.plyr.stg.track", "include:fm.plyr.authFullApp", false},
		{"repo?collection=fm.plyr.track&collection=fm.plyr.like&collection=fm.plyr.comment&collection=fm.plyr.list&collection=fm.plyr.actor.profile", "include:fm.plyr.authFullApp", false},
		{"repo:* rpc:*?aud=" + aud + " blob:*/*", "include:fm.plyr.authFullApp", false},
		{"transition:generic transition:chat.bsky", "include:fm.plyr.authFullApp", false},
		{"atproto", "include:fm.plyr.authFullApp", false},
		// Nor does a granted include say anything about its contents.
		{"include:fm.plyr.authFullApp", "repo:fm.plyr.track", false},
	})
}

// plyrSets resolves fm.plyr.authFullApp to its published contents: every
// repo action on five collections.
func plyrSets(t testing.TB) PermissionSets {
	perms := []Scope{
		mustParse(t, "repo?collection=fm.plyr.track&collection=fm.plyr.like&collection=fm.plyr.comment"),
		mustParse(t, "repo:fm.plyr.list"),
		mustParse(t, "repo:fm.plyr.actor.profile"),
	}
	return func(nsid string) ([]Scope, bool) {
		if nsid == "fm.plyr.authFullApp" {
			return perms, true
		}
		return nil, false
	}
}

func TestCoversWithResolvedSet(t *testing.T) {
	const full = "repo?collection=fm.plyr.track&collection=fm.plyr.like&collection=fm.plyr.comment&collection=fm.plyr.list&collection=fm.plyr.actor.profile"
	tests := []coverCase{
		// What the reference AS returns for include:fm.plyr.authFullApp.
		{"atproto " + full, "include:fm.plyr.authFullApp", true},
		{"atproto repo:fm.plyr.track repo:fm.plyr.like repo:fm.plyr.comment repo:fm.plyr.list repo:fm.plyr.actor.profile", "include:fm.plyr.authFullApp", true},
		{"repo:*", "include:fm.plyr.authFullApp", true},
		{"transition:generic", "include:fm.plyr.authFullApp", true},
		// One collection short.
		{"repo?collection=fm.plyr.track&collection=fm.plyr.like&collection=fm.plyr.comment&collection=fm.plyr.list", "include:fm.plyr.authFullApp", false},
		// Collections present, but not every action.
		{"repo:fm.plyr.track repo:fm.plyr.like repo:fm.plyr.comment repo:fm.plyr.list repo:fm.plyr.actor.profile?action=create", "include:fm.plyr.authFullApp", false},
		// W36: staging collections are a different namespace.
		{"repo?collection=fm.plyr.stg.track&collection=fm.plyr.stg.like&collection=fm.plyr.stg.comment&collection=fm.plyr.stg.list&collection=fm.plyr.stg.actor.profile", "include:fm.plyr.authFullApp", false},
		{"repo:fm.plyr.track", "include:fm.plyr.authFullApp", false},
		// Unknown sets are covered only by themselves.
		{full, "include:fm.plyr.authOther", false},
		{"include:fm.plyr.authOther", "include:fm.plyr.authOther", true},
		// A granted include grants its resolved contents.
		{"include:fm.plyr.authFullApp", "repo:fm.plyr.track?action=create", true},
		{"include:fm.plyr.authFullApp", "repo?collection=fm.plyr.track&collection=fm.plyr.actor.profile", true},
		{"include:fm.plyr.authFullApp", "repo:fm.plyr.stg.track", false},
		{"include:fm.plyr.authFullApp", "repo:*", false},
		{"include:fm.plyr.authOther", "repo:fm.plyr.track", false},
	}
	sets := plyrSets(t)
	for _, tt := range tests {
		set := mustSet(t, tt.granted)
		req := mustParse(t, tt.required)
		if got := set.CoversWith(req, sets); got != tt.want {
			t.Errorf("ParseSet(%q).CoversWith(%q, sets) = %v, want %v", tt.granted, tt.required, got, tt.want)
		}
	}
}

func TestCoversWithNamespaceAuthority(t *testing.T) {
	// A set may only grant what lies under its own NSID group; the rest of
	// its contents, and anything it cannot hold (wildcards, blob, account,
	// identity), is ignored as an authorization server ignores it.
	contents := []Scope{
		mustParse(t, "repo:fm.plyr.track"),
		mustParse(t, "repo:com.evil.thing"),
		mustParse(t, "repo?collection=fm.plyr.like&collection=com.evil.other"),
		mustParse(t, "repo:*"),
		mustParse(t, "rpc:fm.plyr.getTrack?aud=*"),
		mustParse(t, "rpc:*?aud=did:web:api.example.com%23svc"),
		mustParse(t, "blob:*/*"),
		mustParse(t, "account:email?action=manage"),
		mustParse(t, "identity:*"),
		mustParse(t, "include:fm.plyr.authOther"),
	}
	sets := func(nsid string) ([]Scope, bool) {
		switch nsid {
		case "fm.plyr.authMixed":
			return contents, true
		case "fm.plyr.authEmpty":
			return []Scope{mustParse(t, "repo:com.evil.thing"), mustParse(t, "blob:*/*")}, true
		}
		return nil, false
	}

	granted := mustSet(t, "repo:fm.plyr.track rpc:fm.plyr.getTrack?aud=*")
	if !granted.CoversWith(mustParse(t, "include:fm.plyr.authMixed"), sets) {
		t.Errorf("CoversWith(include:fm.plyr.authMixed) = false, want true: only fm.plyr.track and fm.plyr.getTrack are grantable")
	}
	if granted.CoversWith(mustParse(t, "include:fm.plyr.authEmpty"), sets) {
		t.Errorf("CoversWith(include:fm.plyr.authEmpty) = true, want false for a set that can grant nothing")
	}

	viaInclude := mustSet(t, "include:fm.plyr.authMixed")
	for _, tok := range []string{"repo:com.evil.thing", "repo:fm.plyr.like", "repo:*", "blob:image/png", "account:email", "identity:handle", "rpc:fm.other.x?aud=did:web:api.example.com%23svc", "include:fm.plyr.authOther"} {
		if viaInclude.CoversWith(mustParse(t, tok), sets) {
			t.Errorf("include:fm.plyr.authMixed granted covers %q, want not", tok)
		}
	}
	for _, tok := range []string{"repo:fm.plyr.track", "rpc:fm.plyr.getTrack?aud=did:web:x.example%23svc"} {
		if !viaInclude.CoversWith(mustParse(t, tok), sets) {
			t.Errorf("include:fm.plyr.authMixed granted does not cover %q, want it to", tok)
		}
	}
}

func TestUnderAuthority(t *testing.T) {
	tests := []struct {
		set, name string
		want      bool
	}{
		{"fm.plyr.authFullApp", "fm.plyr.track", true},
		{"fm.plyr.authFullApp", "fm.plyr.stg.track", true},
		{"app.example.feed.authOnlyPost", "app.example.feed.post", true},
		{"app.example.feed.authOnlyPost", "app.example.actor.profile", false},
		{"fm.plyr.authFullApp", "fm.plyrx.track", false},
		{"fm.plyr.authFullApp", "fm.plyr", false},
		{"fm.plyr.authFullApp", "fm.plyr.", false},
		{"fm.plyr.authFullApp", "*", false},
		{"noDot", "noDot.x", false},
	}
	for _, tt := range tests {
		if got := underAuthority(tt.set, tt.name); got != tt.want {
			t.Errorf("underAuthority(%q, %q) = %v, want %v", tt.set, tt.name, got, tt.want)
		}
	}
}

func TestMissingAndCoversAll(t *testing.T) {
	set := mustSet(t, "atproto repo:fm.plyr.track blob:image/* transition:email")
	required := []Scope{
		mustParse(t, "atproto"),
		mustParse(t, "repo:fm.plyr.track?action=create"),
		mustParse(t, "include:fm.plyr.authFullApp"),
		mustParse(t, "blob:video/mp4"),
		mustParse(t, "account:email"),
	}
	got := set.Missing(required)
	want := []Scope{required[2], required[3]}
	if diff := cmp.Diff(want, got, cmp.Transformer("String", Scope.String)); diff != "" {
		t.Errorf("Missing mismatch (-want +got):\n%s", diff)
	}
	if set.CoversAll(required) {
		t.Errorf("CoversAll = true, want false")
	}
	if !set.CoversAll([]Scope{required[0], required[1], required[4]}) {
		t.Errorf("CoversAll of covered scopes = false, want true")
	}
	if !set.CoversAll(nil) {
		t.Errorf("CoversAll(nil) = false, want true")
	}
	if got := set.Missing(nil); got != nil {
		t.Errorf("Missing(nil) = %v, want nil", got)
	}

	withSets := set.MissingWith(required, plyrSets(t))
	if diff := cmp.Diff(want, withSets, cmp.Transformer("String", Scope.String)); diff != "" {
		t.Errorf("MissingWith mismatch (-want +got):\n%s", diff)
	}
}

func TestParseSet(t *testing.T) {
	set, errs := ParseSet("  atproto repo:app.bsky.feed.post  bogus:thing repo?collection=app.bsky.feed.post\trpc:*?aud=* atproto blob:image/png ")
	if got, want := set.String(), "atproto repo:app.bsky.feed.post blob:image/png"; got != want {
		t.Errorf("ParseSet(...).String() = %q, want %q", got, want)
	}
	if len(errs) != 2 {
		t.Fatalf("ParseSet errors = %v, want 2", errs)
	}
	for _, err := range errs {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSet error %v does not wrap ErrInvalid", err)
		}
	}
	if !set.Covers(mustParse(t, "repo:app.bsky.feed.post?action=create")) {
		t.Errorf("tolerant set does not cover a granted scope next to bad tokens")
	}

	empty, errs := ParseSet("")
	if len(errs) != 0 || empty.String() != "" {
		t.Errorf(`ParseSet("") = %q, %v; want empty set, no errors`, empty.String(), errs)
	}
	var zero Set
	if zero.Covers(mustParse(t, "atproto")) {
		t.Errorf("zero Set covers atproto, want not")
	}
}

func TestUnion(t *testing.T) {
	tests := []struct {
		name               string
		granted, requested []string
		want               []string
	}{
		{
			name:      "adds new scopes after granted ones",
			granted:   []string{"atproto", "repo:fm.plyr.track"},
			requested: []string{"atproto", "repo:fm.teal.feed.play", "repo:fm.plyr.track"},
			want:      []string{"atproto", "repo:fm.plyr.track", "repo:fm.teal.feed.play"},
		},
		{
			name:      "equal scopes in other spellings keep the first",
			granted:   []string{"repo?collection=fm.plyr.track&action=create&action=update&action=delete"},
			requested: []string{"repo:fm.plyr.track", "rpc:a.b.c?aud=did:web:x.com#s", "rpc:a.b.c?aud=did:web:x.com%23s"},
			want:      []string{"repo?collection=fm.plyr.track&action=create&action=update&action=delete", "rpc:a.b.c?aud=did:web:x.com#s"},
		},
		{
			name:      "space-separated elements and unknown tokens",
			granted:   []string{"atproto future:thing", ""},
			requested: []string{"future:thing  transition:generic", "future:other"},
			want:      []string{"atproto", "future:thing", "transition:generic", "future:other"},
		},
		{
			name:      "narrower grant does not absorb a wider request",
			granted:   []string{"repo:fm.plyr.track?action=create"},
			requested: []string{"repo:fm.plyr.track"},
			want:      []string{"repo:fm.plyr.track?action=create", "repo:fm.plyr.track"},
		},
		{
			name: "empty",
			want: nil,
		},
	}
	for _, tt := range tests {
		got := Union(tt.granted, tt.requested)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: Union mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}
