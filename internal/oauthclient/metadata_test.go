package oauthclient

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	ok := Client{HTTP: http.DefaultClient, ClientID: testClientID, RedirectURI: testRedirectURI}
	tests := []struct {
		name   string
		mutate func(*Client)
	}{
		{"no HTTP", func(c *Client) { c.HTTP = nil }},
		{"no ClientID", func(c *Client) { c.ClientID = "" }},
		{"no RedirectURI", func(c *Client) { c.RedirectURI = "" }},
		{"negative TTL", func(c *Client) { c.MetadataTTL = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New: got nil error; want an error")
			}
		})
	}
	c, err := New(ok)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if c.Now == nil || c.Rand == nil || c.Nonces == nil || c.MetadataTTL != defaultMetadataTTL {
		t.Errorf("New did not fill defaults: Now %v, Rand %v, Nonces %v, MetadataTTL %v", c.Now != nil, c.Rand != nil, c.Nonces != nil, c.MetadataTTL)
	}
}

// decodeMetadata turns a validMetadata-style map into a ServerMetadata.
func decodeMetadata(t *testing.T, m map[string]any) *ServerMetadata {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var sm ServerMetadata
	if err := json.Unmarshal(b, &sm); err != nil {
		t.Fatal(err)
	}
	return &sm
}

