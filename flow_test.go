package atauth_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestLoginEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []appOption
	}{
		{"loopback public client", nil},
		{"confidential client", []appOption{confidential(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := newTestApp(t, tc.opts...)
			b := app.newBrowser()

			authURL := b.start("@alice.test")
			if got := app.net.LastPAR().LoginHint; got != "alice.test" {
				t.Errorf("login_hint: got %q, want %q", got, "alice.test")
			}
			if got := b.cookie("atauth_flow"); got == "" {
				t.Fatal("start set no flow cookie")
			}
			cb, err := app.net.Approve(context.Background(), authURL, "alice.test", "alice-pw")
			if err != nil {
				t.Fatalf("Approve: %v", err)
			}
			q := b.callback(cb)
			xt := q.Get("exchange_token")
			if xt == "" || q.Get("auth_error") != "" {
				t.Fatalf("callback landed on %v, want an exchange_token", q)
			}

			resp := b.exchange(xt)
			if resp.status != http.StatusOK {
				t.Fatalf("exchange: got %d %s, want 200", resp.status, resp.body)
			}
			if v, ok := resp.json(t)["session_id"]; !ok || v != nil {
				t.Errorf("browser exchange body: got %s, want session_id null", resp.body)
			}
			if got := resp.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("exchange Cache-Control: got %q, want no-store", got)
			}
			checkSessionCookie(t, resp.header)
			if b.cookie("session_id") == "" {
				t.Fatal("exchange set no session cookie")
			}

			me := b.fetch("GET", "/auth/me", "")
			if me.status != http.StatusOK {
				t.Fatalf("/auth/me: got %d %s, want 200", me.status, me.body)
			}
			u := me.json(t)
			if u["did"] != app.alice.DID || u["handle"] != "alice.test" || u["kind"] != "browser" {
				t.Errorf("/auth/me: got %s, want alice's DID, handle and kind browser", me.body)
			}
			if scopes, _ := u["scopes"].([]any); !slices.Contains(scopes, any("atproto")) {
				t.Errorf("/auth/me scopes: got %v, want atproto among them", u["scopes"])
			}
			if linked, ok := u["linked_accounts"].([]any); !ok || len(linked) != 0 {
				t.Errorf("/auth/me linked_accounts: got %v, want []", u["linked_accounts"])
			}
			if w := b.fetch("GET", "/api/whoami", ""); w.status != 200 || string(w.body) != app.alice.DID {
				t.Errorf("RequireAuth route: got %d %q, want 200 %q", w.status, w.body, app.alice.DID)
			}
			if got := app.net.ActiveGrants(app.alice.DID); got != 1 {
				t.Errorf("active grants after login: got %d, want 1", got)
			}

			out := b.fetch("POST", "/auth/logout", "")
			if out.status != http.StatusOK {
				t.Fatalf("logout: got %d %s, want 200", out.status, out.body)
			}
			if b.cookie("session_id") != "" {
				t.Error("logout left the session cookie in place")
			}
			if got := app.net.ActiveGrants(app.alice.DID); got != 0 {
				t.Errorf("active grants after logout: got %d, want 0 (revoked)", got)
			}
			if got := app.sessionsOf(app.alice.DID); got != 0 {
				t.Errorf("sessions after logout: got %d, want 0", got)
			}
			if me := b.fetch("GET", "/auth/me", ""); me.status != http.StatusUnauthorized {
				t.Errorf("/auth/me after logout: got %d, want 401", me.status)
			}
		})
	}
}

func checkSessionCookie(t *testing.T, h http.Header) {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		if !strings.HasPrefix(line, "session_id=") {
			continue
		}
		for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="} {
			if !strings.Contains(line, attr) {
				t.Errorf("session cookie %q lacks %s", line, attr)
			}
		}
		if strings.Contains(strings.ToLower(line), "domain=") {
			t.Errorf("session cookie %q has a Domain; want host-only", line)
		}
		return
	}
	t.Errorf("no session cookie in %v", h.Values("Set-Cookie"))
}

