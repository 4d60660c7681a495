package atauthtest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzPDSAuthentication sends arbitrary Authorization and DPoP headers to
// the PDS: every one is refused with a 4xx, never a panic or a 5xx.
func FuzzPDSAuthentication(f *testing.F) {
	f.Add("DPoP abc", "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.")
	f.Add("Bearer x", "")
	f.Add("DPoP "+strings.Repeat("a", 300), "a.b.c")
	f.Add("", "....")
	n := NewNetwork(f)
	h := n.pdsHandler(&pdsInstance{url: n.PDSURL(), nonce: &n.pdsNonce})
	f.Fuzz(func(t *testing.T, authorization, proof string) {
		req := httptest.NewRequest(http.MethodGet, n.PDSURL()+"/xrpc/com.atproto.server.getSession", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code < 400 || w.Code >= 500 {
			t.Fatalf("Authorization %q, DPoP %q: got %d %s, want a 4xx", authorization, proof, w.Code, w.Body)
		}
	})
}

// FuzzTokenEndpoint posts arbitrary forms with an arbitrary DPoP header to
// the token endpoint: a 4xx, never a panic or a 5xx.
func FuzzTokenEndpoint(f *testing.F) {
	f.Add("grant_type=authorization_code&code=x&client_id=http%3A%2F%2Flocalhost", "a.b.c")
	f.Add("grant_type=refresh_token&refresh_token=x", "")
	f.Add("%%%", "eyJ.eyJ.sig")
	n := NewNetwork(f)
	h := n.asHandler()
	f.Fuzz(func(t *testing.T, form, proof string) {
		req := httptest.NewRequest(http.MethodPost, n.IssuerURL()+"/oauth/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code < 400 || w.Code >= 500 {
			t.Fatalf("form %q, DPoP %q: got %d %s, want a 4xx", form, proof, w.Code, w.Body)
		}
	})
}
