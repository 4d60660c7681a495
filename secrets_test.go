package atauth_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/atauth/atauth"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNoSecretInLogs runs every flow with debug logging and checks that no
// session id, developer token, exchange token, state or code appears in the
// logs, and none in an error answer.
func TestNoSecretInLogs(t *testing.T) {
	logs := &syncBuffer{}
	app := newTestApp(t, func(c *atauth.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Scopes = []string{"atproto", "transition:generic", "transition:email"}
		c.LoginScopes = []string{"atproto", "transition:generic"}
	})
	var secrets []string
	var bodies []string
	keep := func(v ...string) {
		for _, s := range v {
			if s != "" {
				secrets = append(secrets, s)
			}
		}
	}
	// follow approves authURL, keeps the callback's state and code, and
	// returns the landing query.
	follow := func(b *browser, authURL string, handle, pw string) url.Values {
		cb, err := app.net.Approve(context.Background(), authURL, handle, pw)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(cb)
		keep(u.Query().Get("state"), u.Query().Get("code"))
		q := b.callback(cb)
		keep(q.Get("exchange_token"))
		// A replayed callback exercises the error paths.
		b.callback(cb)
		return q
	}

	b := app.newBrowser()
	q := follow(b, b.start("alice.test"), "alice.test", "alice-pw")
	b.exchange(q.Get("exchange_token"))
	bodies = append(bodies, string(b.exchange(q.Get("exchange_token")).body))
	keep(b.cookie("session_id"), b.cookie("atauth_flow"))

	q = follow(b, b.startFlow("/auth/add-account/start", `{"handle":"bob.test"}`), "bob.test", "bob-pw")
	b.exchange(q.Get("exchange_token"))
	keep(b.cookie("session_id"))
	b.fetch("POST", "/auth/switch-account", `{"target_did":"`+app.alice.DID+`"}`)
	keep(b.cookie("session_id"))

	q = follow(b, b.startFlow("/auth/developer-token/start", `{"name":"ci"}`), "alice.test", "alice-pw")
	token, _ := b.exchange(q.Get("exchange_token")).json(t)["session_id"].(string)
	keep(token)
	follow(b, b.startFlow("/auth/scope-upgrade/start", `{"scopes":["transition:email"]}`), "alice.test", "alice-pw")

	s := app.session(app.m, b.cookie("session_id"))
	if err := app.m.MarkAccessTokenExpired(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if _, err := getSession(context.Background(), app.m, s); err != nil {
		t.Fatal(err)
	}
	spendStoredRefreshToken(t, app, s)
	getSession(context.Background(), app.m, s) // ends the session: invalid_grant

	cli := app.newBrowser()
	for _, path := range []string{"/auth/me", "/auth/developer-tokens"} {
		bodies = append(bodies, string(cli.do("GET", path, "", bearer(b.cookie("session_id"))).body))
	}
	bodies = append(bodies, string(cli.do("DELETE", "/auth/developer-tokens/"+token, "", bearer(token)).body))
	cli.do("POST", "/auth/logout", "", bearer(token))
	b.fetch("POST", "/auth/logout-all", "")

	if len(secrets) < 12 {
		t.Fatalf("collected %d secrets, want every flow's", len(secrets))
	}
	out := logs.String()
	if !strings.Contains(out, "session expired") {
		t.Errorf("the logs lack the session's end; the scan would prove little:\n%s", out)
	}
	for _, sec := range secrets {
		if strings.Contains(out, sec) {
			t.Errorf("a secret (%.6s…) appears in the logs", sec)
		}
		for _, body := range bodies {
			if strings.Contains(body, sec) {
				t.Errorf("a secret (%.6s…) appears in an error answer: %s", sec, body)
			}
		}
	}
}