func TestLoginByDIDAndByServerURL(t *testing.T) {
	app := newTestApp(t)

	b := app.newBrowser()
	authURL := b.start(app.alice.DID)
	if got := app.net.LastPAR().LoginHint; got != app.alice.DID {
		t.Errorf("login_hint for a DID: got %q, want %q", got, app.alice.DID)
	}
	cb, err := app.net.Approve(context.Background(), authURL, "alice.test", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	if q := b.callback(cb); q.Get("exchange_token") == "" {
		t.Fatalf("DID login landed on %v, want an exchange_token", q)
	}

	// Signing in at a server URL: the account is picked at the server, and
	// the callback resolves it from the token's sub.
	b2 := app.newBrowser()
	authURL = b2.start(app.net.PDSURL())
	if got := app.net.LastPAR().LoginHint; got != "" {
		t.Errorf("login_hint for a server URL: got %q, want none", got)
	}
	cb, err = app.net.Approve(context.Background(), authURL, "bob.test", "bob-pw")
	if err != nil {
		t.Fatal(err)
	}
	xt := b2.callback(cb).Get("exchange_token")
	if xt == "" {
		t.Fatal("server-URL login gave no exchange token")
	}
	if resp := b2.exchange(xt); resp.status != http.StatusOK {
		t.Fatalf("exchange: got %d", resp.status)
	}
	me := b2.fetch("GET", "/auth/me", "").json(t)
	if me["did"] != app.bob.DID || me["handle"] != "bob.test" {
		t.Errorf("server-URL login: got %v, want bob", me)
	}
}

func TestNonBrowserExchangeAndBearer(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	authURL := b.start("alice.test")
	cb, err := app.net.Approve(context.Background(), authURL, "alice.test", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	xt := b.callback(cb).Get("exchange_token")

	// A CLI sends no Sec-Fetch-Site and no Origin: it gets the id in the body.
	cli := app.newBrowser()
	resp := cli.do("POST", "/auth/exchange", `{"exchange_token":"`+xt+`"}`, nil)
	if resp.status != http.StatusOK {
		t.Fatalf("CLI exchange: got %d %s", resp.status, resp.body)
	}
	id, _ := resp.json(t)["session_id"].(string)
	if id == "" {
		t.Fatalf("CLI exchange body %s, want a session_id", resp.body)
	}
	if len(resp.header.Values("Set-Cookie")) != 0 {
		t.Errorf("CLI exchange set cookies %v, want none", resp.header.Values("Set-Cookie"))
	}
	me := cli.do("GET", "/auth/me", "", map[string]string{"Authorization": "bearer " + id})
	if me.status != http.StatusOK || me.json(t)["did"] != app.alice.DID {
		t.Errorf("bearer /auth/me: got %d %s, want alice", me.status, me.body)
	}
}

func TestBearerBeforeCookie(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	// A valid cookie does not rescue an invalid bearer token (W35).
	resp := b.do("GET", "/auth/me", "", map[string]string{"Authorization": "Bearer not-a-session"})
	if resp.status != http.StatusUnauthorized {
		t.Errorf("invalid bearer with valid cookie: got %d, want 401", resp.status)
	}
	resp = b.do("GET", "/auth/me", "", map[string]string{"Authorization": "Basic Zm9vOmJhcg=="})
	if resp.status != http.StatusUnauthorized {
		t.Errorf("non-bearer Authorization with valid cookie: got %d, want 401", resp.status)
	}
}

func TestOutboundRequestsPerLogin(t *testing.T) {
	app := newTestApp(t)
	app.out.reset()
	app.newBrowser().login(app.alice)
	first := app.out.reset()
	t.Logf("first login: %d outbound requests: %v", len(first), first)
	if len(first) > 7 {
		t.Errorf("first login: got %d outbound requests, want at most 7: %v", len(first), first)
	}
	app.newBrowser().login(app.alice)
	second := app.out.reset()
	t.Logf("second login: %d outbound requests: %v", len(second), second)
	if len(second) != 4 {
		t.Errorf("second login to the same PDS: got %d outbound requests, want 4 (handle, DID document, PAR, token): %v", len(second), second)
	}
}
