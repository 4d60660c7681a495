package atauth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"testing"

	"github.com/atauth/atauth"
)

func TestSecretsAtRest(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	id := b.cookie("session_id")

	recs, err := app.store.ListSessionsByDID(context.Background(), app.alice.DID, atauth.KindBrowser)
	if err != nil || len(recs) != 1 {
		t.Fatalf("ListSessionsByDID: got %d records, %v; want 1", len(recs), err)
	}
	rec := recs[0]
	sum := sha256.Sum256([]byte(id))
	if want := hex.EncodeToString(sum[:]); rec.ID != want {
		t.Errorf("store key: got %q, want SHA-256 of the session id %q", rec.ID, want)
	}
	if bytes.Contains(rec.Sealed, []byte(id)) || rec.ID == id {
		t.Error("the session id is stored in the clear")
	}
	if bytes.Contains(rec.Sealed, []byte("access_token")) || bytes.Contains(rec.Sealed, []byte("refresh_token")) {
		t.Error("the sealed payload is readable JSON")
	}
}

func TestSealingKeyRotationKeepsSessions(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)

	// A new Manager seals with a new key but still opens with the old one.
	cfg := app.cfg
	cfg.SealingKeys = append([]atauth.SealingKey{{ID: "k2", Secret: []byte("fedcba9876543210fedcba9876543210")}}, cfg.SealingKeys...)
	rotated, err := atauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://127.0.0.1/", nil)
	req.AddCookie(&http.Cookie{Name: "session_id", Value: b.cookie("session_id")})
	s, err := rotated.Authenticate(req)
	if err != nil || s.DID != app.alice.DID {
		t.Fatalf("Authenticate after rotation: got %v, %v; want alice", s, err)
	}
	// Logout must open the sealed tokens to revoke the grant.
	if err := rotated.Logout(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if got := app.net.ActiveGrants(app.alice.DID); got != 0 {
		t.Errorf("grants after logout with the rotated keyring: got %d, want 0", got)
	}
}

func TestJWKSEndpoint(t *testing.T) {
	public := newTestApp(t)
	if resp := public.newBrowser().do("GET", "/.well-known/jwks.json", "", nil); resp.status != http.StatusNotFound {
		t.Errorf("public client JWKS: got %d, want 404", resp.status)
	}
	conf := newTestApp(t, confidential(t))
	resp := conf.newBrowser().do("GET", "/.well-known/jwks.json", "", nil)
	if resp.status != http.StatusOK || !bytes.Contains(resp.body, []byte(`"kid":"k1"`)) {
		t.Errorf("confidential JWKS: got %d %s, want 200 with kid k1", resp.status, resp.body)
	}
	md := conf.newBrowser().do("GET", "/oauth-client-metadata.json", "", nil).json(t)
	if md["client_id"] != conf.m.ClientID() || md["jwks_uri"] == nil {
		t.Errorf("client metadata: got %v", md)
	}
}

func TestRecordSealedWithARemovedKey(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	cfg := app.cfg
	cfg.SealingKeys = []atauth.SealingKey{{ID: "k9", Secret: []byte("fedcba9876543210fedcba9876543210")}}
	m2, err := atauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m2.SessionByID(context.Background(), b.cookie("session_id"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := getSession(context.Background(), m2, s); !errors.Is(err, atauth.ErrSessionExpired) {
		t.Errorf("PDS call on a record no key opens: got %v, want ErrSessionExpired", err)
	}
}
