package oauthclient

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// maxExpiresIn caps expires_in (ten years) so that a hostile value cannot
// overflow time arithmetic.
const maxExpiresIn = 10 * 365 * 24 * 60 * 60

// Grant identifies the authorization server side of one grant: where its
// tokens are exchanged, refreshed and revoked, and the DPoP key they are
// bound to. The fields are plain strings so that they can be persisted with
// a session and used without fetching metadata again.
type Grant struct {
	// Issuer is the authorization server's issuer, the audience of client
	// assertions.
	Issuer string
	// TokenEndpoint must be on the issuer's origin.
	TokenEndpoint string
	// RevocationEndpoint is optional; without it Revoke fails with
	// ErrNoRevocationEndpoint.
	RevocationEndpoint string
	// DPoPKey is the grant's DPoP key.
	DPoPKey *ecdsa.PrivateKey
	// ClientKeyID is the kid of the client key that started the grant, for
	// a confidential client: the reference authorization server refuses
	// assertions signed with another key. Empty means the current key.
	ClientKeyID string
}

// Grant returns the Grant for tokens issued by the server m describes and
// bound to key.
func (m *ServerMetadata) Grant(key *ecdsa.PrivateKey) Grant {
	return Grant{
		Issuer:             m.Issuer,
		TokenEndpoint:      m.TokenEndpoint,
		RevocationEndpoint: m.RevocationEndpoint,
		DPoPKey:            key,
	}
}

// TokenSet is a validated token response.
type TokenSet struct {
	AccessToken string
	// RefreshToken is the new refresh token. Refresh keeps the old one when
	// the server does not send a new one.
	RefreshToken string
	// TokenType is "DPoP", as the server spelled it.
	TokenType string
	// Scope is the space-separated granted scope; it contains atproto.
	Scope string
	// Sub is the account DID the grant belongs to.
	Sub string
	// ExpiresAt is when the access token expires, computed from expires_in
	// and Client.Now; zero when the server did not say.
	ExpiresAt time.Time
}

// ExchangeCode redeems an authorization code (grant_type
// authorization_code) with the PKCE verifier of its request.
//
// The response must have token_type DPoP, a DID as sub and atproto in scope;
// otherwise the error wraps ErrInvalidResponse. Checking that sub is the
// expected account is the caller's job.
func (c *Client) ExchangeCode(ctx context.Context, g Grant, code, verifier string) (*TokenSet, error) {
	if err := c.checkGrant(g, g.TokenEndpoint, "token_endpoint"); err != nil {
		return nil, err
	}
	if code == "" {
		return nil, errors.New("atauth: oauth: authorization code is empty")
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {c.RedirectURI},
		"code_verifier": {verifier},
	}
	body, err := c.postForm(ctx, g.TokenEndpoint, g.Issuer, g.ClientKeyID, form, g.DPoPKey, isOK)
	if err != nil {
		return nil, err
	}
	return parseTokenResponse(body, c.now())
}

// Refresh redeems refreshToken (grant_type refresh_token). ATProto refresh
// tokens are single use: the caller must persist the returned RefreshToken
// before using it, and must not refresh the same token twice. The response
// is validated as in ExchangeCode.
func (c *Client) Refresh(ctx context.Context, g Grant, refreshToken string) (*TokenSet, error) {
	if err := c.checkGrant(g, g.TokenEndpoint, "token_endpoint"); err != nil {
		return nil, err
	}
	if refreshToken == "" {
		return nil, errors.New("atauth: oauth: refresh token is empty")
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
	}
	body, err := c.postForm(ctx, g.TokenEndpoint, g.Issuer, g.ClientKeyID, form, g.DPoPKey, isOK)
	if err != nil {
		return nil, err
	}
	ts, err := parseTokenResponse(body, c.now())
	if err != nil {
		return nil, err
	}
	if ts.RefreshToken == "" {
		ts.RefreshToken = refreshToken
	}
	return ts, nil
}

// Revoke revokes token, an access or refresh token of the grant (RFC 7009).
// Servers answer 200 for tokens that are already invalid, so success does
// not mean the token was live.
func (c *Client) Revoke(ctx context.Context, g Grant, token string) error {
	if g.RevocationEndpoint == "" {
		return ErrNoRevocationEndpoint
	}
	if err := c.checkGrant(g, g.RevocationEndpoint, "revocation_endpoint"); err != nil {
		return err
	}
	form := url.Values{"token": {token}}
	_, err := c.postForm(ctx, g.RevocationEndpoint, g.Issuer, g.ClientKeyID, form, g.DPoPKey, func(code int) bool {
		return code >= 200 && code < 300
	})
	return err
}

