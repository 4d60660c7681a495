package atauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/memstore"
)

func validConfig() atauth.Config {
	return atauth.Config{
		ClientID:    "https://app.example.com/oauth-client-metadata.json",
		RedirectURL: "https://app.example.com/auth/callback",
		Scopes:      []string{"atproto", "transition:generic"},
		SealingKeys: []atauth.SealingKey{{ID: "k1", Secret: make([]byte, 32)}},
		Store:       memstore.New(),
	}
}

func TestNewRejectsUnusableConfig(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, tc := range []struct {
		name   string
		mutate func(*atauth.Config)
	}{
		{"no store", func(c *atauth.Config) { c.Store = nil }},
		{"no sealing keys", func(c *atauth.Config) { c.SealingKeys = nil }},
		{"short sealing key", func(c *atauth.Config) { c.SealingKeys[0].Secret = make([]byte, 16) }},
		{"scopes without atproto", func(c *atauth.Config) { c.Scopes = []string{"transition:generic"} }},
		{"malformed scope", func(c *atauth.Config) { c.Scopes = []string{"atproto", "a b"} }},
		{"login scope outside the universe", func(c *atauth.Config) { c.LoginScopes = []string{"atproto", "transition:chat.bsky"} }},
		{"login scopes without atproto", func(c *atauth.Config) { c.LoginScopes = []string{"transition:generic"} }},
		{"no redirect URL", func(c *atauth.Config) { c.RedirectURL = "" }},
		{"http redirect URL on a public host", func(c *atauth.Config) { c.RedirectURL = "http://app.example.com/auth/callback" }},
		{"http client id", func(c *atauth.Config) { c.ClientID = "http://app.example.com/oauth-client-metadata.json" }},
		{"no client id with a non-loopback redirect", func(c *atauth.Config) { c.ClientID = "" }},
		{"loopback client with keys", func(c *atauth.Config) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			c.ClientID, c.RedirectURL = "", "http://127.0.0.1:8080/auth/callback"
			c.ClientKeys = []atauth.ClientKey{{ID: "k", Key: key}}
		}},
		{"non-P-256 client key", func(c *atauth.Config) { c.ClientKeys = []atauth.ClientKey{{ID: "k", Key: p384}} }},
		{"public session lifetime beyond 7 days", func(c *atauth.Config) { c.SessionLifetime = 8 * 24 * time.Hour }},
		{"path prefix without slash", func(c *atauth.Config) { c.PathPrefix = "auth" }},
		{"landing path that leaves the site", func(c *atauth.Config) { c.LandingPath = "//evil.example" }},
		{"cookie name with a space", func(c *atauth.Config) { c.CookieName = "a b" }},
		{"same cookie names", func(c *atauth.Config) { c.FlowCookieName = "session_id" }},
		{"trusted origin that is not a URL", func(c *atauth.Config) { c.TrustedOrigins = []string{"app.example"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.mutate(&cfg)
			m, err := atauth.New(cfg)
			if !errors.Is(err, atauth.ErrInvalidConfig) {
				t.Errorf("New: got %v, %v; want ErrInvalidConfig", m, err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	m, err := atauth.New(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	md := m.ClientMetadata()
	if md.TokenEndpointAuthMethod != "none" || md.Scope != "atproto transition:generic" || !md.DPoPBoundAccessTokens {
		t.Errorf("public client metadata: got %+v", md)
	}
	if _, ok := m.JWKS(); ok {
		t.Error("a public client published a JWKS")
	}
}

func TestLoopbackClientID(t *testing.T) {
	cfg := validConfig()
	cfg.ClientID, cfg.RedirectURL = "", "http://127.0.0.1:8080/auth/callback"
	m, err := atauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(m.ClientID())
	if err != nil || u.Scheme != "http" || u.Host != "localhost" || u.Path != "" {
		t.Fatalf("loopback client id %q, want http://localhost?…", m.ClientID())
	}
	if got := u.Query().Get("redirect_uri"); got != cfg.RedirectURL {
		t.Errorf("redirect_uri: got %q, want %q", got, cfg.RedirectURL)
	}
	if got := u.Query().Get("scope"); got != "atproto transition:generic" {
		t.Errorf("scope: got %q, want the declared universe", got)
	}
}

func TestConfidentialClientPublishesEveryKey(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cfg := validConfig()
	cfg.ClientKeys = []atauth.ClientKey{{ID: "old", Key: k1}, {ID: "next", Key: k2, NotBefore: time.Now().Add(24 * time.Hour)}}
	m, err := atauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	md := m.ClientMetadata()
	if md.TokenEndpointAuthMethod != "private_key_jwt" || md.TokenEndpointAuthSigningAlg != "ES256" {
		t.Errorf("confidential metadata: got %+v", md)
	}
	if md.JWKSURI != "https://app.example.com/.well-known/jwks.json" {
		t.Errorf("jwks_uri: got %q, want the default on the client id's origin", md.JWKSURI)
	}
	jwks, ok := m.JWKS()
	if !ok {
		t.Fatal("no JWKS for a confidential client")
	}
	for _, kid := range []string{`"kid":"old"`, `"kid":"next"`} {
		if !strings.Contains(string(jwks), kid) {
			t.Errorf("JWKS %s lacks %s", jwks, kid)
		}
	}
	if strings.Contains(string(jwks), `"d"`) {
		t.Errorf("JWKS %s contains private key material", jwks)
	}
}

func TestHostPrefixedCookieNames(t *testing.T) {
	cfg := validConfig()
	cfg.CookieName, cfg.FlowCookieName = "__Host-session_id", "__Host-atauth_flow"
	if _, err := atauth.New(cfg); err != nil {
		t.Errorf("__Host- cookie names: %v", err)
	}
}
