package atauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/memstore"
)

// TestDefaultClientRefusesInternalAddresses: with the default HTTP client,
// an identity directory and a handle resolver configured on an internal
// address are never reached; with InsecureAllowLocalNetworks, as a control,
// they are.
func TestDefaultClientRefusesInternalAddresses(t *testing.T) {
	var hits atomic.Int64
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	}))
	defer internal.Close()

	newManager := func(insecure bool) *atauth.Manager {
		m, err := atauth.New(atauth.Config{
			ClientID:                   "https://app.example.com/oauth-client-metadata.json",
			RedirectURL:                "https://app.example.com/auth/callback",
			SealingKeys:                []atauth.SealingKey{{ID: "k1", Secret: make([]byte, 32)}},
			Store:                      memstore.New(),
			PLCURL:                     internal.URL,
			HandleResolverURL:          internal.URL,
			InsecureAllowLocalNetworks: insecure,
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids := []string{"alice.example.com", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}
	safe := newManager(false)
	for _, id := range ids {
		if _, err := safe.StartLogin(ctx, id); err == nil {
			t.Errorf("StartLogin(%q): got nil error, want a refusal", id)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("requests that reached the internal server: got %d, want 0", n)
	}
	open := newManager(true)
	for _, id := range ids {
		_, _ = open.StartLogin(ctx, id)
	}
	if n := hits.Load(); n != int64(len(ids)) {
		t.Errorf("control with InsecureAllowLocalNetworks: got %d requests, want %d", n, len(ids))
	}
}

// TestAbandonedFlowsExpire: a flood of sign-ins that never come back leaves
// nothing behind once their ten minutes are over.
func TestAbandonedFlowsExpire(t *testing.T) {
	app := newTestApp(t)
	ctx := context.Background()
	const flows = 300
	for range flows {
		if _, err := app.m.StartLogin(ctx, "alice.test"); err != nil {
			t.Fatal(err)
		}
	}
	app.clock.Advance(10*time.Minute + time.Second)
	n, err := app.m.PurgeExpired(ctx)
	if err != nil || n < flows {
		t.Errorf("PurgeExpired after %d abandoned flows: got %d, %v; want at least %d", flows, n, err, flows)
	}
	if n, _ := app.m.PurgeExpired(ctx); n != 0 {
		t.Errorf("second purge: got %d, want 0", n)
	}
}
