package atauth_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
)

// mintDeveloperToken runs the developer-token flow in b and returns the
// token.
func (b *browser) mintDeveloperToken(acct atauthtest.Account, body string) string {
	b.t.Helper()
	authURL := b.startFlow("/auth/developer-token/start", body)
	q := b.approveAndReturn(authURL, acct)
	if q.Get("dev_token") != "true" || q.Get("exchange_token") == "" {
		b.t.Fatalf("developer-token flow landed on %v, want dev_token=true and an exchange token", q)
	}
	resp := b.exchange(q.Get("exchange_token"))
	if resp.status != http.StatusOK {
		b.t.Fatalf("exchange: got %d %s", resp.status, resp.body)
	}
	token, _ := resp.json(b.t)["session_id"].(string)
	if token == "" {
		b.t.Fatalf("developer-token exchange in a browser: body %s, want the token", resp.body)
	}
	for _, c := range resp.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "session_id=") {
			b.t.Errorf("developer-token exchange set the session cookie: %s", c)
		}
	}
	return token
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

func TestDeveloperTokenLifecycle(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	browserSession := b.cookie("session_id")

	token := b.mintDeveloperToken(app.alice, `{"name":"ci deploy","expires_in_days":3}`)
	if got := b.cookie("session_id"); got != browserSession {
		t.Error("minting a developer token changed the browser's session")
	}
	cli := app.newBrowser()
	me := cli.do("GET", "/auth/me", "", bearer(token))
	if me.status != http.StatusOK || me.json(t)["kind"] != "developer" || me.json(t)["did"] != app.alice.DID {
		t.Fatalf("developer token /auth/me: got %d %s, want alice, kind developer", me.status, me.body)
	}
	if got := linked(me.json(t)); len(got) != 0 {
		t.Errorf("developer token's group: got %v, want none", got)
	}

	list := b.fetch("GET", "/auth/developer-tokens", "")
	if list.status != http.StatusOK {
		t.Fatalf("list: got %d %s", list.status, list.body)
	}
	tokens, _ := list.json(t)["tokens"].([]any)
	if len(tokens) != 1 {
		t.Fatalf("tokens: got %s, want one", list.body)
	}
	tok := tokens[0].(map[string]any)
	if tok["session_id"] != token[:8] || tok["name"] != "ci deploy" {
		t.Errorf("listed token: got %v, want prefix %q and name", tok, token[:8])
	}
	created, _ := time.Parse(time.RFC3339Nano, tok["created_at"].(string))
	expires, _ := time.Parse(time.RFC3339Nano, tok["expires_at"].(string))
	if got := expires.Sub(created); got != 3*24*time.Hour {
		t.Errorf("token lifetime: got %v, want 72h", got)
	}
	if strings.Contains(string(list.body), token) {
		t.Error("the list reveals the whole token")
	}

	// Browser logout does not touch the token.
	if resp := b.fetch("POST", "/auth/logout", ""); resp.status != http.StatusOK {
		t.Fatal(resp.status)
	}
	if resp := cli.do("GET", "/auth/me", "", bearer(token)); resp.status != http.StatusOK {
		t.Errorf("token after browser logout: got %d, want 200", resp.status)
	}

	b.login(app.alice)
	if resp := b.fetch("DELETE", "/auth/developer-tokens/"+token[:4], ""); resp.status != http.StatusOK {
		t.Fatalf("revoke by prefix: got %d %s", resp.status, resp.body)
	}
	if resp := cli.do("GET", "/auth/me", "", bearer(token)); resp.status != http.StatusUnauthorized {
		t.Errorf("revoked token: got %d, want 401", resp.status)
	}
	if got := app.net.ActiveGrants(app.alice.DID); got != 1 {
		t.Errorf("grants after revoking the token: got %d, want 1 (the browser's)", got)
	}
	if resp := b.fetch("DELETE", "/auth/developer-tokens/"+token[:4], ""); resp.status != http.StatusNotFound {
		t.Errorf("revoking again: got %d, want 404", resp.status)
	}
}

func TestDeveloperTokenLogsItselfOut(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	token := b.mintDeveloperToken(app.alice, `{}`)
	cli := app.newBrowser()
	if resp := cli.do("POST", "/auth/logout", "", bearer(token)); resp.status != http.StatusOK {
		t.Fatalf("logout with a token: got %d %s", resp.status, resp.body)
	}
	if resp := cli.do("GET", "/auth/me", "", bearer(token)); resp.status != http.StatusUnauthorized {
		t.Errorf("token after its logout: got %d, want 401", resp.status)
	}
	if resp := b.fetch("GET", "/auth/me", ""); resp.status != http.StatusOK {
		t.Errorf("browser after the token's logout: got %d, want 200", resp.status)
	}
}

