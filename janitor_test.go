package atauth_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/atauth/atauth"
)

func TestRefreshIdleKeepsSessionsAlive(t *testing.T) {
	// A short inactivity limit in real time: the network checks DPoP
	// timestamps, so the clock cannot be moved.
	const idle = 2 * time.Second
	app := newTestApp(t, func(c *atauth.Config) { c.InactivityLimit = idle })
	b := app.newBrowser()
	b.login(app.alice)
	token := b.mintDeveloperToken(app.alice, `{}`)

	time.Sleep(idle/2 + 200*time.Millisecond)
	n, err := app.m.RefreshIdle(context.Background(), 100)
	if err != nil || n != 2 {
		t.Fatalf("RefreshIdle: got %d, %v; want 2 sessions kept alive", n, err)
	}
	if got := app.net.Stats().Refresh; got != 2 {
		t.Errorf("refreshes: got %d, want 2", got)
	}
	time.Sleep(idle/2 + 200*time.Millisecond)
	if resp := b.fetch("GET", "/auth/me", ""); resp.status != http.StatusOK {
		t.Errorf("browser session past the inactivity limit since login, kept alive: got %d, want 200", resp.status)
	}
	if resp := app.newBrowser().do("GET", "/auth/me", "", bearer(token)); resp.status != http.StatusOK {
		t.Errorf("developer token kept alive: got %d, want 200", resp.status)
	}
}

func TestIdleSessionWithoutJanitorEnds(t *testing.T) {
	const idle = time.Second
	app := newTestApp(t, func(c *atauth.Config) { c.InactivityLimit = idle })
	b := app.newBrowser()
	b.login(app.alice)
	time.Sleep(idle + 100*time.Millisecond)
	if resp := b.fetch("GET", "/auth/me", ""); resp.status != http.StatusUnauthorized {
		t.Errorf("idle session: got %d, want 401", resp.status)
	}
}

func TestPurgeExpiredAndJanitor(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	b.start("alice.test") // a pending flow that is never finished
	app.clock.Advance(8 * 24 * time.Hour)
	n, err := app.m.PurgeExpired(context.Background())
	if err != nil || n < 2 {
		t.Errorf("PurgeExpired: got %d, %v; want the session and the flow removed", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := app.m.RunJanitor(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("RunJanitor with a cancelled context: got %v, want context.Canceled", err)
	}
	if err := app.m.RunJanitor(context.Background(), 0); !errors.Is(err, atauth.ErrInvalidInput) {
		t.Errorf("RunJanitor(0): got %v, want ErrInvalidInput", err)
	}
}
