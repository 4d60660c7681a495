package atauthtest

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// startWithState starts a network on the state file path and closes it when
// the test ends.
func startWithState(t *testing.T, path string, opts ...Option) *Network {
	t.Helper()
	n, err := Start(append([]Option{WithStateFile(path)}, opts...)...)
	if err != nil {
		t.Fatalf("Start with state file: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

func didDocuments(t *testing.T, n *Network) map[string]any {
	t.Helper()
	docs := make(map[string]any)
	for _, a := range n.Accounts() {
		var doc any
		getJSON(t, n.PLCURL()+"/"+a.DID, &doc)
		docs[a.DID] = doc
	}
	return docs
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStateFileRestart restores a network from the file as it was at the
// moment of a crash: the accounts, DID documents and URLs are the same, and
// a grant made before the restart refreshes after it.
func TestStateFileRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "network.json")
	n1 := startWithState(t, path)
	alice := mustAccount(t, n1, "alice.test")
	mustAccount(t, n1, "bob.test")
	c := newLoopbackClient(t, n1)
	tok := c.login(alice, "atproto transition:generic")
	ref := c.refresh(tok.str("refresh_token"))
	if ref.status != http.StatusOK {
		t.Fatalf("refresh before the restart: got %d %s; want 200", ref.status, ref.raw)
	}
	// A crash now: the file must already hold the rotated token.
	crash := filepath.Join(dir, "crash.json")
	copyFile(t, path, crash)
	wantAccounts := n1.Accounts()
	wantDocs := didDocuments(t, n1)
	wantURLs := []string{n1.PLCURL(), n1.PDSURL(), n1.IssuerURL()}
	n1.Close()

	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: got %v, %v; want mode 0600", fi, err)
	}

	n2 := startWithState(t, crash)
	if diff := cmp.Diff(wantURLs, []string{n2.PLCURL(), n2.PDSURL(), n2.IssuerURL()}); diff != "" {
		t.Errorf("URLs after the restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantAccounts, n2.Accounts()); diff != "" {
		t.Errorf("accounts after the restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantDocs, didDocuments(t, n2)); diff != "" {
		t.Errorf("DID documents after the restart (-before +after):\n%s", diff)
	}
	if got := n2.ActiveGrants(alice.DID); got != 1 {
		t.Errorf("ActiveGrants after the restart: got %d; want 1", got)
	}

	c.n = n2
	if sess := c.getSession(ref.str("access_token")); sess.status != http.StatusUnauthorized || !strings.Contains(sess.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("access token from before the restart: got %d %v; want 401 invalid_token", sess.status, sess.header)
	}
	after := c.refresh(ref.str("refresh_token"))
	if after.status != http.StatusOK {
		t.Fatalf("refresh after the restart: got %d %s; want 200", after.status, after.raw)
	}
	if sess := c.getSession(after.str("access_token")); sess.status != http.StatusOK || sess.str("did") != alice.DID {
		t.Errorf("getSession after the restart: got %d %s; want alice", sess.status, sess.raw)
	}

	// The token spent before the restart is still known as spent.
	wantError(t, "refresh token spent before the restart", c.refresh(tok.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	if got := n2.ActiveGrants(alice.DID); got != 0 {
		t.Errorf("ActiveGrants after the replay: got %d; want 0", got)
	}
	n2.Close()

	// The end of the grant was saved too.
	n3 := startWithState(t, crash)
	c.n = n3
	if got := n3.ActiveGrants(alice.DID); got != 0 {
		t.Errorf("ActiveGrants after a second restart: got %d; want 0", got)
	}
	wantError(t, "refresh of an ended grant after a restart", c.refresh(after.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
}

// TestStateFileRevocation checks that a revoked grant stays revoked.
func TestStateFileRevocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network.json")
	n1 := startWithState(t, path)
	alice := mustAccount(t, n1, "alice.test")
	c := newLoopbackClient(t, n1)
	tok := c.login(alice, "atproto")
	if resp := c.post("/oauth/revoke", map[string][]string{"token": {tok.str("refresh_token")}}); resp.status != http.StatusOK {
		t.Fatalf("revoke: got %d %s; want 200", resp.status, resp.raw)
	}
	n1.Close()

	n2 := startWithState(t, path)
	c.n = n2
	wantError(t, "refresh of a revoked grant after a restart", c.refresh(tok.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
}

// TestStateFilePortTaken checks that a network whose old port is taken
// still starts, on another port, and says so.
func TestStateFilePortTaken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network.json")
	n1 := startWithState(t, path)
	alice := mustAccount(t, n1, "alice.test")
	oldPDS, oldAS := n1.PDSURL(), n1.IssuerURL()
	n1.Close()

	l, err := net.Listen("tcp", strings.TrimPrefix(oldPDS, "http://"))
	if err != nil {
		t.Fatalf("taking the PDS's port: %v", err)
	}
	defer l.Close()

	var log bytes.Buffer
	n2 := startWithState(t, path, WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if n2.PDSURL() == oldPDS {
		t.Fatalf("PDS URL: got the taken %s; want another", oldPDS)
	}
	if n2.IssuerURL() != oldAS {
		t.Errorf("issuer: got %s; want the old %s", n2.IssuerURL(), oldAS)
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), strings.TrimPrefix(oldPDS, "http://")) {
		t.Errorf("log: got %q; want a warning naming %s", log.String(), oldPDS)
	}
	// New sign-ins work: the DID document follows the PDS.
	c := newLoopbackClient(t, n2)
	tok := c.login(alice, "atproto")
	if sess := c.getSession(tok.str("access_token")); sess.status != http.StatusOK {
		t.Errorf("getSession on the moved PDS: got %d %s; want 200", sess.status, sess.raw)
	}
}

// TestStateFileRefused checks that Start fails on a file it cannot use, and
// leaves it alone.
func TestStateFileRefused(t *testing.T) {
	for _, tc := range []struct {
		name, content string
	}{
		{"not JSON", "not json"},
		{"other version", `{"version": 99}`},
		{"bad signing key", `{"version": 1, "signing_key": {"kty": "oct", "k": "AAAA"}}`},
		{"public signing key", `{"version": 1, "signing_key": {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"k"}}`},
		{"incomplete account", `{"version": 1, "accounts": [{"did": "did:plc:x", "handle": "a.test"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "network.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			n, err := Start(WithStateFile(path))
			if err == nil {
				n.Close()
				t.Fatal("Start: got no error; want one")
			}
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Errorf("state file after the refusal: got %q; want it unchanged", b)
			}
		})
	}

	t.Run("missing directory", func(t *testing.T) {
		n, err := Start(WithStateFile(filepath.Join(t.TempDir(), "absent", "network.json")))
		if err == nil {
			n.Close()
			t.Fatal("Start: got no error; want one")
		}
	})
}
