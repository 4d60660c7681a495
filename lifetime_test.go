package atauth_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/atauth/atauth"
)

func TestSessionLifetime(t *testing.T) {
	// A generous inactivity limit isolates the lifetime.
	busy := func(c *atauth.Config) { c.InactivityLimit = 400 * 24 * time.Hour }
	for _, tc := range []struct {
		name string
		opts []appOption
		want time.Duration
	}{
		{"public client", []appOption{busy}, 7 * 24 * time.Hour},
		{"confidential client", []appOption{busy, confidential(t)}, 180 * 24 * time.Hour},
		{"configured", []appOption{busy, func(c *atauth.Config) { c.SessionLifetime = 48 * time.Hour }}, 48 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := newTestApp(t, tc.opts...)
			b := app.newBrowser()
			b.login(app.alice)
			recs, err := app.store.ListSessionsByDID(context.Background(), app.alice.DID, atauth.KindBrowser)
			if err != nil || len(recs) != 1 {
				t.Fatalf("sessions: %d, %v", len(recs), err)
			}
			if got := recs[0].ExpiresAt.Sub(recs[0].CreatedAt); got != tc.want {
				t.Errorf("lifetime: got %v, want %v", got, tc.want)
			}
			app.clock.Advance(tc.want - time.Minute)
			if me := b.fetch("GET", "/auth/me", ""); me.status != http.StatusOK {
				t.Errorf("/auth/me a minute before expiry: got %d, want 200", me.status)
			}
			app.clock.Advance(2 * time.Minute)
			if me := b.fetch("GET", "/auth/me", ""); me.status != http.StatusUnauthorized {
				t.Errorf("/auth/me after expiry: got %d, want 401", me.status)
			}
		})
	}
}

// TestIdleSessionEnds: a grant unused for the inactivity limit is dead at
// the authorization server, so the session ends then, whatever its
// lifetime.
func TestIdleSessionEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []appOption
		idle time.Duration
	}{
		{"public client", nil, 2 * 24 * time.Hour},
		{"confidential client", []appOption{confidential(t)}, 30 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := newTestApp(t, tc.opts...)
			b := app.newBrowser()
			b.login(app.alice)
			app.clock.Advance(tc.idle - time.Minute)
			if me := b.fetch("GET", "/auth/me", ""); me.status != http.StatusOK {
				t.Errorf("/auth/me a minute before the inactivity limit: got %d, want 200", me.status)
			}
			app.clock.Advance(2 * time.Minute)
			if me := b.fetch("GET", "/auth/me", ""); me.status != http.StatusUnauthorized {
				t.Errorf("/auth/me past the inactivity limit: got %d, want 401", me.status)
			}
		})
	}
}

func TestExchangeTokenExpiresAfterAMinute(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	xt := b.callback(b.approve("alice.test", "alice-pw")).Get("exchange_token")
	app.clock.Advance(61 * time.Second)
	if resp := b.exchange(xt); resp.status != http.StatusUnauthorized {
		t.Errorf("exchange after 61 s: got %d %s, want 401", resp.status, resp.body)
	}
}

func TestFlowExpiresAfterTenMinutes(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	cb := b.approve("alice.test", "alice-pw")
	app.clock.Advance(10*time.Minute + time.Second)
	if got := b.callback(cb).Get("auth_error"); got != "expired" {
		t.Errorf("callback after 10 minutes: got auth_error %q, want expired", got)
	}
}

func TestExchangeForAnEndedSessionFails(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	q := b.callback(b.approve("alice.test", "alice-pw"))
	// The session ends before the frontend redeems the token (W40).
	recs, _ := app.store.ListSessionsByDID(context.Background(), app.alice.DID, atauth.KindBrowser)
	for _, r := range recs {
		_ = app.store.DeleteSession(context.Background(), r.ID)
	}
	if resp := b.exchange(q.Get("exchange_token")); resp.status != http.StatusUnauthorized {
		t.Errorf("exchange for a deleted session: got %d, want 401", resp.status)
	}
	if b.cookie("session_id") != "" {
		t.Error("a cookie was set for a dead session")
	}
}

func TestUpstreamOutageAtStartIs503(t *testing.T) {
	app := newTestApp(t)
	app.net.FailNext(10)
	resp := app.newBrowser().do("GET", "/auth/start?handle=alice.test", "", nil)
	if resp.status != http.StatusServiceUnavailable {
		t.Errorf("start while the authorization server fails: got %d %s, want 503", resp.status, resp.body)
	}
}
