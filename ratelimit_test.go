package atauth_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/atauth/atauth"
)

func TestRateLimit(t *testing.T) {
	var app *testApp
	app = newTestApp(t, func(c *atauth.Config) {
		c.RateLimiter = atauth.NewTokenBucket(6, 3, func() time.Time { return app.clock.Now() })
	})
	b := app.newBrowser()
	for i := range 3 {
		if resp := b.fetch("POST", "/auth/exchange", `{"exchange_token":"x"}`); resp.status != http.StatusBadRequest {
			t.Fatalf("request %d within the burst: got %d, want 400", i, resp.status)
		}
	}
	// Neither a made-up credential nor a forwarded-for header buys a new
	// bucket (W17).
	for _, h := range []map[string]string{
		{"Authorization": "Bearer made-up-1"},
		{"X-Forwarded-For": "203.0.113.9"},
		nil,
	} {
		resp := b.do("POST", "/auth/exchange", `{"exchange_token":"x"}`, h)
		if resp.status != http.StatusTooManyRequests {
			t.Errorf("over the limit with %v: got %d %s, want 429", h, resp.status, resp.body)
			continue
		}
		if s, err := strconv.Atoi(resp.header.Get("Retry-After")); err != nil || s < 1 || s > 10 {
			t.Errorf("Retry-After: got %q, want 1…10 seconds", resp.header.Get("Retry-After"))
		}
	}
	// Authenticated endpoints are not limited.
	if resp := b.fetch("GET", "/auth/me", ""); resp.status != http.StatusUnauthorized {
		t.Errorf("/auth/me over the limit: got %d, want 401", resp.status)
	}
	app.clock.Advance(10 * time.Second) // one token at 6 a minute
	if resp := b.fetch("POST", "/auth/exchange", `{"exchange_token":"x"}`); resp.status != http.StatusBadRequest {
		t.Errorf("after the bucket refilled: got %d, want 400", resp.status)
	}
}

func TestRateLimitBehindTrustedProxy(t *testing.T) {
	app := newTestApp(t, func(c *atauth.Config) {
		c.RateLimiter = atauth.NewTokenBucket(60, 1, nil)
		c.TrustedProxies = []string{"127.0.0.0/8"}
	})
	b := app.newBrowser()
	for _, client := range []string{"203.0.113.1", "203.0.113.2"} {
		resp := b.do("POST", "/auth/exchange", `{"exchange_token":"x"}`, map[string]string{"X-Forwarded-For": "198.51.100.7, " + client})
		if resp.status != http.StatusBadRequest {
			t.Errorf("first request of %s: got %d, want 400", client, resp.status)
		}
	}
	// The client is the last untrusted hop; what it put before is ignored.
	resp := b.do("POST", "/auth/exchange", `{"exchange_token":"x"}`, map[string]string{"X-Forwarded-For": "198.51.100.99, 203.0.113.1"})
	if resp.status != http.StatusTooManyRequests {
		t.Errorf("second request of 203.0.113.1 with a spoofed first hop: got %d, want 429", resp.status)
	}
}

func TestNoRateLimit(t *testing.T) {
	app := newTestApp(t, func(c *atauth.Config) { c.RateLimiter = atauth.NoRateLimit })
	b := app.newBrowser()
	for range 100 {
		if resp := b.fetch("POST", "/auth/exchange", `{"exchange_token":"x"}`); resp.status != http.StatusBadRequest {
			t.Fatalf("got %d, want 400", resp.status)
		}
	}
}