func isOK(code int) bool { return code == http.StatusOK }

// checkGrant re-checks a grant that may come from storage.
func (c *Client) checkGrant(g Grant, endpoint, name string) error {
	if g.DPoPKey == nil {
		return errors.New("atauth: oauth: Grant.DPoPKey is required")
	}
	iu, err := c.parseIssuer(g.Issuer)
	if err != nil {
		return err
	}
	origin, err := originOf(iu)
	if err != nil {
		return fmt.Errorf("%w: issuer %q: %v", ErrInvalidURL, g.Issuer, err)
	}
	if endpoint == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidURL, name)
	}
	if reason := c.checkEndpoint(endpoint, origin); reason != "" {
		return fmt.Errorf("%w: %s %s", ErrInvalidURL, name, reason)
	}
	return nil
}

// postForm POSTs form to endpoint, adding client_id, client authentication
// for issuer and a DPoP proof made with key. Every DPoP-Nonce response header
// is remembered for the endpoint's origin. A use_dpop_nonce challenge, either
// as a JSON error body or in a DPoP WWW-Authenticate header, is answered by
// exactly one retry with the new nonce. It returns the body of a response
// whose status accepted approves; any other status is a *TokenError.
func (c *Client) postForm(ctx context.Context, endpoint, issuer, kid string, form url.Values, key *ecdsa.PrivateKey, accepted func(int) bool) ([]byte, error) {
	origin, err := Origin(endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidURL, endpoint, err)
	}
	nonces := c.nonces()
	for attempt := 0; ; attempt++ {
		// Each attempt gets a fresh assertion: servers remember
		// assertion jti values to refuse replays.
		f, err := c.authenticatedForm(form, issuer, kid)
		if err != nil {
			return nil, err
		}
		proof, err := c.DPoPProof(key, http.MethodPost, endpoint, nonces.Get(origin), "")
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(f.Encode()))
		if err != nil {
			return nil, fmt.Errorf("atauth: oauth: building request: %w", err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("DPoP", proof)
		resp, body, err := c.do(req)
		if err != nil {
			return nil, err
		}
		newNonce := resp.Header.Get("DPoP-Nonce")
		nonces.Set(origin, newNonce)
		if accepted(resp.StatusCode) {
			return body, nil
		}
		te := parseTokenError(resp.StatusCode, resp.Header, body)
		if attempt == 0 && newNonce != "" && te.Code == "use_dpop_nonce" &&
			(resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized) {
			continue
		}
		return nil, te
	}
}

// authenticatedForm returns a copy of form with client_id and, for a
// confidential client, a client assertion whose audience is issuer.
func (c *Client) authenticatedForm(form url.Values, issuer, kid string) (url.Values, error) {
	f := make(url.Values, len(form)+3)
	for k, v := range form {
		f[k] = v
	}
	f.Set("client_id", c.ClientID)
	if c.Signer != nil {
		a, err := c.Signer.Assertion(c.now(), c.rand(), kid, c.ClientID, issuer)
		if err != nil {
			return nil, err
		}
		f.Set("client_assertion_type", ClientAssertionType)
		f.Set("client_assertion", a)
	}
	return f, nil
}

// errorResponse is an RFC 6749 §5.2 error body.
type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	URI         string `json:"error_uri"`
}

// parseTokenError builds the *TokenError for a rejected response: from the
// JSON body when it is an RFC 6749 error, else from a DPoP challenge in
// WWW-Authenticate (RFC 9449 §7.1). A 401 whose DPoP challenge says
// use_dpop_nonce is a nonce challenge whatever the body says.
func parseTokenError(status int, h http.Header, body []byte) *TokenError {
	te := &TokenError{StatusCode: status}
	var er errorResponse
	if json.Unmarshal(body, &er) == nil && er.Error != "" {
		te.Code, te.Description, te.URI = er.Error, er.Description, er.URI
	}
	if params, ok := DPoPChallenge(h); ok {
		if te.Code == "" || (status == http.StatusUnauthorized && params["error"] == "use_dpop_nonce") {
			te.Code, te.Description, te.URI = params["error"], params["error_description"], params["error_uri"]
		}
	}
	return te
}

// tokenResponse is an RFC 6749 §5.1 token response with ATProto's sub.
type tokenResponse struct {
	AccessToken  string  `json:"access_token"`
	TokenType    string  `json:"token_type"`
	ExpiresIn    seconds `json:"expires_in"`
	RefreshToken string  `json:"refresh_token"`
	Scope        string  `json:"scope"`
	Sub          string  `json:"sub"`
}

