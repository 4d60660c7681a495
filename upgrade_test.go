package atauth_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/atauth/atauth"
)

// upgradeApp declares transition:email but signs in without it.
func upgradeApp(t *testing.T) *testApp {
	return newTestApp(t, func(c *atauth.Config) {
		c.Scopes = []string{"atproto", "transition:generic", "transition:email"}
		c.LoginScopes = []string{"atproto", "transition:generic"}
	})
}

func scopesOf(me map[string]any) []string {
	var out []string
	list, _ := me["scopes"].([]any)
	for _, s := range list {
		out = append(out, s.(string))
	}
	return out
}

func TestScopeUpgrade(t *testing.T) {
	app := upgradeApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	b.addAccount("bob.test", "bob-pw")
	b.fetch("POST", "/auth/switch-account", `{"target_did":"`+app.alice.DID+`"}`)
	cookie := b.cookie("session_id")
	before, _ := app.store.ListSessionsByDID(context.Background(), app.alice.DID, atauth.KindBrowser)

	// The protected route refuses until the upgrade.
	if resp := b.fetch("GET", "/api/email", ""); resp.status != http.StatusForbidden || resp.json(t)["detail"] != "scope_upgrade_required" {
		t.Errorf("route needing transition:email before the upgrade: got %d %s, want 403 scope_upgrade_required", resp.status, resp.body)
	}

	authURL := b.startFlow("/auth/scope-upgrade/start", `{"scopes":["transition:email"]}`)
	par := app.net.LastPAR()
	if par.Scope != "atproto transition:generic transition:email" {
		t.Errorf("upgrade PAR scope: got %q, want the union of granted and requested", par.Scope)
	}
	if par.LoginHint != app.alice.DID {
		t.Errorf("upgrade login_hint: got %q, want the DID", par.LoginHint)
	}
	q := b.approveAndReturn(authURL, app.alice)
	if q.Get("scope_upgraded") != "true" || q.Has("exchange_token") {
		t.Fatalf("upgrade landed on %v, want scope_upgraded=true and no exchange token", q)
	}
	if got := b.cookie("session_id"); got != cookie {
		t.Error("the upgrade changed the session id")
	}
	me := b.me()
	if !slices.Contains(scopesOf(me), "transition:email") {
		t.Errorf("scopes after upgrade: got %v, want transition:email", me["scopes"])
	}
	if got := linked(me); len(got) != 2 {
		t.Errorf("group after upgrade: got %v, want alice and bob", got)
	}
	after, _ := app.store.ListSessionsByDID(context.Background(), app.alice.DID, atauth.KindBrowser)
	if len(after) != 1 || !after[0].ExpiresAt.Equal(before[0].ExpiresAt) || after[0].GroupID != before[0].GroupID {
		t.Errorf("session after upgrade: got %+v, want the same expiry and group as %+v", after, before)
	}
	if got := app.net.ActiveGrants(app.alice.DID); got != 1 {
		t.Errorf("alice's grants: got %d, want 1 (the old one revoked)", got)
	}
	if resp := b.fetch("GET", "/api/email", ""); resp.status != http.StatusOK {
		t.Errorf("route needing transition:email after the upgrade: got %d", resp.status)
	}
	// The PDS shows the email to the upgraded grant.
	var out struct{ Email string }
	if err := app.m.PDSClient(app.session(app.m, cookie)).Query(context.Background(), "com.atproto.server.getSession", nil, &out); err != nil || out.Email == "" {
		t.Errorf("getSession after the upgrade: got email %q, %v; want one", out.Email, err)
	}
}

func TestScopeUpgradeRefused(t *testing.T) {
	app := upgradeApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	authURL := b.startFlow("/auth/scope-upgrade/start", `{"scopes":["transition:email"]}`)
	cb, err := app.net.Deny(context.Background(), authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := b.callback(cb)
	if q.Get("scope_upgrade_error") != "refused" || q.Has("auth_error") {
		t.Errorf("refused upgrade landed on %v, want scope_upgrade_error=refused", q)
	}
	me := b.me()
	if slices.Contains(scopesOf(me), "transition:email") {
		t.Error("a refused upgrade changed the scopes")
	}
	if got := app.net.ActiveGrants(app.alice.DID); got != 1 {
		t.Errorf("grants: got %d, want 1", got)
	}
}

func TestScopeUpgradeByAnotherAccount(t *testing.T) {
	app := upgradeApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	authURL := b.startFlow("/auth/scope-upgrade/start", `{"scopes":["transition:email"]}`)
	if got := b.approveAndReturn(authURL, app.bob).Get("auth_error"); got != "account_mismatch" {
		t.Errorf("upgrade approved by bob: got %q, want account_mismatch", got)
	}
	if slices.Contains(scopesOf(b.me()), "transition:email") {
		t.Error("the upgrade was applied")
	}
	if got := app.net.ActiveGrants(app.bob.DID); got != 0 {
		t.Errorf("bob's grants: got %d, want 0", got)
	}
}

func TestScopeUpgradeBadInput(t *testing.T) {
	app := upgradeApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	for _, body := range []string{`{"scopes":["transition:chat.bsky"]}`, `{"scopes":[]}`, `{"scopes":"x"}`, `{}`} {
		if resp := b.fetch("POST", "/auth/scope-upgrade/start", body); resp.status != http.StatusBadRequest {
			t.Errorf("%s: got %d %s, want 400", body, resp.status, resp.body)
		}
	}
	if got := app.net.Stats().PAR; got != 1 {
		t.Errorf("PARs: got %d, want 1 (the login)", got)
	}
}

func TestRequireScopesPanicsOnMalformedScope(t *testing.T) {
	app := newTestApp(t)
	defer func() {
		if recover() == nil {
			t.Error("RequireScopes with a malformed scope did not panic")
		}
	}()
	app.m.RequireScopes("repo:?")
}
