package atauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/atauth/atauth"
)

// TestClientKeyRotation rotates a confidential client's signing key while a
// session exists. The new key is published before it signs. The reference
// authorization server binds each grant to the key that started it, so the
// old session keeps refreshing with the old key while new sessions use the
// new one; once the old key is removed, its sessions end cleanly.
func TestClientKeyRotation(t *testing.T) {
	app := newTestApp(t, confidential(t))
	b := app.newBrowser()
	b.login(app.alice)
	oldID := b.cookie("session_id")
	oldKey := app.cfg.ClientKeys[0]
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	// Step 1: the new key is published, not yet signing.
	cfg := app.cfg
	cfg.ClientKeys = []atauth.ClientKey{oldKey, {ID: "k2", Key: newKey, NotBefore: time.Now().Add(time.Hour)}}
	m1 := mustNew(t, cfg)
	app.use(m1)
	jwks := string(b.do("GET", "/.well-known/jwks.json", "", nil).body)
	if !strings.Contains(jwks, `"kid":"k1"`) || !strings.Contains(jwks, `"kid":"k2"`) {
		t.Fatalf("JWKS during the rotation: got %s, want k1 and k2", jwks)
	}
	refreshOnce(t, m1, oldID)

	// Step 2: the new key signs new grants; the old grant keeps its key.
	cfg.ClientKeys = []atauth.ClientKey{oldKey, {ID: "k2", Key: newKey, NotBefore: time.Now().Add(-time.Second)}}
	m2 := mustNew(t, cfg)
	app.use(m2)
	refreshOnce(t, m2, oldID)
	nb := app.newBrowser()
	nb.login(app.bob)
	newID := nb.cookie("session_id")
	refreshOnce(t, m2, newID)

	// Step 3: the old key is removed: only its grants end.
	cfg.ClientKeys = []atauth.ClientKey{{ID: "k2", Key: newKey}}
	m3 := mustNew(t, cfg)
	app.use(m3)
	if jwks := string(b.do("GET", "/.well-known/jwks.json", "", nil).body); strings.Contains(jwks, `"kid":"k1"`) {
		t.Errorf("JWKS after removing k1: got %s", jwks)
	}
	refreshOnce(t, m3, newID)
	ctx := context.Background()
	s, err := m3.SessionByID(ctx, oldID)
	if err != nil {
		t.Fatal(err)
	}
	if err := m3.MarkAccessTokenExpired(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := getSession(ctx, m3, s); !errors.Is(err, atauth.ErrSessionExpired) {
		t.Errorf("refreshing a grant whose key was removed: got %v, want ErrSessionExpired", err)
	}
	if got := app.net.Stats().Refresh; got != 4 {
		t.Errorf("refreshes: got %d, want 4", got)
	}
}

func mustNew(t *testing.T, cfg atauth.Config) *atauth.Manager {
	t.Helper()
	m, err := atauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// refreshOnce forces one refresh of the session id through m.
func refreshOnce(t *testing.T, m *atauth.Manager, id string) {
	t.Helper()
	ctx := context.Background()
	s, err := m.SessionByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.MarkAccessTokenExpired(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := getSession(ctx, m, s); err != nil {
		t.Fatalf("PDS call that refreshes: %v", err)
	}
}
