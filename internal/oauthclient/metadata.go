package oauthclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// ErrInvalidURL is wrapped when a PDS, entry or issuer URL given to the
// client is not acceptable: not absolute, not https (without Insecure), with
// a port, user info, query or fragment, or a loopback host (without Insecure).
var ErrInvalidURL = errors.New("atauth: oauth: URL not allowed")

// ServerMetadata is validated authorization server metadata (RFC 8414 and
// the ATProto OAuth profile). The JSON field names are those of the
// document, so the struct can be stored as is. Values returned by the Client
// are shared with its cache and must not be modified.
type ServerMetadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	PAREndpoint                                string   `json:"pushed_authorization_request_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint,omitempty"`
	RequirePushedAuthorizationRequests         bool     `json:"require_pushed_authorization_requests"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	ScopesSupported                            []string `json:"scopes_supported,omitempty"`
	PromptValuesSupported                      []string `json:"prompt_values_supported,omitempty"`
	DPoPSigningAlgValuesSupported              []string `json:"dpop_signing_alg_values_supported"`
	AuthorizationResponseISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
	ProtectedResources                         []string `json:"protected_resources,omitempty"`
}

// SupportsPrompt reports whether p is in prompt_values_supported.
func (m *ServerMetadata) SupportsPrompt(p string) bool {
	return slices.Contains(m.PromptValuesSupported, p)
}

// protectedResourceMetadata is the subset of RFC 9728 metadata ATProto uses.
type protectedResourceMetadata struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
}

// ResolveAuthServer returns the issuer of the authorization server that
// protects the PDS at pdsURL: authorization_servers[0] of the PDS's
// /.well-known/oauth-protected-resource document. When the document names a
// resource, it must be the PDS's origin. Results are cached for MetadataTTL.
func (c *Client) ResolveAuthServer(ctx context.Context, pdsURL string) (string, error) {
	u, err := c.parseHostURL(pdsURL)
	if err != nil {
		return "", err
	}
	key, err := originOf(u)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidURL, pdsURL, err)
	}
	if c.cache != nil {
		if issuer, ok := cacheGet(&c.cache.mu, c.cache.issuers, key, c.now()); ok {
			return issuer, nil
		}
	}
	docURL := baseURL(u) + "/.well-known/oauth-protected-resource"
	body, err := c.getDocument(ctx, docURL)
	if err != nil {
		return "", err
	}
	var prm protectedResourceMetadata
	if err := json.Unmarshal(body, &prm); err != nil {
		return "", &MetadataError{URL: docURL, Reason: "not a JSON document: " + err.Error()}
	}
	if prm.Resource != "" {
		r, err := url.Parse(prm.Resource)
		if err != nil || (r.Path != "" && r.Path != "/") || r.RawQuery != "" || r.Fragment != "" {
			return "", &MetadataError{URL: docURL, Reason: fmt.Sprintf("resource %q is not an origin", prm.Resource)}
		}
		if o, err := originOf(r); err != nil || o != key {
			return "", &MetadataError{URL: docURL, Reason: fmt.Sprintf("resource %q does not match %s", prm.Resource, baseURL(u))}
		}
	}
	if len(prm.AuthorizationServers) == 0 {
		return "", &MetadataError{URL: docURL, Reason: "authorization_servers is empty"}
	}
	issuer := prm.AuthorizationServers[0]
	if _, err := c.parseIssuer(issuer); err != nil {
		return "", &MetadataError{URL: docURL, Reason: "authorization_servers[0]: " + err.Error()}
	}
	if c.cache != nil {
		now := c.now()
		cachePut(&c.cache.mu, c.cache.issuers, key, issuer, now.Add(c.MetadataTTL), now)
	}
	return issuer, nil
}

// AuthServerMetadata fetches, validates and caches the metadata of the
// authorization server whose issuer identifier is issuer. The document's
// issuer must equal issuer exactly.
func (c *Client) AuthServerMetadata(ctx context.Context, issuer string) (*ServerMetadata, error) {
	if _, err := c.parseIssuer(issuer); err != nil {
		return nil, err
	}
	if c.cache != nil {
		if m, ok := cacheGet(&c.cache.mu, c.cache.servers, issuer, c.now()); ok {
			return m, nil
		}
	}
	docURL := issuer + "/.well-known/oauth-authorization-server"
	body, err := c.getDocument(ctx, docURL)
	if err != nil {
		return nil, err
	}
	m := new(ServerMetadata)
	if err := json.Unmarshal(body, m); err != nil {
		return nil, &MetadataError{URL: docURL, Reason: "not a JSON document: " + err.Error()}
	}
	if reason := c.validateServerMetadata(m, issuer); reason != "" {
		return nil, &MetadataError{URL: docURL, Reason: reason}
	}
	if c.cache != nil {
		now := c.now()
		cachePut(&c.cache.mu, c.cache.servers, issuer, m, now.Add(c.MetadataTTL), now)
	}
	return m, nil
}

// ResolveEntry resolves "sign in at this PDS or entryway": serverURL is
// first treated as a PDS and its protected resource metadata names the
// authorization server; when it has none (an HTTP error or an invalid
// document), serverURL's origin is taken as the issuer itself. Transient
// failures are returned without the fallback.
func (c *Client) ResolveEntry(ctx context.Context, serverURL string) (*ServerMetadata, error) {
	u, err := c.parseHostURL(serverURL)
	if err != nil {
		return nil, err
	}
	issuer, prmErr := c.ResolveAuthServer(ctx, serverURL)
	if prmErr == nil {
		return c.AuthServerMetadata(ctx, issuer)
	}
	if errors.Is(prmErr, ErrTransient) {
		return nil, prmErr
	}
	m, err := c.AuthServerMetadata(ctx, baseURL(u))
	if err != nil {
		return nil, fmt.Errorf("atauth: oauth: %s is neither a PDS (%v) nor an authorization server: %w", baseURL(u), prmErr, err)
	}
	return m, nil
}

// validateServerMetadata returns why m is unacceptable for this client as
// the metadata of issuer, or "".
func (c *Client) validateServerMetadata(m *ServerMetadata, issuer string) string {
	if m.Issuer != issuer {
		return fmt.Sprintf("issuer %q does not match %q", m.Issuer, issuer)
	}
	iu, err := c.parseIssuer(m.Issuer)
	if err != nil {
		return "issuer: " + err.Error()
	}
	origin, err := originOf(iu)
	if err != nil {
		return "issuer: " + err.Error()
	}
	if !m.RequirePushedAuthorizationRequests {
		return "require_pushed_authorization_requests is not true"
	}
	endpoints := []struct {
		name, value string
		optional    bool
	}{
		{"authorization_endpoint", m.AuthorizationEndpoint, false},
		{"token_endpoint", m.TokenEndpoint, false},
		{"pushed_authorization_request_endpoint", m.PAREndpoint, false},
		{"revocation_endpoint", m.RevocationEndpoint, true},
	}
	for _, e := range endpoints {
		if e.value == "" {
			if e.optional {
				continue
			}
			return e.name + " is missing"
		}
		if reason := c.checkEndpoint(e.value, origin); reason != "" {
			return e.name + " " + reason
		}
	}
	lists := []struct {
		name   string
		values []string
		want   string
	}{
		{"dpop_signing_alg_values_supported", m.DPoPSigningAlgValuesSupported, "ES256"},
		{"code_challenge_methods_supported", m.CodeChallengeMethodsSupported, "S256"},
		{"response_types_supported", m.ResponseTypesSupported, "code"},
		{"grant_types_supported", m.GrantTypesSupported, "authorization_code"},
		{"grant_types_supported", m.GrantTypesSupported, "refresh_token"},
		{"token_endpoint_auth_methods_supported", m.TokenEndpointAuthMethodsSupported, c.authMethod()},
	}
	if c.Signer != nil {
		lists = append(lists, struct {
			name   string
			values []string
			want   string
		}{"token_endpoint_auth_signing_alg_values_supported", m.TokenEndpointAuthSigningAlgValuesSupported, "ES256"})
	}
	for _, l := range lists {
		if !slices.Contains(l.values, l.want) {
			return fmt.Sprintf("%s does not contain %q", l.name, l.want)
		}
	}
	if m.ScopesSupported != nil && !slices.Contains(m.ScopesSupported, "atproto") {
		return `scopes_supported does not contain "atproto"`
	}
	if !m.AuthorizationResponseISSParameterSupported {
		return "authorization_response_iss_parameter_supported is not true"
	}
	if !m.ClientIDMetadataDocumentSupported {
		return "client_id_metadata_document_supported is not true"
	}
	return ""
}

// checkEndpoint returns why raw is not an acceptable endpoint on the
// issuer's origin, or "".
func (c *Client) checkEndpoint(raw, issuerOrigin string) string {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return fmt.Sprintf("%q is not an absolute URL", raw)
	}
	if u.Scheme != "https" && !(c.Insecure && u.Scheme == "http") {
		return fmt.Sprintf("%q is not https", raw)
	}
	if u.User != nil || u.Fragment != "" {
		return fmt.Sprintf("%q has user info or a fragment", raw)
	}
	if o, err := originOf(u); err != nil || o != issuerOrigin {
		return fmt.Sprintf("%q is not on the issuer's origin", raw)
	}
	return ""
}

// parseHostURL checks a PDS or entry URL. Its path is ignored by callers,
// which only use the origin.
func (c *Client) parseHostURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidURL, raw, err)
	}
	if reason := c.checkHost(u); reason != "" {
		return nil, fmt.Errorf("%w: %q: %s", ErrInvalidURL, raw, reason)
	}
	return u, nil
}

// parseIssuer checks an issuer identifier: a bare origin, without a trailing
// slash, which is compared byte for byte with the metadata's issuer.
func (c *Client) parseIssuer(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer %q: %v", ErrInvalidURL, raw, err)
	}
	if reason := c.checkHost(u); reason != "" {
		return nil, fmt.Errorf("%w: issuer %q: %s", ErrInvalidURL, raw, reason)
	}
	if u.Path != "" || u.RawPath != "" {
		return nil, fmt.Errorf("%w: issuer %q has a path", ErrInvalidURL, raw)
	}
	return u, nil
}

// checkHost applies the rules shared by PDS, entry and issuer URLs.
func (c *Client) checkHost(u *url.URL) string {
	switch {
	case u.Scheme != "https" && !(c.Insecure && u.Scheme == "http"):
		if c.Insecure {
			return "scheme is not http or https"
		}
		return "scheme is not https"
	case u.Host == "" || u.Hostname() == "":
		return "no host"
	case strings.HasSuffix(u.Host, ":"):
		return "has an empty port"
	case u.User != nil:
		return "has user info"
	case u.RawQuery != "" || u.ForceQuery:
		return "has a query"
	case u.Fragment != "":
		return "has a fragment"
	case c.Insecure:
		return ""
	case u.Port() != "":
		return "has an explicit port"
	case isLoopback(u.Hostname()):
		return "is a loopback host"
	}
	return ""
}

func isLoopback(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// baseURL returns scheme://host[:port] as written, lower-cased.
func baseURL(u *url.URL) string {
	return strings.ToLower(u.Scheme + "://" + u.Host)
}