func TestDeveloperTokenExpiryRules(t *testing.T) {
	app := newTestApp(t) // a public client: the limit is 7 days
	b := app.newBrowser()
	b.login(app.alice)
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"name":"` + strings.Repeat("x", 101) + `"}`, 400},
		{`{"expires_in_days":-1}`, 400},
		{`{"expires_in_days":8}`, 400},
		{`{"expires_in_days":"7"}`, 400},
	} {
		resp := b.fetch("POST", "/auth/developer-token/start", tc.body)
		if resp.status != tc.want {
			t.Errorf("%s: got %d %s, want %d", tc.body, resp.status, resp.body, tc.want)
		}
		if tc.want == 400 && strings.Contains(tc.body, "days") && !strings.Contains(string(resp.body), "7") && !strings.Contains(tc.body, `"7"`) {
			t.Errorf("%s: detail %s does not name the limit", tc.body, resp.body)
		}
	}
	for _, tc := range []struct {
		body string
		want time.Duration
	}{
		{`{"name":"` + strings.Repeat("é", 100) + `"}`, 7 * 24 * time.Hour}, // omitted: min(90, 7)
		{`{"expires_in_days":0}`, 7 * 24 * time.Hour},
		{`{"expires_in_days":1}`, 24 * time.Hour},
	} {
		b.mintDeveloperToken(app.alice, tc.body)
		recs, _ := app.store.ListSessionsByDID(context.Background(), app.alice.DID, atauth.KindDeveloper)
		last := recs[len(recs)-1]
		if got := last.ExpiresAt.Sub(last.CreatedAt); got != tc.want {
			t.Errorf("%s: lifetime %v, want %v", tc.body, got, tc.want)
		}
	}
}

func TestDeveloperTokensCannotManage(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	token := b.mintDeveloperToken(app.alice, `{}`)
	cli := app.newBrowser()
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/auth/developer-token/start", `{}`},
		{"GET", "/auth/developer-tokens", ""},
		{"DELETE", "/auth/developer-tokens/" + token[:8], ""},
		{"POST", "/auth/scope-upgrade/start", `{"scopes":["transition:generic"]}`},
		{"POST", "/auth/add-account/start", `{"handle":"bob.test"}`},
		{"POST", "/auth/switch-account", `{"target_did":"` + app.bob.DID + `"}`},
		{"POST", "/auth/logout-all", ""},
	} {
		resp := cli.do(tc.method, tc.path, tc.body, bearer(token))
		if resp.status != http.StatusForbidden {
			t.Errorf("%s %s with a developer token: got %d %s, want 403", tc.method, tc.path, resp.status, resp.body)
		}
	}
	if got := app.developerTokensOf(app.alice.DID); got != 1 {
		t.Errorf("developer tokens: got %d, want 1", got)
	}

	opted := newTestApp(t, func(c *atauth.Config) { c.DeveloperTokensCanManage = true })
	ob := opted.newBrowser()
	ob.login(opted.alice)
	otoken := ob.mintDeveloperToken(opted.alice, `{}`)
	if resp := opted.newBrowser().do("GET", "/auth/developer-tokens", "", bearer(otoken)); resp.status != http.StatusOK {
		t.Errorf("listing with a token when the app opted in: got %d, want 200", resp.status)
	}
}

func TestDeveloperTokenCallbackChecks(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)

	// Finished in another browser.
	authURL := b.startFlow("/auth/developer-token/start", `{"name":"x"}`)
	other := app.newBrowser()
	if got := other.approveAndReturn(authURL, app.alice).Get("auth_error"); got != "browser_mismatch" {
		t.Errorf("cross-browser developer-token callback: got %q, want browser_mismatch", got)
	}
	// Approved by another account (W29): an error code, and the grant revoked.
	authURL = b.startFlow("/auth/developer-token/start", `{"name":"x"}`)
	if got := b.approveAndReturn(authURL, app.bob).Get("auth_error"); got != "account_mismatch" {
		t.Errorf("developer token approved by bob: got %q, want account_mismatch", got)
	}
	if app.developerTokensOf(app.alice.DID)+app.developerTokensOf(app.bob.DID) != 0 {
		t.Error("a developer token was created")
	}
	if got := app.net.ActiveGrants(app.bob.DID); got != 0 {
		t.Errorf("bob's grants: got %d, want 0", got)
	}
}

func TestRevokeDeveloperTokenByPrefix(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	token := b.mintDeveloperToken(app.alice, `{"name":"a"}`)
	// A second token whose display prefix starts like the first one.
	ctx := context.Background()
	recs, _ := app.store.ListSessionsByDID(ctx, app.alice.DID, atauth.KindDeveloper)
	twin := recs[0]
	twin.ID = strings.Repeat("0", 64)
	twin.Prefix = token[:2] + "zzzzzz"
	if err := app.store.CreateSession(ctx, twin); err != nil {
		t.Fatal(err)
	}
	if resp := b.fetch("DELETE", "/auth/developer-tokens/"+token[:2], ""); resp.status != http.StatusBadRequest || !strings.Contains(string(resp.body), "more characters") {
		t.Errorf("ambiguous prefix: got %d %s, want 400 asking for more characters", resp.status, resp.body)
	}
	if resp := b.fetch("DELETE", "/auth/developer-tokens/"+token[:9], ""); resp.status != http.StatusNotFound {
		t.Errorf("9 characters that are not the whole token: got %d, want 404", resp.status)
	}
	if got := app.developerTokensOf(app.alice.DID); got != 2 {
		t.Fatalf("tokens after refused revocations: got %d, want 2", got)
	}
	if resp := b.fetch("DELETE", "/auth/developer-tokens/"+token, ""); resp.status != http.StatusOK {
		t.Errorf("revoke by the whole token: got %d %s", resp.status, resp.body)
	}
	if got := app.developerTokensOf(app.alice.DID); got != 1 {
		t.Errorf("tokens after revocation: got %d, want 1", got)
	}
}
