package safehttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestIsForbidden(t *testing.T) {
	forbidden := []string{
		"0.0.0.0", "0.1.2.3",
		"10.0.0.1", "10.255.255.255",
		"100.64.0.1", "100.127.255.254",
		"127.0.0.1", "127.1.2.3",
		"169.254.0.1", "169.254.169.254",
		"172.16.0.1", "172.31.255.255",
		"192.0.0.8", "192.0.2.1", "192.88.99.1",
		"192.168.0.1", "192.168.255.255",
		"198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
		"224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "::127.0.0.1", "::8.8.8.8",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
		"64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::1",
		"2002:7f00:1::1", "2002:a9fe:a9fe::1",
		"100::1", "2001::1", "2001:db8::1", "3fff::1",
		"fc00::1", "fd12:3456::1",
		"fe80::1", "fe80::1%eth0", "febf::1", "fec0::1",
		"ff02::1", "ff0e::1",
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "9.9.9.9", "100.63.255.255", "100.128.0.0",
		"172.15.255.255", "172.32.0.0", "169.253.255.255", "192.0.1.1", "198.20.0.0",
		"223.255.255.255", "11.0.0.1", "126.255.255.255", "128.0.0.1",
		"::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
		"2606:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:80e::200e",
	}
	for _, s := range forbidden {
		if !IsForbidden(netip.MustParseAddr(s)) {
			t.Errorf("IsForbidden(%s): got false, want true", s)
		}
	}
	for _, s := range allowed {
		if IsForbidden(netip.MustParseAddr(s)) {
			t.Errorf("IsForbidden(%s): got true, want false", s)
		}
	}
	if !IsForbidden(netip.Addr{}) {
		t.Errorf("IsForbidden(zero Addr): got false, want true")
	}
}

func get(t *testing.T, c *http.Client, u string) (string, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func hello(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") }

func TestLoopbackRefusedByDefault(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(hello))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	c := NewClient(Options{TLSConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig})
	for _, u := range []string{srv.URL, "https://localhost:" + port + "/", "https://[::ffff:127.0.0.1]:" + port + "/"} {
		if _, err := get(t, c, u); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("GET %s: got %v, want ErrForbiddenAddress", u, err)
		}
	}

	c = NewClient(Options{AllowPrivate: true, TLSConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig})
	if body, err := get(t, c, srv.URL); err != nil || body != "hello" {
		t.Errorf("GET %s with AllowPrivate: got %q, %v, want %q, nil", srv.URL, body, err, "hello")
	}
}

func TestAllowPrivateAllowsHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(hello))
	defer srv.Close()
	if _, err := get(t, NewClient(Options{}), srv.URL); !errors.Is(err, ErrInsecureScheme) {
		t.Errorf("GET %s by default: got %v, want ErrInsecureScheme", srv.URL, err)
	}
	if body, err := get(t, NewClient(Options{AllowPrivate: true}), srv.URL); err != nil || body != "hello" {
		t.Errorf("GET %s with AllowPrivate: got %q, %v, want %q, nil", srv.URL, body, err, "hello")
	}
}

func TestCustomDialChecked(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(hello))
	defer srv.Close()
	tlsConfig := srv.Client().Transport.(*http.Transport).TLSClientConfig
	var d net.Dialer
	toServer := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}
	c := NewClient(Options{DialContext: toServer, TLSConfig: tlsConfig})
	if _, err := get(t, c, "https://public.example/"); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("GET through a custom dialer reaching loopback: got %v, want ErrForbiddenAddress", err)
	}
	tlsConfig = tlsConfig.Clone()
	tlsConfig.ServerName = "example.com" // the httptest certificate's name
	c = NewClient(Options{DialContext: toServer, TLSConfig: tlsConfig, AllowPrivate: true})
	if body, err := get(t, c, "https://public.example/"); err != nil || body != "hello" {
		t.Errorf("GET through a custom dialer with AllowPrivate: got %q, %v, want %q, nil", body, err, "hello")
	}
}

// allowAll admits every address, for tests of the rules other than the
// address check.
func allowAll(netip.AddrPort) error { return nil }

