package atauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/atauth/atauth"
)

// approve starts a sign-in in b and approves it at the authorization server,
// returning the callback URL.
func (b *browser) approve(acct string, pw string) string {
	b.t.Helper()
	authURL := b.start(acct)
	cb, err := b.app.net.Approve(context.Background(), authURL, acct, pw)
	if err != nil {
		b.t.Fatalf("Approve: %v", err)
	}
	return cb
}

func TestReplayedStateIsRejected(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	cb := b.approve("alice.test", "alice-pw")
	if q := b.callback(cb); q.Get("exchange_token") == "" {
		t.Fatalf("first callback: got %v, want an exchange token", q)
	}
	q := b.callback(cb)
	if got := q.Get("auth_error"); got != "expired" {
		t.Errorf("replayed callback: got auth_error %q, want expired", got)
	}
	if q.Has("exchange_token") {
		t.Error("replayed callback minted an exchange token")
	}
	if got := app.sessionsOf(app.alice.DID); got != 1 {
		t.Errorf("sessions after replay: got %d, want 1", got)
	}
}

func TestReplayedExchangeTokenIsRejected(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	xt := b.callback(b.approve("alice.test", "alice-pw")).Get("exchange_token")
	if resp := b.exchange(xt); resp.status != http.StatusOK {
		t.Fatalf("first exchange: got %d", resp.status)
	}
	resp := b.exchange(xt)
	if resp.status != http.StatusUnauthorized {
		t.Errorf("replayed exchange: got %d %s, want 401", resp.status, resp.body)
	}
	if !strings.Contains(string(resp.body), `"detail"`) {
		t.Errorf("replayed exchange body %s, want a detail", resp.body)
	}
}

func TestCallbackInAnotherBrowserIsRejected(t *testing.T) {
	app := newTestApp(t)
	// Login CSRF (W1a): the attacker consents for their own account and sends
	// the callback URL to the victim.
	attacker := app.newBrowser()
	cb := attacker.approve("bob.test", "bob-pw")

	victim := app.newBrowser()
	q := victim.callback(cb)
	if got := q.Get("auth_error"); got != "browser_mismatch" {
		t.Errorf("callback in another browser: got auth_error %q, want browser_mismatch", got)
	}
	if victim.cookie("session_id") != "" {
		t.Error("the victim's browser got a session cookie")
	}
	if got := app.sessionsOf(app.bob.DID); got != 0 {
		t.Errorf("sessions created: got %d, want 0", got)
	}
	// The state was spent by the attempt.
	if got := attacker.callback(cb).Get("auth_error"); got != "expired" {
		t.Errorf("callback after a foreign attempt: got %q, want expired", got)
	}
}

func TestForwardedExchangeTokenIsRejected(t *testing.T) {
	app := newTestApp(t)
	attacker := app.newBrowser()
	xt := attacker.callback(attacker.approve("bob.test", "bob-pw")).Get("exchange_token")
	if xt == "" {
		t.Fatal("no exchange token")
	}
	victim := app.newBrowser()
	resp := victim.exchange(xt)
	if resp.status != http.StatusUnauthorized {
		t.Errorf("exchange in another browser: got %d %s, want 401", resp.status, resp.body)
	}
	if victim.cookie("session_id") != "" {
		t.Error("the victim's browser got a session cookie")
	}
	if me := victim.fetch("GET", "/auth/me", ""); me.status != http.StatusUnauthorized {
		t.Errorf("victim /auth/me: got %d, want 401", me.status)
	}
}

func TestIssuerMismatchIsRejected(t *testing.T) {
	app := newTestApp(t)
	app.net.SetWrongIssuer(true)
	b := app.newBrowser()
	cb := b.approve("alice.test", "alice-pw")
	q := b.callback(cb)
	if got := q.Get("auth_error"); got != "issuer_mismatch" {
		t.Errorf("wrong iss: got auth_error %q, want issuer_mismatch", got)
	}
	if got := app.sessionsOf(app.alice.DID); got != 0 {
		t.Errorf("sessions created: got %d, want 0", got)
	}
	// The state was consumed before the iss check (W28).
	if got := b.callback(cb).Get("auth_error"); got != "expired" {
		t.Errorf("retry after iss mismatch: got %q, want expired", got)
	}
}