func TestValidateServerMetadata(t *testing.T) {
	const issuer = "https://as.example.com"
	signer := mustSigner(t, SigningKey{ID: "k1", Key: mustKey(t)})
	tests := []struct {
		name         string
		issuer       string // requested issuer; default issuer
		confidential bool
		insecure     bool
		mutate       func(m map[string]any)
		wantReason   string // substring of MetadataError.Reason; "" = valid
	}{
		{name: "valid public", mutate: func(map[string]any) {}},
		{name: "valid confidential", confidential: true, mutate: func(map[string]any) {}},
		{name: "valid without optional fields", mutate: func(m map[string]any) {
			delete(m, "revocation_endpoint")
			delete(m, "scopes_supported")
			delete(m, "prompt_values_supported")
		}},
		{name: "issuer mismatch", mutate: func(m map[string]any) { m["issuer"] = "https://other.example.com" }, wantReason: "issuer"},
		{name: "issuer trailing slash", mutate: func(m map[string]any) { m["issuer"] = issuer + "/" }, wantReason: "issuer"},
		{name: "issuer case differs", mutate: func(m map[string]any) { m["issuer"] = "https://AS.example.com" }, wantReason: "issuer"},
		{name: "issuer http", issuer: "http://as.example.com", mutate: func(m map[string]any) {
			for k, v := range validMetadata("http://as.example.com") {
				m[k] = v
			}
		}, wantReason: "https"},
		{name: "issuer with port", issuer: "https://as.example.com:8443", mutate: func(m map[string]any) {
			for k, v := range validMetadata("https://as.example.com:8443") {
				m[k] = v
			}
		}, wantReason: "port"},
		{name: "issuer with path", issuer: "https://as.example.com/tenant", mutate: func(m map[string]any) {
			m["issuer"] = "https://as.example.com/tenant"
		}, wantReason: "path"},
		{name: "issuer with query", issuer: "https://as.example.com?x=1", mutate: func(m map[string]any) {
			m["issuer"] = "https://as.example.com?x=1"
		}, wantReason: "query"},
		{name: "issuer with fragment", issuer: "https://as.example.com#x", mutate: func(m map[string]any) {
			m["issuer"] = "https://as.example.com#x"
		}, wantReason: "fragment"},
		{name: "issuer loopback", issuer: "https://localhost", mutate: func(m map[string]any) {
			for k, v := range validMetadata("https://localhost") {
				m[k] = v
			}
		}, wantReason: "loopback"},
		{name: "insecure allows http, port and loopback", issuer: "http://localhost:2583", insecure: true, mutate: func(m map[string]any) {
			for k, v := range validMetadata("http://localhost:2583") {
				m[k] = v
			}
		}},
		{name: "PAR not required", mutate: func(m map[string]any) { m["require_pushed_authorization_requests"] = false }, wantReason: "require_pushed_authorization_requests"},
		{name: "no PAR endpoint", mutate: func(m map[string]any) { delete(m, "pushed_authorization_request_endpoint") }, wantReason: "pushed_authorization_request_endpoint"},
		{name: "no authorization endpoint", mutate: func(m map[string]any) { delete(m, "authorization_endpoint") }, wantReason: "authorization_endpoint"},
		{name: "no token endpoint", mutate: func(m map[string]any) { delete(m, "token_endpoint") }, wantReason: "token_endpoint"},
		{name: "authorization endpoint http", mutate: func(m map[string]any) {
			m["authorization_endpoint"] = "http://as.example.com/oauth/authorize"
		}, wantReason: "authorization_endpoint"},
		{name: "token endpoint other origin", mutate: func(m map[string]any) {
			m["token_endpoint"] = "https://evil.example.com/oauth/token"
		}, wantReason: "token_endpoint"},
		{name: "PAR endpoint other port", mutate: func(m map[string]any) {
			m["pushed_authorization_request_endpoint"] = "https://as.example.com:8443/oauth/par"
		}, wantReason: "pushed_authorization_request_endpoint"},
		{name: "revocation endpoint other origin", mutate: func(m map[string]any) {
			m["revocation_endpoint"] = "https://evil.example.com/oauth/revoke"
		}, wantReason: "revocation_endpoint"},
		{name: "revocation endpoint relative", mutate: func(m map[string]any) {
			m["revocation_endpoint"] = "/oauth/revoke"
		}, wantReason: "revocation_endpoint"},
		{name: "insecure still requires same origin", issuer: "http://localhost:2583", insecure: true, mutate: func(m map[string]any) {
			for k, v := range validMetadata("http://localhost:2583") {
				m[k] = v
			}
			m["token_endpoint"] = "http://localhost:9999/oauth/token"
		}, wantReason: "token_endpoint"},
		{name: "no ES256 for DPoP", mutate: func(m map[string]any) { m["dpop_signing_alg_values_supported"] = []string{"RS256"} }, wantReason: "dpop_signing_alg_values_supported"},
		{name: "no iss parameter", mutate: func(m map[string]any) { delete(m, "authorization_response_iss_parameter_supported") }, wantReason: "authorization_response_iss_parameter_supported"},
		{name: "no S256", mutate: func(m map[string]any) { m["code_challenge_methods_supported"] = []string{"plain"} }, wantReason: "code_challenge_methods_supported"},
		{name: "no code response type", mutate: func(m map[string]any) { m["response_types_supported"] = []string{"token"} }, wantReason: "response_types_supported"},
		{name: "no refresh_token grant", mutate: func(m map[string]any) { m["grant_types_supported"] = []string{"authorization_code"} }, wantReason: "refresh_token"},
		{name: "no authorization_code grant", mutate: func(m map[string]any) { m["grant_types_supported"] = []string{"refresh_token"} }, wantReason: "authorization_code"},
		{name: "public client needs none", mutate: func(m map[string]any) {
			m["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt"}
		}, wantReason: `"none"`},
		{name: "confidential client needs private_key_jwt", confidential: true, mutate: func(m map[string]any) {
			m["token_endpoint_auth_methods_supported"] = []string{"none"}
		}, wantReason: `"private_key_jwt"`},
		{name: "confidential client needs ES256 assertions", confidential: true, mutate: func(m map[string]any) {
			m["token_endpoint_auth_signing_alg_values_supported"] = []string{"RS256"}
		}, wantReason: "token_endpoint_auth_signing_alg_values_supported"},
		{name: "public client ignores assertion algs", mutate: func(m map[string]any) {
			delete(m, "token_endpoint_auth_signing_alg_values_supported")
		}},
		{name: "scopes without atproto", mutate: func(m map[string]any) { m["scopes_supported"] = []string{"openid"} }, wantReason: "scopes_supported"},
		{name: "no client id metadata documents", mutate: func(m map[string]any) { m["client_id_metadata_document_supported"] = false }, wantReason: "client_id_metadata_document_supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requested := tt.issuer
			if requested == "" {
				requested = issuer
			}
			cfg := Client{HTTP: http.DefaultClient, ClientID: testClientID, RedirectURI: testRedirectURI, Insecure: tt.insecure}
			if tt.confidential {
				cfg.Signer = signer
			}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			m := validMetadata(issuer)
			tt.mutate(m)
			got := c.validateServerMetadata(decodeMetadata(t, m), requested)
			switch {
			case tt.wantReason == "" && got != "":
				t.Errorf("got reason %q; want valid", got)
			case tt.wantReason != "" && !strings.Contains(got, tt.wantReason):
				t.Errorf("got reason %q; want one mentioning %q", got, tt.wantReason)
			}
		})
	}
}

