package atauth

import (
	"errors"
	"strings"
	"testing"
)

func testManager(t testing.TB, insecure bool) *Manager {
	t.Helper()
	m, err := New(Config{
		ClientID:                   "https://app.example.com/oauth-client-metadata.json",
		RedirectURL:                "https://app.example.com/auth/callback",
		SealingKeys:                []SealingKey{{ID: "k1", Secret: make([]byte, 32)}},
		Store:                      nopStore{},
		InsecureAllowLocalNetworks: insecure,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// nopStore satisfies Store for tests that never reach it.
type nopStore struct{ Store }

func TestParseIdentifier(t *testing.T) {
	m := testManager(t, false)
	for _, tc := range []struct {
		in, server, atid string
	}{
		{"alice.bsky.social", "", "alice.bsky.social"},
		{"  @Alice.Test ", "", "Alice.Test"},
		{"at://alice.test", "", "alice.test"},
		{"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"},
		{"https://bsky.social", "https://bsky.social", ""},
		{"https://bsky.social/", "https://bsky.social", ""},
		{"https://pds.example.com:8443", "https://pds.example.com:8443", ""},
	} {
		server, atid, err := m.parseIdentifier(tc.in)
		if err != nil || server != tc.server || string(atid) != tc.atid {
			t.Errorf("parseIdentifier(%q): got %q, %q, %v; want %q, %q", tc.in, server, atid, err, tc.server, tc.atid)
		}
	}
	for _, in := range []string{
		"", "   ", "@", "alice", "not a handle", "<script>", "http://pds.example.com",
		"https://user:pw@pds.example.com", "https://pds.example.com/path", "https://pds.example.com?q=1",
		"https://pds.example.com#frag", "ftp://x", "javascript:alert(1)", strings.Repeat("a.", 2000) + "test",
	} {
		if _, _, err := m.parseIdentifier(in); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("parseIdentifier(%q): got %v, want ErrInvalidInput", in, err)
		}
	}
	insecure := testManager(t, true)
	if server, _, err := insecure.parseIdentifier("http://localhost:2583"); err != nil || server != "http://localhost:2583" {
		t.Errorf("an http server URL on a local network: got %q, %v", server, err)
	}
}

// FuzzParseIdentifier: any input is either refused with ErrInvalidInput or
// parsed into exactly one of a server origin or a handle or DID.
func FuzzParseIdentifier(f *testing.F) {
	for _, s := range []string{"alice.test", "@alice.test", "did:plc:abc", "did:web:example.com", "https://bsky.social", "at://x.y", "https://[::1]:80", "http://127.0.0.1"} {
		f.Add(s)
	}
	m := testManager(f, false)
	f.Fuzz(func(t *testing.T, in string) {
		server, atid, err := m.parseIdentifier(in)
		switch {
		case err != nil:
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("parseIdentifier(%q): error %v is not ErrInvalidInput", in, err)
			}
		case (server == "") == (atid == ""):
			t.Fatalf("parseIdentifier(%q): got server %q and identifier %q, want exactly one", in, server, atid)
		case server != "" && (!strings.HasPrefix(server, "https://") || strings.Count(server, "/") != 2):
			t.Fatalf("parseIdentifier(%q): server %q is not an https origin", in, server)
		}
	})
}
