// Package safehttp builds the HTTP client that every outbound request of
// atauth goes through.
//
// atauth fetches URLs that end users choose: a handle names a domain, a DID
// document names a PDS, a PDS names an authorization server. Without care,
// an attacker can point those at the server's own network (a database admin
// page, 169.254.169.254 cloud metadata) and use the server as a proxy. The
// client returned by NewClient therefore:
//
//   - checks the IP address of every connection at dial time, after DNS
//     resolution, so a name that resolves to a public address for a check and
//     to a private one for the request (DNS rebinding) gains nothing;
//   - refuses plain http, and re-checks the scheme and the hop count on every
//     redirect (each hop is dialed, and so checked, again);
//   - ignores HTTP_PROXY and friends, because through a proxy the dial check
//     would see the proxy's address instead of the real destination;
//   - bounds the time of a request and the size of a response body.
//
// Options.AllowPrivate lifts the address and scheme checks for local
// development and tests; it must never be set in production.
package safehttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Errors reported by a client from NewClient. They arrive wrapped, in a
// *url.Error among others; test them with errors.Is.
var (
	// ErrForbiddenAddress reports a connection refused because the
	// destination address is not globally reachable unicast.
	ErrForbiddenAddress = errors.New("atauth: safehttp: forbidden destination address")

	// ErrInsecureScheme reports a request or redirect to a URL whose scheme
	// is not https (or http, with AllowPrivate).
	ErrInsecureScheme = errors.New("atauth: safehttp: scheme not allowed")

	// ErrTooManyRedirects reports a redirect past Options.MaxRedirects.
	ErrTooManyRedirects = errors.New("atauth: safehttp: too many redirects")

	// ErrResponseTooLarge reports a response body longer than the limit.
	ErrResponseTooLarge = errors.New("atauth: safehttp: response body too large")
)

// Defaults for the zero values of Options fields.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxRedirects     = 3
	DefaultMaxResponseBytes = 1 << 20
	DefaultUserAgent        = "atauth (+https://github.com/atauth/atauth)"
)

// Options configures NewClient. The zero value is the production setting.
type Options struct {
	// AllowPrivate lets the client connect to loopback, private, link-local
	// and other non-public addresses, and to use plain http. It is meant for
	// local development and tests only.
	AllowPrivate bool

	// Timeout bounds a whole request, redirects and reading the body
	// included. The default is DefaultTimeout.
	Timeout time.Duration

	// MaxRedirects is how many redirects a request may follow. The default
	// is DefaultMaxRedirects; a negative value follows none.
	MaxRedirects int

	// MaxResponseBytes caps a response body. Reading past it fails with
	// ErrResponseTooLarge, and a response that declares a larger
	// Content-Length fails at once. The default is DefaultMaxResponseBytes.
	MaxResponseBytes int64

	// UserAgent is sent on requests that do not set their own. The default
	// is DefaultUserAgent.
	UserAgent string

	// TLSConfig, when set, is cloned and used for TLS connections; tests use
	// it to trust an httptest server's certificate.
	TLSConfig *tls.Config

	// DialContext, when set, replaces the dialer; tests use it to route
	// names to local servers. Since the client cannot see which address a
	// custom dialer resolved, it checks the remote address of the returned
	// connection instead, before any byte is written to it.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewClient returns an *http.Client configured as the package doc
// describes. Each call returns a client with its own connection pool.
func NewClient(o Options) *http.Client {
	check := checkPublic
	if o.AllowPrivate {
		check = nil
	}
	return newClient(o, check)
}

// checkPublic is the default address policy.
func checkPublic(ap netip.AddrPort) error {
	if IsForbidden(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap)
	}
	return nil
}

// newClient builds the client with an explicit address policy (nil allows
// all). Tests pass a policy that admits their loopback servers, so that they
// can exercise the scheme, redirect and size rules without AllowPrivate.
func newClient(o Options, check func(netip.AddrPort) error) *http.Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = DefaultMaxRedirects
	} else if o.MaxRedirects < 0 {
		o.MaxRedirects = 0
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}

	dial := o.DialContext
	if dial == nil {
		d := &net.Dialer{
			Timeout:   min(o.Timeout, 5*time.Second),
			KeepAlive: 30 * time.Second,
		}
		if check != nil {
			d.Control = func(network, address string, _ syscall.RawConn) error {
				return checkAddress(check, address)
			}
		}
		dial = d.DialContext
	} else if check != nil {
		custom := dial
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := custom(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if err := checkAddress(check, conn.RemoteAddr().String()); err != nil {
				conn.Close()
				return nil, &net.OpError{Op: "dial", Net: network, Err: err}
			}
			return conn, nil
		}
	}

	var tlsConfig *tls.Config
	if o.TLSConfig != nil {
		tlsConfig = o.TLSConfig.Clone()
	}
	transport := &http.Transport{
		// No Proxy: the dial check must see the real destination.
		Proxy:                  nil,
		DialContext:            dial,
		TLSClientConfig:        tlsConfig,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    min(o.Timeout, 5*time.Second),
		ResponseHeaderTimeout:  o.Timeout,
		ExpectContinueTimeout:  time.Second,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    4,
		MaxResponseHeaderBytes: 64 << 10,
	}
	allowHTTP := o.AllowPrivate
	return &http.Client{
		Transport: &roundTripper{
			next:      transport,
			allowHTTP: allowHTTP,
			userAgent: o.UserAgent,
			maxBytes:  o.MaxResponseBytes,
		},
		Timeout: o.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > o.MaxRedirects {
				return fmt.Errorf("%w: more than %d", ErrTooManyRedirects, o.MaxRedirects)
			}
			return checkScheme(req, allowHTTP)
		},
	}
}

// checkAddress applies check to a dialed "ip:port".
func checkAddress(check func(netip.AddrPort) error, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse %q", ErrForbiddenAddress, address)
	}
	return check(ap)
}

func checkScheme(req *http.Request, allowHTTP bool) error {
	switch req.URL.Scheme {
	case "https":
		return nil
	case "http":
		if allowHTTP {
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrInsecureScheme, req.URL.Scheme)
}

// roundTripper enforces the scheme rule on every hop, sets the User-Agent,
// and caps response bodies.
type roundTripper struct {
	next      http.RoundTripper
	allowHTTP bool
	userAgent string
	maxBytes  int64
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := checkScheme(req, rt.allowHTTP); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	if req.Header.Get("User-Agent") == "" {
		// A RoundTripper must not modify the caller's request.
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", rt.userAgent)
	}
	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > rt.maxBytes {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: Content-Length %d exceeds %d bytes", ErrResponseTooLarge, resp.ContentLength, rt.maxBytes)
	}
	resp.Body = &cappedBody{rc: resp.Body, remaining: rt.maxBytes}
	return resp, nil
}

// cappedBody fails with ErrResponseTooLarge once more than its limit has been
// read, instead of silently truncating as io.LimitReader would: a truncated
// JSON document could still parse.
type cappedBody struct {
	rc        io.ReadCloser
	remaining int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.remaining <= 0 {
		var probe [1]byte
		n, err := io.ReadFull(b.rc, probe[:])
		if n > 0 {
			return 0, ErrResponseTooLarge
		}
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.rc.Read(p)
	b.remaining -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// ReadLimited reads r to the end and returns what it read, or an error
// wrapping ErrResponseTooLarge if r holds more than limit bytes.
func ReadLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, limit)
	}
	return b, nil
}