func TestAuthServerMetadata(t *testing.T) {
	f := newFakeServer(t)
	c := newTestClient(t, f, newFakeClock())
	m, err := c.AuthServerMetadata(t.Context(), f.issuer)
	if err != nil {
		t.Fatalf("AuthServerMetadata: %v", err)
	}
	if m.Issuer != f.issuer || m.PAREndpoint != f.issuer+"/oauth/par" || m.TokenEndpoint != f.issuer+"/oauth/token" {
		t.Errorf("got metadata %+v; want the fake server's", m)
	}
	if !m.SupportsPrompt("create") || m.SupportsPrompt("bogus") {
		t.Errorf("SupportsPrompt: got create %v, bogus %v; want true, false", m.SupportsPrompt("create"), m.SupportsPrompt("bogus"))
	}
}

func TestAuthServerMetadataErrors(t *testing.T) {
	tests := []struct {
		name      string
		handler   func(issuer string) http.HandlerFunc
		wantIs    error
		transient bool
	}{
		{
			name: "issuer mismatch",
			handler: func(issuer string) http.HandlerFunc {
				m := validMetadata(issuer)
				m["issuer"] = "http://127.0.0.2:1"
				return jsonHandler(http.StatusOK, m)
			},
			wantIs: ErrInvalidMetadata,
		},
		{
			name: "not JSON",
			handler: func(string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }
			},
			wantIs: ErrInvalidMetadata,
		},
		{
			name:    "404",
			handler: func(string) http.HandlerFunc { return http.NotFound },
		},
		{
			name: "201 is not 200",
			handler: func(issuer string) http.HandlerFunc {
				return jsonHandler(http.StatusCreated, validMetadata(issuer))
			},
		},
		{
			name: "503",
			handler: func(string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }
			},
			wantIs:    ErrTransient,
			transient: true,
		},
		{
			name: "too large",
			handler: func(issuer string) http.HandlerFunc {
				m := validMetadata(issuer)
				m["padding"] = strings.Repeat("x", maxBodySize)
				return jsonHandler(http.StatusOK, m)
			},
			wantIs: ErrResponseTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.handle("/.well-known/oauth-authorization-server", tt.handler(f.issuer))
			c := newTestClient(t, f, newFakeClock())
			m, err := c.AuthServerMetadata(t.Context(), f.issuer)
			if err == nil {
				t.Fatalf("got metadata %+v; want an error", m)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("got %v; want it to wrap %v", err, tt.wantIs)
			}
			if got := errors.Is(err, ErrTransient); got != tt.transient {
				t.Errorf("errors.Is(%v, ErrTransient): got %v; want %v", err, got, tt.transient)
			}
			if errors.Is(tt.wantIs, ErrInvalidMetadata) {
				var me *MetadataError
				if !errors.As(err, &me) || me.URL != f.issuer+"/.well-known/oauth-authorization-server" {
					t.Errorf("got %#v; want a *MetadataError for the document URL", err)
				}
			}
		})
	}
}

func TestAuthServerMetadataRejectsBadIssuerWithoutRequest(t *testing.T) {
	f := newFakeServer(t)
	clock := newFakeClock()
	c := newTestClient(t, f, clock)
	c.Insecure = false
	for _, issuer := range []string{f.issuer, "https://as.example.com/", "https://as.example.com:443", "ftp://as.example.com", "https://user@as.example.com"} {
		if _, err := c.AuthServerMetadata(t.Context(), issuer); !errors.Is(err, ErrInvalidURL) {
			t.Errorf("AuthServerMetadata(%q): got %v; want ErrInvalidURL", issuer, err)
		}
	}
	if n := len(f.requestsTo("/.well-known/oauth-authorization-server")); n != 0 {
		t.Errorf("got %d requests; want 0", n)
	}
}

