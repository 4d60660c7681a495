package oauthclient

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
)

// maxNonceOrigins bounds the NonceCache; origins come from user-chosen PDS
// and issuer URLs, so the map must not grow without limit.
const maxNonceOrigins = 10000

// NonceCache remembers the latest DPoP nonce per origin (RFC 9449 §8). The
// zero value is ready to use; it is safe for concurrent use.
type NonceCache struct {
	mu     sync.Mutex
	nonces map[string]string
}

// Get returns the last nonce stored for origin, or "".
func (c *NonceCache) Get(origin string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nonces[origin]
}

// Set stores nonce for origin. An empty nonce is ignored.
func (c *NonceCache) Set(origin, nonce string) {
	if nonce == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nonces == nil {
		c.nonces = make(map[string]string)
	}
	if _, ok := c.nonces[origin]; !ok && len(c.nonces) >= maxNonceOrigins {
		// Evicting an arbitrary entry costs at most one extra nonce
		// round trip for that origin.
		for k := range c.nonces {
			delete(c.nonces, k)
			break
		}
	}
	c.nonces[origin] = nonce
}

// Origin returns the origin of rawURL as scheme://host:port, with the scheme
// and host lower-cased and the default port made explicit, the key used by
// NonceCache.
func Origin(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	return originOf(u)
}

func originOf(u *url.URL) (string, error) {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", errors.New("atauth: oauth: URL has no host")
	}
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		default:
			return "", errors.New("atauth: oauth: URL scheme is not http or https")
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}
