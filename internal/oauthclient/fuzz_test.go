package oauthclient

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

func FuzzParseTokenResponse(f *testing.F) {
	for _, seed := range []string{
		`{"access_token":"at","token_type":"DPoP","refresh_token":"rt","scope":"atproto","sub":"did:plc:abc","expires_in":3599}`,
		`{"access_token":"at","token_type":"dpop","scope":"atproto x","sub":"did:web:example.com","expires_in":"60"}`,
		`{"access_token":"at","token_type":"DPoP","scope":"atproto","sub":"did:plc:abc","expires_in":1e300}`,
		`{"error":"invalid_grant","error_description":"Refresh token replayed"}`,
		`{"error":1}`,
		`null`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed), `DPoP error="use_dpop_nonce", error_description="x"`)
	}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte, wwwAuth string) {
		ts, err := parseTokenResponse(body, now)
		if err == nil {
			if ts.AccessToken == "" || !strings.EqualFold(ts.TokenType, "DPoP") {
				t.Errorf("accepted token %+v", ts)
			}
			if _, err := syntax.ParseDID(ts.Sub); err != nil {
				t.Errorf("accepted sub %q: %v", ts.Sub, err)
			}
			if !slices.Contains(strings.Fields(ts.Scope), "atproto") {
				t.Errorf("accepted scope %q", ts.Scope)
			}
			if !ts.ExpiresAt.IsZero() && (ts.ExpiresAt.Before(now) || ts.ExpiresAt.After(now.Add(maxExpiresIn*time.Second))) {
				t.Errorf("ExpiresAt %v out of range", ts.ExpiresAt)
			}
		}
		h := http.Header{}
		h.Set("WWW-Authenticate", wwwAuth)
		for _, status := range []int{400, 401, 500} {
			te := parseTokenError(status, h, body)
			if te.StatusCode != status {
				t.Errorf("StatusCode: got %d; want %d", te.StatusCode, status)
			}
			_ = te.Error()
		}
		DPoPChallenge(h)
	})
}
