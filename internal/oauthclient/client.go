// Package oauthclient speaks the client side of ATProto OAuth: protected
// resource and authorization server metadata discovery, pushed authorization
// requests with PKCE, DPoP proofs and nonces, private_key_jwt client
// assertions, and the token, refresh and revocation calls.
//
// It holds no sessions; the atauth Manager stores what it returns.
package oauthclient

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// maxBodySize caps every response body the client reads.
	maxBodySize = 64 << 10
	// defaultMetadataTTL is the default Client.MetadataTTL.
	defaultMetadataTTL = 10 * time.Minute
	// maxCacheEntries bounds each metadata cache; the keys come from
	// user-chosen PDS and issuer URLs.
	maxCacheEntries = 1000
)

// Client speaks the ATProto OAuth protocol for one client identity. Create it
// with New; it is safe for concurrent use, and its fields must not change
// after New.
type Client struct {
	// HTTP sends every outbound request. It is required; the caller supplies
	// a client that refuses private addresses, caps time and re-checks
	// redirects.
	HTTP *http.Client
	// ClientID is the client_id sent to authorization servers.
	ClientID string
	// RedirectURI is the redirect_uri sent in PAR and code exchange.
	RedirectURI string
	// Signer authenticates the client with private_key_jwt. Nil means a
	// public client (token_endpoint_auth_method none).
	Signer *KeySigner
	// Insecure allows http, explicit ports and loopback hosts in PDS,
	// issuer and endpoint URLs. Only for local development and tests.
	Insecure bool
	// Now returns the current time. The default is time.Now.
	Now func() time.Time
	// Rand is the source of jti values. The default is crypto/rand.Reader.
	Rand io.Reader
	// UserAgent, when set, is sent on every request.
	UserAgent string
	// Nonces holds DPoP nonces per origin. New creates one when nil; pass a
	// shared cache to reuse nonces learned elsewhere (resource requests).
	Nonces *NonceCache
	// MetadataTTL is how long resolved protected resource and authorization
	// server metadata are cached. The default is 10 minutes.
	MetadataTTL time.Duration

	cache *metadataCache
}

// New validates c and returns a copy with defaults filled in and its own
// metadata caches.
func New(c Client) (*Client, error) {
	if c.HTTP == nil {
		return nil, errors.New("atauth: oauth: Client.HTTP is required")
	}
	if c.ClientID == "" {
		return nil, errors.New("atauth: oauth: Client.ClientID is required")
	}
	if c.RedirectURI == "" {
		return nil, errors.New("atauth: oauth: Client.RedirectURI is required")
	}
	if c.MetadataTTL < 0 {
		return nil, errors.New("atauth: oauth: Client.MetadataTTL is negative")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Nonces == nil {
		c.Nonces = new(NonceCache)
	}
	if c.MetadataTTL == 0 {
		c.MetadataTTL = defaultMetadataTTL
	}
	c.cache = &metadataCache{
		issuers: make(map[string]cacheEntry[string]),
		servers: make(map[string]cacheEntry[*ServerMetadata]),
	}
	return &c, nil
}

// authMethod is the token_endpoint_auth_method this client uses.
func (c *Client) authMethod() string {
	if c.Signer != nil {
		return "private_key_jwt"
	}
	return "none"
}

func (c *Client) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Client) rand() io.Reader {
	if c.Rand == nil {
		return rand.Reader
	}
	return c.Rand
}

func (c *Client) nonces() *NonceCache {
	if c.Nonces == nil {
		// Only reachable for a Client built without New; nonces are then
		// learned per call.
		return new(NonceCache)
	}
	return c.Nonces
}

// do sends req through c.HTTP and reads the capped body. Transport failures
// wrap ErrTransient.
func (c *Client) do(req *http.Request) (*http.Response, []byte, error) {
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, &transportError{err: err}
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, body, nil
}

// readBody reads at most maxBodySize bytes and fails on anything longer
// rather than parsing a truncated document.
func readBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBodySize+1))
	if err != nil {
		return nil, &transportError{err: err}
	}
	if len(b) > maxBodySize {
		return nil, fmt.Errorf("%w (more than %d bytes)", ErrResponseTooLarge, maxBodySize)
	}
	return b, nil
}

// getDocument fetches a metadata document; only status 200 is accepted.
// Content-Type is not checked: servers label JSON documents inconsistently
// and the JSON decoder is the real check.
func (c *Client) getDocument(ctx context.Context, docURL string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return nil, fmt.Errorf("atauth: oauth: building request: %w", err)
	}
	resp, body, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{URL: docURL, StatusCode: resp.StatusCode}
	}
	return body, nil
}

// metadataCache holds resolved PDS → issuer mappings and validated
// authorization server metadata until they expire.
type metadataCache struct {
	mu      sync.Mutex
	issuers map[string]cacheEntry[string]          // key: PDS origin
	servers map[string]cacheEntry[*ServerMetadata] // key: issuer
}

type cacheEntry[T any] struct {
	value   T
	expires time.Time
}

func cacheGet[T any](mu *sync.Mutex, m map[string]cacheEntry[T], key string, now time.Time) (T, bool) {
	mu.Lock()
	defer mu.Unlock()
	e, ok := m[key]
	if !ok || !now.Before(e.expires) {
		var zero T
		return zero, false
	}
	return e.value, true
}

func cachePut[T any](mu *sync.Mutex, m map[string]cacheEntry[T], key string, v T, expires, now time.Time) {
	mu.Lock()
	defer mu.Unlock()
	if _, ok := m[key]; !ok && len(m) >= maxCacheEntries {
		for k, e := range m {
			if !now.Before(e.expires) {
				delete(m, k)
			}
		}
		if len(m) >= maxCacheEntries {
			for k := range m {
				delete(m, k)
				break
			}
		}
	}
	m[key] = cacheEntry[T]{value: v, expires: expires}
}

// splitScope splits a space-separated OAuth scope string.
func splitScope(s string) []string { return strings.Fields(s) }
