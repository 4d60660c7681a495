package atauthtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// oauthError is an RFC 6749 error answer.
type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return "atauthtest: " + e.code + ": " + e.desc }

func badRequest(code, format string, args ...any) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: code, desc: fmt.Sprintf(format, args...)}
}

// clientMetadata is the part of an OAuth client metadata document the AS
// uses.
type clientMetadata struct {
	ClientID                 string          `json:"client_id"`
	ClientName               string          `json:"client_name"`
	ClientURI                string          `json:"client_uri"`
	ApplicationType          string          `json:"application_type"`
	RedirectURIs             []string        `json:"redirect_uris"`
	Scope                    string          `json:"scope"`
	GrantTypes               []string        `json:"grant_types"`
	ResponseTypes            []string        `json:"response_types"`
	DPoPBoundAccessTokens    bool            `json:"dpop_bound_access_tokens"`
	TokenEndpointAuthMethod  string          `json:"token_endpoint_auth_method"`
	TokenEndpointAuthSignAlg string          `json:"token_endpoint_auth_signing_alg"`
	JWKS                     json.RawMessage `json:"jwks"`
	JWKSURI                  string          `json:"jwks_uri"`
}

// client is a resolved and validated client.
type client struct {
	id       string
	meta     clientMetadata
	keys     jwk.Set // private_key_jwt only
	loopback bool
}

func (c *client) confidential() bool { return c.meta.TokenEndpointAuthMethod == "private_key_jwt" }

func (c *client) name() string {
	if c.meta.ClientName != "" {
		return c.meta.ClientName
	}
	return c.id
}

// resolveClient identifies a client the way the reference AS does: a
// loopback client_id ("http://localhost…") has metadata derived from the id
// itself, any other id is the URL of a metadata document.
func (n *Network) resolveClient(ctx context.Context, clientID string) (*client, error) {
	if clientID == "" {
		return nil, badRequest("invalid_request", `"client_id" is required`)
	}
	if clientID == "http://localhost" || strings.HasPrefix(clientID, "http://localhost/") || strings.HasPrefix(clientID, "http://localhost?") {
		return loopbackClient(clientID)
	}
	return n.fetchClient(ctx, clientID)
}

func loopbackClient(clientID string) (*client, error) {
	u, err := url.Parse(clientID)
	if err != nil {
		return nil, badRequest("invalid_client", "invalid loopback client_id: %v", err)
	}
	if u.Port() != "" || u.Fragment != "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		return nil, badRequest("invalid_client", "a loopback client_id must be http://localhost with an optional query and no port or path")
	}
	q := u.Query()
	for k := range q {
		if k != "redirect_uri" && k != "scope" {
			return nil, badRequest("invalid_client", "a loopback client_id only allows the redirect_uri and scope parameters, not %q", k)
		}
	}
	scope := "atproto"
	if q.Has("scope") {
		if len(q["scope"]) != 1 {
			return nil, badRequest("invalid_client", "a loopback client_id allows at most one scope parameter")
		}
		scope = q.Get("scope")
		if !slices.Contains(strings.Fields(scope), "atproto") {
			return nil, badRequest("invalid_client", `a loopback client_id scope must contain "atproto"`)
		}
	}
	redirects := []string{"http://127.0.0.1/", "http://[::1]/"}
	if q.Has("redirect_uri") {
		redirects = q["redirect_uri"]
		for _, r := range redirects {
			ru, err := url.Parse(r)
			if err != nil || ru.Scheme != "http" || (ru.Hostname() != "127.0.0.1" && ru.Hostname() != "::1") {
				return nil, badRequest("invalid_client", "loopback redirect_uri %q must be http://127.0.0.1 or http://[::1]", r)
			}
		}
	}
	return &client{
		id:       clientID,
		loopback: true,
		meta: clientMetadata{
			ClientID:                clientID,
			ClientName:              "Loopback client",
			ApplicationType:         "native",
			RedirectURIs:            redirects,
			Scope:                   scope,
			GrantTypes:              []string{"authorization_code", "refresh_token"},
			ResponseTypes:           []string{"code"},
			DPoPBoundAccessTokens:   true,
			TokenEndpointAuthMethod: "none",
		},
	}, nil
}