func TestRedirects(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(hello))
	defer plain.Close()
	other := httptest.NewTLSServer(http.HandlerFunc(hello))
	defer other.Close()
	_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())

	mux := http.NewServeMux()
	mux.HandleFunc("/hello", hello)
	mux.HandleFunc("/to-http", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL, http.StatusFound)
	})
	mux.HandleFunc("/to-other", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusFound)
	})
	mux.HandleFunc("/chain/{n}", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(r.PathValue("n"), &n)
		if n == 0 {
			hello(w, r)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/chain/%d", n-1), http.StatusFound)
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	tlsConfig := srv.Client().Transport.(*http.Transport).TLSClientConfig

	c := newClient(Options{TLSConfig: tlsConfig}, allowAll)
	if body, err := get(t, c, srv.URL+"/chain/3"); err != nil || body != "hello" {
		t.Errorf("GET with 3 redirects: got %q, %v, want %q, nil", body, err, "hello")
	}
	if _, err := get(t, c, srv.URL+"/chain/4"); !errors.Is(err, ErrTooManyRedirects) {
		t.Errorf("GET with 4 redirects: got %v, want ErrTooManyRedirects", err)
	}
	if _, err := get(t, c, srv.URL+"/to-http"); !errors.Is(err, ErrInsecureScheme) {
		t.Errorf("GET redirected to http: got %v, want ErrInsecureScheme", err)
	}

	none := newClient(Options{TLSConfig: tlsConfig, MaxRedirects: -1}, allowAll)
	if _, err := get(t, none, srv.URL+"/chain/1"); !errors.Is(err, ErrTooManyRedirects) {
		t.Errorf("GET with 1 redirect and MaxRedirects -1: got %v, want ErrTooManyRedirects", err)
	}

	// Each hop is dialed, and so checked, again: a policy that admits only
	// the first server refuses the redirect to the second.
	onlyOther := func(ap netip.AddrPort) error {
		if fmt.Sprint(ap.Port()) == otherPort {
			return ErrForbiddenAddress
		}
		return nil
	}
	c = newClient(Options{TLSConfig: tlsConfig}, onlyOther)
	if body, err := get(t, c, srv.URL+"/hello"); err != nil || body != "hello" {
		t.Fatalf("GET of the admitted server: got %q, %v, want %q, nil", body, err, "hello")
	}
	if _, err := get(t, c, srv.URL+"/to-other"); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("GET redirected to a refused address: got %v, want ErrForbiddenAddress", err)
	}

	withHTTP := NewClient(Options{AllowPrivate: true, TLSConfig: tlsConfig})
	if body, err := get(t, withHTTP, srv.URL+"/to-http"); err != nil || body != "hello" {
		t.Errorf("GET redirected to http with AllowPrivate: got %q, %v, want %q, nil", body, err, "hello")
	}
}

func TestSchemeRefused(t *testing.T) {
	c := NewClient(Options{AllowPrivate: true})
	for _, u := range []string{"ftp://example.com/", "file:///etc/passwd"} {
		if _, err := get(t, c, u); err == nil {
			t.Errorf("GET %s: got nil error, want an error", u)
		}
	}
	if _, err := get(t, NewClient(Options{}), "http://example.com/"); !errors.Is(err, ErrInsecureScheme) {
		t.Errorf("GET http://example.com/: got %v, want ErrInsecureScheme", err)
	}
}

func TestResponseSizeCap(t *testing.T) {
	const limit = 1000
	mux := http.NewServeMux()
	mux.HandleFunc("/exact", func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("a"), limit))
	})
	mux.HandleFunc("/declared", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(limit+1))
		w.Write(bytes.Repeat([]byte("a"), limit+1))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for range 20 {
			w.Write(bytes.Repeat([]byte("a"), 100))
			w.(http.Flusher).Flush()
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := NewClient(Options{AllowPrivate: true, MaxResponseBytes: limit})

	if body, err := get(t, c, srv.URL+"/exact"); err != nil || len(body) != limit {
		t.Errorf("GET /exact: got %d bytes, %v, want %d bytes, nil", len(body), err, limit)
	}
	if _, err := get(t, c, srv.URL+"/declared"); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("GET /declared: got %v, want ErrResponseTooLarge", err)
	}
	if _, err := get(t, c, srv.URL+"/chunked"); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("GET /chunked: got %v, want ErrResponseTooLarge", err)
	}
}

func TestReadLimited(t *testing.T) {
	tests := []struct {
		in      string
		limit   int64
		wantErr error
	}{
		{"", 0, nil},
		{"abc", 3, nil},
		{"abcd", 3, ErrResponseTooLarge},
		{"a", 0, ErrResponseTooLarge},
	}
	for _, tt := range tests {
		got, err := ReadLimited(strings.NewReader(tt.in), tt.limit)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("ReadLimited(%q, %d): got error %v, want %v", tt.in, tt.limit, err, tt.wantErr)
		}
		if err == nil && string(got) != tt.in {
			t.Errorf("ReadLimited(%q, %d): got %q, want %q", tt.in, tt.limit, got, tt.in)
		}
	}
}

func TestUserAgent(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.UserAgent()
	}))
	defer srv.Close()

	c := NewClient(Options{AllowPrivate: true})
	if _, err := get(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	if got != DefaultUserAgent {
		t.Errorf("default User-Agent: got %q, want %q", got, DefaultUserAgent)
	}

	c = NewClient(Options{AllowPrivate: true, UserAgent: "app/1"})
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	if resp, err := c.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if got != "app/1" {
		t.Errorf("configured User-Agent: got %q, want %q", got, "app/1")
	}
	if h := req.Header.Get("User-Agent"); h != "" {
		t.Errorf("caller's request header after Do: got %q, want it unmodified (empty)", h)
	}

	req.Header.Set("User-Agent", "mine")
	if resp, err := c.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if got != "mine" {
		t.Errorf("request's own User-Agent: got %q, want %q", got, "mine")
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	c := NewClient(Options{AllowPrivate: true, Timeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := get(t, c, srv.URL)
	var ue *url.Error
	if !errors.As(err, &ue) || !ue.Timeout() {
		t.Errorf("GET of a stalled server: got %v, want a timeout error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("GET of a stalled server took %v, want about 100ms", d)
	}
}

func TestProxyIgnored(t *testing.T) {
	// http.ProxyFromEnvironment never proxies loopback, so a test server
	// cannot show the difference; inspect the transport instead.
	for _, o := range []Options{{}, {AllowPrivate: true}} {
		tr := NewClient(o).Transport.(*roundTripper).next.(*http.Transport)
		if tr.Proxy != nil {
			t.Errorf("Transport.Proxy with %+v: got a proxy function, want nil", o)
		}
	}
}