// parseTokenResponse decodes and validates a successful token response.
func parseTokenResponse(body []byte, now time.Time) (*TokenSet, error) {
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, fmt.Errorf("%w: token response: %v", ErrInvalidResponse, err)
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("%w: token response has no access_token", ErrInvalidResponse)
	}
	if !strings.EqualFold(tr.TokenType, "DPoP") {
		return nil, fmt.Errorf("%w: token_type is %q, not DPoP", ErrInvalidResponse, tr.TokenType)
	}
	if _, err := syntax.ParseDID(tr.Sub); err != nil {
		return nil, fmt.Errorf("%w: sub %q is not a DID", ErrInvalidResponse, tr.Sub)
	}
	if !slices.Contains(splitScope(tr.Scope), "atproto") {
		return nil, fmt.Errorf("%w: scope %q does not contain atproto", ErrInvalidResponse, tr.Scope)
	}
	ts := &TokenSet{
		AccessToken:  tr.AccessToken,
		RefreshToken: tr.RefreshToken,
		TokenType:    tr.TokenType,
		Scope:        tr.Scope,
		Sub:          tr.Sub,
	}
	if tr.ExpiresIn > 0 {
		ts.ExpiresAt = now.Add(time.Duration(tr.ExpiresIn) * time.Second)
	}
	return ts, nil
}

// seconds decodes expires_in, which some servers send as a string, clamped
// to [0, maxExpiresIn].
type seconds int64

// UnmarshalJSON accepts a JSON number, a numeric string or null.
func (s *seconds) UnmarshalJSON(b []byte) error {
	str := string(b)
	if str == "null" {
		return nil
	}
	if strings.HasPrefix(str, `"`) {
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
	}
	f, err := strconv.ParseFloat(str, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("expires_in %s is not a number", b)
	}
	*s = seconds(max(0, min(f, maxExpiresIn)))
	return nil
}

// DPoPChallenge returns the auth-params of the DPoP challenge in h's
// WWW-Authenticate headers (RFC 9449 §7.1), with lower-cased names, and
// whether there was one. A resource server asks for a nonce with
// params["error"] == "use_dpop_nonce"; an expired token gives
// "invalid_token".
func DPoPChallenge(h http.Header) (params map[string]string, ok bool) {
	for _, v := range h.Values("WWW-Authenticate") {
		for _, ch := range parseChallenges(v) {
			if strings.EqualFold(ch.scheme, "DPoP") {
				return ch.params, true
			}
		}
	}
	return nil, false
}

// challenge is one challenge of a WWW-Authenticate header (RFC 9110 §11.6.1).
type challenge struct {
	scheme string
	params map[string]string
}

// parseChallenges parses a WWW-Authenticate value leniently: malformed input
// ends the parse and yields what was read so far. A token68 (as in Basic or
// Negotiate challenges) is skipped over as a meaningless parameter, since
// only the DPoP challenge's auth-params matter here.
func parseChallenges(s string) []challenge {
	var out []challenge
	for {
		s = strings.TrimLeft(s, " \t,")
		scheme, rest := cutToken(s)
		if scheme == "" {
			return out
		}
		ch := challenge{scheme: scheme, params: make(map[string]string)}
		s = rest
		for {
			p := strings.TrimLeft(s, " \t,")
			name, rest := cutToken(p)
			if name == "" {
				s = p
				break
			}
			rest = strings.TrimLeft(rest, " \t")
			if !strings.HasPrefix(rest, "=") {
				// A token without "=" starts the next challenge.
				s = p
				break
			}
			rest = strings.TrimLeft(rest[1:], " \t")
			var value string
			if strings.HasPrefix(rest, `"`) {
				value, rest = cutQuoted(rest)
			} else {
				value, rest = cutToken(rest)
				// Skip the padding of a token68 such as "abc==".
				rest = strings.TrimLeft(rest, "=")
			}
			ch.params[strings.ToLower(name)] = value
			s = rest
		}
		out = append(out, ch)
		if s == "" || !isTokenChar(s[0]) {
			return out
		}
	}
}

// cutToken splits s after its leading RFC 9110 token.
func cutToken(s string) (token, rest string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// cutQuoted splits s, which starts with '"', after its quoted-string and
// returns the unescaped content. An unterminated string takes the rest.
func cutQuoted(s string) (value, rest string) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			return b.String(), s[i+1:]
		case '\\':
			if i+1 < len(s) {
				i++
			}
		}
		b.WriteByte(s[i])
	}
	return b.String(), ""
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