func TestSubMismatchIsRejectedAndRevoked(t *testing.T) {
	app := newTestApp(t)
	app.net.SetWrongSub(app.bob.DID)
	b := app.newBrowser()
	q := b.callback(b.approve("alice.test", "alice-pw"))
	if got := q.Get("auth_error"); got != "account_mismatch" {
		t.Errorf("wrong sub: got auth_error %q, want account_mismatch", got)
	}
	if got := app.sessionsOf(app.alice.DID) + app.sessionsOf(app.bob.DID); got != 0 {
		t.Errorf("sessions created: got %d, want 0", got)
	}
	if got := app.net.ActiveGrants(app.alice.DID); got != 0 {
		t.Errorf("grants left alive: got %d, want 0 (the mismatched grant is revoked)", got)
	}
}

func TestRefusalAtTheServer(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	authURL := b.start("alice.test")
	cb, err := app.net.Deny(context.Background(), authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := b.callback(cb)
	if got := q.Get("auth_error"); got != "access_denied" {
		t.Errorf("refusal: got auth_error %q, want access_denied", got)
	}
	if got := app.sessionsOf(app.alice.DID); got != 0 {
		t.Errorf("sessions created: got %d, want 0", got)
	}
}

func TestCallbackErrorParameterIsNotReflected(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.start("alice.test")
	// W2: a crafted error must not inject parameters into the landing URL.
	resp := b.do("GET", "/auth/callback?state=x&error=access_denied%26admin%3Dtrue%23frag", "", nil)
	if resp.status != http.StatusSeeOther {
		t.Fatalf("got %d, want 303", resp.status)
	}
	q := resp.location.Query()
	if len(q) != 1 || q.Get("auth_error") != "expired" {
		t.Errorf("landing query: got %v, want only auth_error=expired", q)
	}
	if resp.location.Fragment != "" {
		t.Errorf("landing fragment: got %q, want none", resp.location.Fragment)
	}
}

func TestCrossSitePostIsRefused(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	resp := b.do("POST", "/auth/logout", "", map[string]string{
		"Sec-Fetch-Site": "cross-site",
		"Origin":         "https://evil.example",
	})
	if resp.status != http.StatusForbidden {
		t.Errorf("cross-site logout: got %d %s, want 403", resp.status, resp.body)
	}
	if me := b.fetch("GET", "/auth/me", ""); me.status != http.StatusOK {
		t.Errorf("session after a refused cross-site POST: got %d, want 200", me.status)
	}
}

func TestSessionFixationIsPrevented(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	// The attacker plants a cookie of their choosing before the victim signs in.
	planted := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	b.do("GET", "/auth/me", "", map[string]string{"Cookie": "session_id=" + planted})
	u := b.app.srv.URL
	req, _ := http.NewRequest("GET", u, nil)
	b.client.Jar.SetCookies(req.URL, []*http.Cookie{{Name: "session_id", Value: planted, Path: "/"}})

	b.login(app.alice)
	if got := b.cookie("session_id"); got == planted || got == "" {
		t.Errorf("session cookie after login: got %q, want a fresh id", got)
	}
	attacker := app.newBrowser()
	resp := attacker.do("GET", "/auth/me", "", map[string]string{"Authorization": "Bearer " + planted})
	if resp.status != http.StatusUnauthorized {
		t.Errorf("planted id after the victim's login: got %d, want 401", resp.status)
	}
}

func TestBadInput(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"start without parameters", "GET", "/auth/start", "", 400},
		{"start with both parameters", "GET", "/auth/start?handle=alice.test&pds_url=https://pds.example", "", 400},
		{"start with junk", "GET", "/auth/start?handle=%3Cscript%3E", "", 400},
		{"start with an unknown handle", "GET", "/auth/start?handle=nobody.test", "", 400},
		{"start with an overlong handle", "GET", "/auth/start?handle=" + strings.Repeat("a", 5000), "", 400},
		{"start with an http URL in production mode is refused", "GET", "/auth/start?handle=ftp://x", "", 400},
		{"exchange with malformed JSON", "POST", "/auth/exchange", "{", 400},
		{"exchange with trailing data", "POST", "/auth/exchange", `{"exchange_token":"x"} {}`, 400},
		{"exchange with a malformed token", "POST", "/auth/exchange", `{"exchange_token":"short"}`, 400},
		{"exchange with an unknown token", "POST", "/auth/exchange", `{"exchange_token":"` + strings.Repeat("A", 43) + `"}`, 401},
		{"exchange with an oversized body", "POST", "/auth/exchange", `{"exchange_token":"` + strings.Repeat("A", 70<<10) + `"}`, 413},
		{"me without credential", "GET", "/auth/me", "", 401},
		{"logout without credential", "POST", "/auth/logout", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := b.fetch(tc.method, tc.path, tc.body)
			if resp.status != tc.want {
				t.Errorf("got %d %s, want %d", resp.status, resp.body, tc.want)
			}
			if !strings.Contains(string(resp.body), `"detail"`) {
				t.Errorf("body %s has no detail", resp.body)
			}
		})
	}
	if got := app.net.Stats().PAR; got != 0 {
		t.Errorf("PAR requests after bad input: got %d, want 0", got)
	}
	if got := b.do("GET", "/auth/callback", "", nil); got.status != http.StatusSeeOther || got.location.Query().Get("auth_error") != "expired" {
		t.Errorf("callback without state: got %d %v, want 303 auth_error=expired", got.status, got.location)
	}
}