// fetchClient fetches and validates a client metadata document. The network
// is all loopback, so unlike the reference it allows http and IP hosts.
func (n *Network) fetchClient(ctx context.Context, clientID string) (*client, error) {
	u, err := url.Parse(clientID)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || u.User != nil {
		return nil, badRequest("invalid_client", "client_id %q is not a loopback client id nor an http(s) URL", clientID)
	}
	n.mu.Lock()
	n.stats.ClientMetadataFetches++
	n.mu.Unlock()

	var meta clientMetadata
	if err := n.getJSON(ctx, clientID, &meta); err != nil {
		return nil, badRequest("invalid_client_metadata", "unable to obtain client metadata for %q: %v", clientID, err)
	}
	if meta.ClientID != clientID {
		return nil, badRequest("invalid_client_metadata", "client_id %q in the metadata does not match the document URL %q", meta.ClientID, clientID)
	}
	if len(meta.RedirectURIs) == 0 {
		return nil, badRequest("invalid_client_metadata", "redirect_uris must not be empty")
	}
	for _, r := range meta.RedirectURIs {
		ru, err := url.Parse(r)
		if err != nil || ru.Scheme == "" || ru.Fragment != "" {
			return nil, badRequest("invalid_client_metadata", "invalid redirect_uri %q", r)
		}
	}
	if !slices.Contains(strings.Fields(meta.Scope), "atproto") {
		return nil, badRequest("invalid_client_metadata", `scope must contain "atproto"`)
	}
	if !slices.Contains(meta.GrantTypes, "authorization_code") {
		return nil, badRequest("invalid_client_metadata", `grant_types must contain "authorization_code"`)
	}
	for _, g := range meta.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return nil, badRequest("invalid_client_metadata", "unsupported grant type %q", g)
		}
	}
	if !slices.Contains(meta.ResponseTypes, "code") {
		return nil, badRequest("invalid_client_metadata", `response_types must contain "code"`)
	}
	if !meta.DPoPBoundAccessTokens {
		return nil, badRequest("invalid_client_metadata", "dpop_bound_access_tokens must be true")
	}
	c := &client{id: clientID, meta: meta}
	switch meta.TokenEndpointAuthMethod {
	case "none":
		if len(meta.JWKS) > 0 || meta.JWKSURI != "" {
			return nil, badRequest("invalid_client_metadata", `a client with token_endpoint_auth_method "none" must not declare keys`)
		}
	case "private_key_jwt":
		if meta.TokenEndpointAuthSignAlg != "ES256" {
			return nil, badRequest("invalid_client_metadata", `token_endpoint_auth_signing_alg must be "ES256"`)
		}
		keys, err := n.clientKeys(ctx, meta)
		if err != nil {
			return nil, err
		}
		c.keys = keys
	case "":
		return nil, badRequest("invalid_client_metadata", "token_endpoint_auth_method is required")
	default:
		return nil, badRequest("invalid_client_metadata", "unsupported token_endpoint_auth_method %q", meta.TokenEndpointAuthMethod)
	}
	return c, nil
}

func (n *Network) clientKeys(ctx context.Context, meta clientMetadata) (jwk.Set, error) {
	var raw []byte
	switch {
	case len(meta.JWKS) > 0 && meta.JWKSURI != "":
		return nil, badRequest("invalid_client_metadata", "jwks and jwks_uri are mutually exclusive")
	case len(meta.JWKS) > 0:
		raw = meta.JWKS
	case meta.JWKSURI != "":
		var m json.RawMessage
		if err := n.getJSON(ctx, meta.JWKSURI, &m); err != nil {
			return nil, badRequest("invalid_client_metadata", "unable to fetch jwks_uri: %v", err)
		}
		raw = m
	default:
		return nil, badRequest("invalid_client_metadata", "private_key_jwt requires jwks or jwks_uri")
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		return nil, badRequest("invalid_client_metadata", "invalid client JWKS: %v", err)
	}
	if set.Len() == 0 {
		return nil, badRequest("invalid_client_metadata", "the client JWKS has no keys")
	}
	for i := range set.Len() {
		k, _ := set.Key(i)
		if _, private := k.(jwk.ECDSAPrivateKey); private {
			return nil, badRequest("invalid_client_metadata", "the client JWKS must not contain private keys")
		}
	}
	return set, nil
}