func TestMetadataCache(t *testing.T) {
	f := newFakeServer(t)
	clock := newFakeClock()
	c := newTestClient(t, f, clock)
	c.MetadataTTL = 10 * time.Minute
	const asPath = "/.well-known/oauth-authorization-server"
	const prmPath = "/.well-known/oauth-protected-resource"

	for i := range 3 {
		if _, err := c.AuthServerMetadata(t.Context(), f.issuer); err != nil {
			t.Fatalf("AuthServerMetadata #%d: %v", i, err)
		}
		if _, err := c.ResolveAuthServer(t.Context(), f.issuer); err != nil {
			t.Fatalf("ResolveAuthServer #%d: %v", i, err)
		}
	}
	if got := f.hits(asPath); got != 1 {
		t.Errorf("AS metadata requests: got %d; want 1", got)
	}
	if got := f.hits(prmPath); got != 1 {
		t.Errorf("PRM requests: got %d; want 1", got)
	}

	clock.Advance(10*time.Minute - time.Second)
	c.AuthServerMetadata(t.Context(), f.issuer)
	c.ResolveAuthServer(t.Context(), f.issuer)
	if got, got2 := f.hits(asPath), f.hits(prmPath); got != 1 || got2 != 1 {
		t.Errorf("before expiry: got %d AS and %d PRM requests; want 1 and 1", got, got2)
	}

	clock.Advance(time.Second)
	if _, err := c.AuthServerMetadata(t.Context(), f.issuer); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResolveAuthServer(t.Context(), f.issuer); err != nil {
		t.Fatal(err)
	}
	if got, got2 := f.hits(asPath), f.hits(prmPath); got != 2 || got2 != 2 {
		t.Errorf("after expiry: got %d AS and %d PRM requests; want 2 and 2", got, got2)
	}
}

func TestMetadataCacheSkipsFailures(t *testing.T) {
	f := newFakeServer(t)
	f.handle("/.well-known/oauth-authorization-server", http.NotFound)
	c := newTestClient(t, f, newFakeClock())
	c.AuthServerMetadata(t.Context(), f.issuer)
	f.handle("/.well-known/oauth-authorization-server", jsonHandler(http.StatusOK, validMetadata(f.issuer)))
	if _, err := c.AuthServerMetadata(t.Context(), f.issuer); err != nil {
		t.Errorf("after the server recovered: got %v; want success", err)
	}
}