func TestCORSForTrustedOriginsOnly(t *testing.T) {
	const frontend = "https://app.example"
	app := newTestApp(t, func(c *atauth.Config) { c.FrontendURL = frontend })
	b := app.newBrowser()
	pre := b.do("OPTIONS", "/auth/exchange", "", map[string]string{
		"Origin":                        frontend,
		"Access-Control-Request-Method": "POST",
	})
	if got := pre.header.Get("Access-Control-Allow-Origin"); got != frontend {
		t.Errorf("preflight from the frontend: Allow-Origin %q, want %q", got, frontend)
	}
	if got := pre.header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("preflight from the frontend: Allow-Credentials %q, want true", got)
	}
	evil := b.do("OPTIONS", "/auth/exchange", "", map[string]string{
		"Origin":                        "https://evil.example",
		"Access-Control-Request-Method": "POST",
	})
	if got := evil.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("preflight from another origin: Allow-Origin %q, want none", got)
	}
	// The trusted frontend may POST cross-origin.
	resp := b.do("POST", "/auth/exchange", `{"exchange_token":"`+strings.Repeat("A", 43)+`"}`, map[string]string{
		"Origin":         frontend,
		"Sec-Fetch-Site": "cross-site",
	})
	if resp.status != http.StatusUnauthorized {
		t.Errorf("cross-origin POST from the frontend: got %d %s, want 401 (reached the handler)", resp.status, resp.body)
	}
}

// TestTwoFlowsInOneBrowser: a browser may have several flows under way (a
// sign-in in one tab, another in a second tab); each finishes, and the
// binding to the browser holds for both.
func TestTwoFlowsInOneBrowser(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	first := b.start("alice.test")
	second := b.start("bob.test")
	q2 := b.approveAndReturn(second, app.bob)
	q1 := b.approveAndReturn(first, app.alice)
	for _, q := range []url.Values{q2, q1} {
		if q.Get("exchange_token") == "" {
			t.Fatalf("callback landed on %v, want an exchange token", q)
		}
	}
	if resp := b.exchange(q2.Get("exchange_token")); resp.status != http.StatusOK {
		t.Errorf("exchange of the second flow: got %d", resp.status)
	}
	if resp := b.exchange(q1.Get("exchange_token")); resp.status != http.StatusOK {
		t.Errorf("exchange of the first flow: got %d", resp.status)
	}
	if got := b.me()["did"]; got != app.alice.DID {
		t.Errorf("signed in as %v, want alice (the last exchange)", got)
	}
	// Another browser still cannot finish either kind of flow.
	other := app.newBrowser()
	third := b.start("alice.test")
	if got := other.approveAndReturn(third, app.alice).Get("auth_error"); got != "browser_mismatch" {
		t.Errorf("a third flow finished in another browser: got %q, want browser_mismatch", got)
	}
}

// TestFlowCookieKeepsThreeFlows: the oldest of four flows under way in one
// browser can no longer finish there.
func TestFlowCookieKeepsThreeFlows(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	oldest := b.start("alice.test")
	for range 3 {
		b.start("alice.test")
	}
	if got := b.approveAndReturn(oldest, app.alice).Get("auth_error"); got != "browser_mismatch" {
		t.Errorf("the oldest of four flows: got %q, want browser_mismatch", got)
	}
}