// getJSON fetches a small JSON document with a plain client.
func (n *Network) getJSON(ctx context.Context, rawURL string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// clientAuth is how a client authenticated; later requests of the same
// grant must use the same method and key.
type clientAuth struct {
	method string // "none" or "private_key_jwt"
	kid    string
}

// authenticateClient checks the client credentials of an AS request.
func (n *Network) authenticateClient(c *client, form url.Values) (clientAuth, error) {
	if !c.confidential() {
		return clientAuth{method: "none"}, nil
	}
	assertion := form.Get("client_assertion")
	if assertion == "" {
		return clientAuth{}, badRequest("invalid_request", `client authentication method "private_key_jwt" requires a "client_assertion"`)
	}
	if t := form.Get("client_assertion_type"); t != clientAssertionType {
		return clientAuth{}, badRequest("invalid_client", "unsupported client_assertion_type %q", t)
	}
	msg, err := jws.Parse([]byte(assertion))
	if err != nil || len(msg.Signatures()) != 1 {
		return clientAuth{}, badRequest("invalid_client", "client_assertion is not a compact JWS")
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	kid := h.KeyID()
	if kid == "" {
		return clientAuth{}, badRequest("invalid_client", `"kid" required in client_assertion`)
	}
	if h.Algorithm() != jwa.ES256 {
		return clientAuth{}, badRequest("invalid_client", "client_assertion must be signed with ES256")
	}
	key, ok := c.keys.LookupKeyID(kid)
	if !ok {
		return clientAuth{}, badRequest("invalid_client", "no client key with kid %q", kid)
	}
	payload, err := jws.Verify([]byte(assertion), jws.WithKey(jwa.ES256, key))
	if err != nil {
		return clientAuth{}, badRequest("invalid_client", "client_assertion signature verification failed")
	}
	var claims struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp *float64        `json:"exp"`
		Iat *float64        `json:"iat"`
		JTI string          `json:"jti"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return clientAuth{}, badRequest("invalid_client", "client_assertion claims are not a JSON object")
	}
	if claims.Iss != c.id || claims.Sub != c.id {
		return clientAuth{}, badRequest("invalid_client", `client_assertion "iss" and "sub" must be the client_id`)
	}
	if !audienceContains(claims.Aud, n.IssuerURL()) {
		return clientAuth{}, badRequest("invalid_client", `client_assertion "aud" must be the issuer`)
	}
	now := n.cfg.now()
	if claims.Exp != nil && !now.Before(time.Unix(int64(*claims.Exp), 0)) {
		return clientAuth{}, badRequest("invalid_client", "client_assertion expired")
	}
	if claims.Iat == nil {
		return clientAuth{}, badRequest("invalid_client", `client_assertion has no "iat"`)
	}
	iat := time.Unix(int64(*claims.Iat), 0)
	if iat.Before(now.Add(-clientAssertionMaxAge)) {
		return clientAuth{}, badRequest("invalid_client", "client_assertion is too old")
	}
	if iat.After(now.Add(clientAssertionMaxAge)) {
		return clientAuth{}, badRequest("invalid_client", `client_assertion "iat" is in the future`)
	}
	if claims.JTI == "" {
		return clientAuth{}, badRequest("invalid_client", `client_assertion has no "jti"`)
	}
	n.mu.Lock()
	fresh := n.rememberJTI("assertion:"+c.id+":"+claims.JTI, now.Add(2*clientAssertionMaxAge))
	n.mu.Unlock()
	if !fresh {
		return clientAuth{}, badRequest("invalid_client", "client_assertion replayed")
	}
	return clientAuth{method: "private_key_jwt", kid: kid}, nil
}

func audienceContains(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return slices.Contains(many, want)
	}
	return false
}

// redirectAllowed compares a requested redirect_uri with a registered one as
// RFC 8252 and the reference do: exact, except that loopback hosts match on
// any port.
func redirectAllowed(registered, requested string) bool {
	if registered == requested {
		return true
	}
	a, err := url.Parse(registered)
	if err != nil || !isLoopbackHost(a.Hostname()) {
		return false
	}
	b, err := url.Parse(requested)
	if err != nil {
		return false
	}
	return a.Scheme == b.Scheme && a.Hostname() == b.Hostname() && a.EscapedPath() == b.EscapedPath() &&
		a.RawQuery == b.RawQuery && a.Fragment == b.Fragment && a.User.String() == b.User.String()
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var errNoRedirect = errors.New("atauthtest: redirect_uri is required")

// pickRedirect validates or defaults the redirect_uri of a request.
func (c *client) pickRedirect(requested string) (string, error) {
	if requested == "" {
		if len(c.meta.RedirectURIs) == 1 {
			return c.meta.RedirectURIs[0], nil
		}
		return "", errNoRedirect
	}
	for _, r := range c.meta.RedirectURIs {
		if redirectAllowed(r, requested) {
			return requested, nil
		}
	}
	return "", fmt.Errorf("atauthtest: invalid redirect_uri %q", requested)
}
