package safehttp

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestLoopbackSpellingsRefused tries the spellings of a loopback address that
// an attacker puts in a handle's DID document or a PDS URL: a name that
// resolves to loopback, decimal, octal, hex and short forms, IPv6 and mapped
// forms. None may reach the server.
func TestLoopbackSpellingsRefused(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	ln, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Skipf("no dual-stack listener: %v", err)
	}
	srv.Listener = ln
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	// Certificate checks are off so that only the address policy can stop a
	// request: with AllowPrivate set, the same requests do reach the server.
	tlsConfig := &tls.Config{InsecureSkipVerify: true}
	c := NewClient(Options{TLSConfig: tlsConfig})
	for _, host := range []string{
		"localhost", "127.0.0.1", "127.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001",
		"[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:0:0:1]", "0.0.0.0", "[::]",
	} {
		resp, err := c.Get("https://" + net.JoinHostPort(trimBrackets(host), port) + "/")
		if err == nil {
			resp.Body.Close()
			t.Errorf("https://%s:%s: got %d, want the request refused", host, port, resp.StatusCode)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("requests that reached the loopback server: got %d, want 0", n)
	}
	open := NewClient(Options{TLSConfig: tlsConfig, AllowPrivate: true})
	if resp, err := open.Get("https://" + net.JoinHostPort("127.0.0.1", port) + "/"); err != nil {
		t.Errorf("control request with AllowPrivate: %v", err)
	} else {
		resp.Body.Close()
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("control: got %d requests at the server, want 1", n)
	}
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}