func TestResolveAuthServer(t *testing.T) {
	tests := []struct {
		name    string
		prm     func(pds string) any
		want    string // "" = error
		wantErr error
	}{
		{
			name: "resource matches",
			prm: func(pds string) any {
				return map[string]any{"resource": pds, "authorization_servers": []string{"https://entryway.example.com", "https://other.example.com"}}
			},
			want: "https://entryway.example.com",
		},
		{
			name: "resource with trailing slash",
			prm: func(pds string) any {
				return map[string]any{"resource": pds + "/", "authorization_servers": []string{"https://entryway.example.com"}}
			},
			want: "https://entryway.example.com",
		},
		{
			name: "no resource",
			prm: func(string) any {
				return map[string]any{"authorization_servers": []string{"https://entryway.example.com"}}
			},
			want: "https://entryway.example.com",
		},
		{
			name: "resource mismatch",
			prm: func(string) any {
				return map[string]any{"resource": "https://pds.other.example.com", "authorization_servers": []string{"https://entryway.example.com"}}
			},
			wantErr: ErrInvalidMetadata,
		},
		{
			name:    "no authorization servers",
			prm:     func(pds string) any { return map[string]any{"resource": pds, "authorization_servers": []string{}} },
			wantErr: ErrInvalidMetadata,
		},
		{
			name: "authorization server with path",
			prm: func(pds string) any {
				return map[string]any{"resource": pds, "authorization_servers": []string{"https://entryway.example.com/x"}}
			},
			wantErr: ErrInvalidMetadata,
		},
		{
			name:    "not an object",
			prm:     func(string) any { return []string{"x"} },
			wantErr: ErrInvalidMetadata,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.handle("/.well-known/oauth-protected-resource", jsonHandler(http.StatusOK, tt.prm(f.issuer)))
			c := newTestClient(t, f, newFakeClock())
			got, err := c.ResolveAuthServer(t.Context(), f.issuer+"/")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("got %q, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestHostURLRules(t *testing.T) {
	c, err := New(Client{HTTP: http.DefaultClient, ClientID: testClientID, RedirectURI: testRedirectURI})
	if err != nil {
		t.Fatal(err)
	}
	insecure := *c
	insecure.Insecure = true
	tests := []struct {
		url          string
		ok, insecure bool
	}{
		{"https://pds.example.com", true, true},
		{"https://pds.example.com/", true, true},
		{"http://pds.example.com", false, true},
		{"https://pds.example.com:8443", false, true},
		{"https://localhost", false, true},
		{"https://pds.localhost", false, true},
		{"https://127.0.0.1", false, true},
		{"https://[::1]", false, true},
		{"http://localhost:2583", false, true},
		{"https://pds.example.com:", false, false},
		{"https://pds.example.com?x=1", false, false},
		{"https://pds.example.com#x", false, false},
		{"https://u:p@pds.example.com", false, false},
		{"ftp://pds.example.com", false, false},
		{"pds.example.com", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		_, err := c.parseHostURL(tt.url)
		if got := err == nil; got != tt.ok {
			t.Errorf("parseHostURL(%q): got error %v; want ok %v", tt.url, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidURL) {
			t.Errorf("parseHostURL(%q): got %v; want ErrInvalidURL", tt.url, err)
		}
		_, err = insecure.parseHostURL(tt.url)
		if got := err == nil; got != tt.insecure {
			t.Errorf("Insecure parseHostURL(%q): got error %v; want ok %v", tt.url, err, tt.insecure)
		}
	}
}

func TestResolveEntry(t *testing.T) {
	t.Run("PDS with separate authorization server", func(t *testing.T) {
		as := newFakeServer(t)
		pds := newFakeServer(t)
		pds.handle("/.well-known/oauth-protected-resource", jsonHandler(http.StatusOK, map[string]any{
			"resource": pds.issuer, "authorization_servers": []string{as.issuer},
		}))
		c := newTestClient(t, pds, newFakeClock())
		m, err := c.ResolveEntry(t.Context(), pds.issuer)
		if err != nil {
			t.Fatalf("ResolveEntry: %v", err)
		}
		if m.Issuer != as.issuer {
			t.Errorf("got issuer %q; want %q", m.Issuer, as.issuer)
		}
		if got := pds.hits("/.well-known/oauth-authorization-server"); got != 0 {
			t.Errorf("PDS AS-metadata requests: got %d; want 0", got)
		}
	})
	t.Run("entryway without PRM", func(t *testing.T) {
		f := newFakeServer(t)
		f.handle("/.well-known/oauth-protected-resource", http.NotFound)
		c := newTestClient(t, f, newFakeClock())
		m, err := c.ResolveEntry(t.Context(), f.issuer+"/")
		if err != nil {
			t.Fatalf("ResolveEntry: %v", err)
		}
		if m.Issuer != f.issuer {
			t.Errorf("got issuer %q; want %q", m.Issuer, f.issuer)
		}
	})
	t.Run("neither", func(t *testing.T) {
		f := newFakeServer(t)
		f.handle("/.well-known/oauth-protected-resource", http.NotFound)
		f.handle("/.well-known/oauth-authorization-server", http.NotFound)
		c := newTestClient(t, f, newFakeClock())
		var he *HTTPError
		if _, err := c.ResolveEntry(t.Context(), f.issuer); !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
			t.Errorf("got %v; want an *HTTPError 404", err)
		}
	})
	t.Run("transient PRM failure does not fall back", func(t *testing.T) {
		f := newFakeServer(t)
		f.handle("/.well-known/oauth-protected-resource", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
		})
		c := newTestClient(t, f, newFakeClock())
		if _, err := c.ResolveEntry(t.Context(), f.issuer); !errors.Is(err, ErrTransient) {
			t.Errorf("got %v; want ErrTransient", err)
		}
		if got := f.hits("/.well-known/oauth-authorization-server"); got != 0 {
			t.Errorf("AS metadata requests: got %d; want 0", got)
		}
	})
}
