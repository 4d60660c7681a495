package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
	"github.com/atauth/atauth/internal/testenv"
	"github.com/atauth/atauth/storeadapters/memstore"
)

// startDemo runs the demo offline on a free port, with a data directory of
// its own and sessions in memory, and returns its URL and the accounts it
// printed. The demo stops when the test ends.
func startDemo(t *testing.T) (string, map[string]string) {
	t.Helper()
	origin, accounts, _ := runDemo(t, options{addr: "127.0.0.1:0", scope: "atproto transition:generic", store: "memory", data: t.TempDir()})
	return origin, accounts
}

// runDemo runs the demo with o and returns its URL, the accounts it printed
// and a function that stops it and waits for it to exit. The demo also stops
// when the test ends.
func runDemo(t *testing.T, o options) (origin string, accounts map[string]string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, o, pw)
		pw.CloseWithError(fmt.Errorf("demo exited: %v", err))
		done <- err
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("demo exited with %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("demo did not stop")
			}
		})
	}
	t.Cleanup(stop)
	accounts = map[string]string{}
	lines := bufio.NewScanner(pr)
	account := regexp.MustCompile(`^\s+handle (\S+)\s+password (\S+)$`)
	for lines.Scan() {
		line := lines.Text()
		if m := account.FindStringSubmatch(line); m != nil {
			accounts[m[1]] = m[2]
		}
		if origin, ok := strings.CutPrefix(line, "atauth demo listening on "); ok {
			go io.Copy(io.Discard, pr)
			return origin, accounts, stop
		}
	}
	t.Fatalf("the demo printed no ready line: %v", lines.Err())
	return "", nil, nil
}

func newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var hidden = regexp.MustCompile(`name="(request_uri|csrf)" value="([^"]*)"`)

// authorize signs in at the demo the way a person does, up to the landing
// page: /auth/start, the authorization server's sign-in page, the callback.
// It returns the exchange token of the landing URL.
func authorize(t *testing.T, c *http.Client, origin, handle, password string) string {
	t.Helper()
	resp, _ := get(t, c, origin+"/auth/start?handle="+url.QueryEscape(handle))
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || authURL == "" {
		t.Fatalf("start: got %d, want 303", resp.StatusCode)
	}
	resp, page := get(t, c, authURL)
	if resp.StatusCode != 200 {
		t.Fatalf("authorization page: got %d", resp.StatusCode)
	}
	form := url.Values{"handle": {handle}, "password": {password}, "action": {"approve"}}
	for _, m := range hidden.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], m[2])
	}
	au, _ := url.Parse(authURL)
	resp, err := c.PostForm(au.Scheme+"://"+au.Host+au.Path, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, origin+"/auth/callback?") {
		t.Fatalf("consent redirected to %q, want the demo's callback", callback)
	}
	resp, _ = get(t, c, callback)
	landing, _ := url.Parse(resp.Header.Get("Location"))
	token := landing.Query().Get("exchange_token")
	if token == "" {
		t.Fatalf("callback landed on %v, want an exchange token", landing)
	}
	return token
}

// exchange redeems an exchange token, as the page does when browser is
// true (the session cookie goes to c's jar), or as a script does: it then
// returns the session id to send as a Bearer token.
func exchange(t *testing.T, c *http.Client, origin, token string, browser bool) string {
	t.Helper()
	req, _ := http.NewRequest("POST", origin+"/auth/exchange", strings.NewReader(`{"exchange_token":"`+token+`"}`))
	req.Header.Set("Content-Type", "application/json")
	if browser {
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		SessionID *string `json:"session_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("exchange: got %d (%v), want 200", resp.StatusCode, err)
	}
	if browser != (body.SessionID == nil) {
		t.Fatalf("exchange (browser %v): got session_id %v", browser, body.SessionID)
	}
	if body.SessionID == nil {
		return ""
	}
	return *body.SessionID
}

type me struct{ DID, Handle string }

// whoIs answers /auth/me for c, or for the Bearer token when it is not "".
func whoIs(t *testing.T, c *http.Client, origin, bearer string) (int, me) {
	t.Helper()
	status, body := getJSON(t, c, origin+"/auth/me", bearer)
	var m me
	if status == 200 {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("/auth/me: %v in %s", err, body)
		}
	}
	return status, m
}

// pdsSessionOf answers /api/pds-session for c, or for the Bearer token.
func pdsSessionOf(t *testing.T, c *http.Client, origin, bearer string) (int, map[string]any) {
	t.Helper()
	status, body := getJSON(t, c, origin+"/api/pds-session", bearer)
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("/api/pds-session: got %d %q, want JSON", status, body)
	}
	return status, out
}

func getJSON(t *testing.T, c *http.Client, u, bearer string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: got Content-Type %q, want JSON", u, ct)
	}
	return resp.StatusCode, string(b)
}

// TestDemoSignIn signs in the way a person does: the page's form, the
// authorization server's sign-in page, the exchange, /auth/me, and a call to
// the PDS through the demo.
func TestDemoSignIn(t *testing.T) {
	origin, accounts := startDemo(t)
	if !strings.HasPrefix(origin, "http://127.0.0.1:") {
		t.Fatalf("ready line origin %q, want http://127.0.0.1:PORT", origin)
	}
	password, ok := accounts["alice.test"]
	if !ok {
		t.Fatalf("printed accounts %v, want alice.test", accounts)
	}
	c := newClient()

	resp, page := get(t, c, origin+"/")
	if resp.StatusCode != 200 || !strings.Contains(page, `action="/auth/start"`) {
		t.Fatalf("home page: got %d, want 200 with the sign-in form", resp.StatusCode)
	}
	if status, out := pdsSessionOf(t, c, origin, ""); status != http.StatusUnauthorized {
		t.Errorf("/api/pds-session signed out: got %d %v, want 401", status, out)
	}

	exchange(t, c, origin, authorize(t, c, origin, "alice.test", password), true)

	status, who := whoIs(t, c, origin, "")
	if status != 200 || who.Handle != "alice.test" || !strings.HasPrefix(who.DID, "did:plc:") {
		t.Fatalf("/auth/me: got %d %+v, want alice.test and her DID", status, who)
	}
	status, out := pdsSessionOf(t, c, origin, "")
	if status != 200 || out["did"] != who.DID || out["handle"] != "alice.test" {
		t.Errorf("/api/pds-session: got %d %v, want the PDS's answer for %s", status, out, who.DID)
	}
}

// TestDemoPDSSessionBearer calls /api/pds-session as a script does: a
// non-browser exchange gives a session id, sent as a Bearer token.
func TestDemoPDSSessionBearer(t *testing.T) {
	origin, accounts := startDemo(t)
	c := newClient()
	id := exchange(t, c, origin, authorize(t, c, origin, "bob.test", accounts["bob.test"]), false)
	if id == "" {
		t.Fatal("non-browser exchange: got no session id")
	}
	script := newClient() // no cookies: the token is the only credential
	status, who := whoIs(t, script, origin, id)
	if status != 200 || who.Handle != "bob.test" {
		t.Fatalf("/auth/me with the Bearer token: got %d %+v, want bob.test", status, who)
	}
	status, out := pdsSessionOf(t, script, origin, id)
	if status != 200 || out["did"] != who.DID {
		t.Errorf("/api/pds-session with the Bearer token: got %d %v, want did %s", status, out, who.DID)
	}
	if status, _ := pdsSessionOf(t, script, origin, id+"x"); status != http.StatusUnauthorized {
		t.Errorf("/api/pds-session with a wrong token: got %d, want 401", status)
	}
}

// TestDemoRestart stops the demo and starts it again on the same data
// directory and address: the cookie still signs in, and the PDS call works,
// so the sealing key, the SQLite store, and the built-in network's accounts,
// grants and ports all survived.
func TestDemoRestart(t *testing.T) {
	data := t.TempDir()
	o := options{addr: "127.0.0.1:0", scope: "atproto transition:generic", data: data}
	origin, accounts, stop := runDemo(t, o)
	c := newClient()
	exchange(t, c, origin, authorize(t, c, origin, "alice.test", accounts["alice.test"]), true)
	status, before := whoIs(t, c, origin, "")
	if status != 200 {
		t.Fatalf("/auth/me before the restart: got %d", status)
	}
	stop()

	for _, name := range []string{"sealing.key", "atauth.db", "network.json"} {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Errorf("data directory: %v", err)
		} else if name != "atauth.db" && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: got mode %v, want 0600", name, fi.Mode().Perm())
		}
	}

	// The loopback client's id names its redirect URI, port included: the
	// demo must come back on the same address.
	o.addr = strings.TrimPrefix(origin, "http://")
	origin2, accounts2, _ := runDemo(t, o)
	if origin2 != origin {
		t.Fatalf("restarted on %s, want %s", origin2, origin)
	}
	if diff := cmp.Diff(accounts, accounts2); diff != "" {
		t.Errorf("printed accounts after the restart (-before +after):\n%s", diff)
	}
	status, after := whoIs(t, c, origin, "")
	if status != 200 || after != before {
		t.Fatalf("/auth/me after the restart: got %d %+v, want 200 %+v", status, after, before)
	}
	status, out := pdsSessionOf(t, c, origin, "")
	if status != 200 || out["did"] != before.DID {
		t.Errorf("/api/pds-session after the restart: got %d %v, want did %s", status, out, before.DID)
	}
}

// TestDemoRedirectsLocalhost checks that localhost is sent to 127.0.0.1
// before any cookie is set.
func TestDemoRedirectsLocalhost(t *testing.T) {
	origin, _ := startDemo(t)
	port := strings.TrimPrefix(origin, "http://127.0.0.1:")
	resp, _ := get(t, newClient(), "http://localhost:"+port+"/auth/start?handle=alice.test")
	if got, want := resp.Header.Get("Location"), origin+"/auth/start?handle=alice.test"; got != want {
		t.Errorf("localhost redirect: got %q, want %q", got, want)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("localhost got cookies %v, want none", resp.Cookies())
	}
}

func TestParseStoreSpec(t *testing.T) {
	data := filepath.Join("var", "demo")
	for _, tc := range []struct {
		spec string
		want storeSpec // zero: refused
	}{
		{"", storeSpec{kind: "sqlite", target: filepath.Join(data, "atauth.db")}},
		{"memory", storeSpec{kind: "memory"}},
		{"sqlite:/srv/atauth.db", storeSpec{kind: "sqlite", target: "/srv/atauth.db"}},
		{"sqlite:atauth.db", storeSpec{kind: "sqlite", target: "atauth.db"}},
		{"postgres://demo:secret@db.internal:5432/demo?sslmode=disable", storeSpec{kind: "postgres", target: "postgres://demo:secret@db.internal:5432/demo?sslmode=disable"}},
		{"postgresql://db.internal/demo", storeSpec{kind: "postgres", target: "postgresql://db.internal/demo"}},
		{"redis://127.0.0.1:6379/0", storeSpec{kind: "redis", target: "redis://127.0.0.1:6379/0"}},
		{"rediss://:secret@cache.internal:6380/2", storeSpec{kind: "redis", target: "rediss://:secret@cache.internal:6380/2"}},
		{"sqlite:", storeSpec{}},
		{"sqlite", storeSpec{}},
		{"memstore", storeSpec{}},
		{"Memory", storeSpec{}},
		{"/srv/atauth.db", storeSpec{}},
		{"mysql://root@127.0.0.1/demo", storeSpec{}},
		{"postgres://db.internal:notaport/demo", storeSpec{}},
		{"redis://127.0.0.1:6379/notadb", storeSpec{}},
	} {
		got, err := parseStoreSpec(tc.spec, data)
		if tc.want == (storeSpec{}) {
			if err == nil {
				t.Errorf("parseStoreSpec(%q): got %+v, want an error", tc.spec, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseStoreSpec(%q): got %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
}

func TestStoreSpecHidesPasswords(t *testing.T) {
	for _, spec := range []string{"postgres://demo:hunter22@db/demo", "redis://:hunter22@cache:6379/0"} {
		s, err := parseStoreSpec(spec, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(s.String(), "hunter22") {
			t.Errorf("storeSpec(%q).String() = %q, want the password hidden", spec, s)
		}
	}
}

func TestSealingKeyPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sealing.key")
	first, err := loadSealingKey(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := loadSealingKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != sealingKeySize || string(first) != string(second) {
		t.Errorf("sealing key: got %x then %x, want the same %d bytes", first, second, sealingKeySize)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("sealing key file: got %v, %v; want mode 0600", fi, err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSealingKey(path); err == nil {
		t.Error("a 5-byte key file: got no error, want one")
	}
}

// signInOver runs the demo on the store spec and signs alice in.
func signInOver(t *testing.T, spec string) {
	t.Helper()
	origin, accounts, _ := runDemo(t, options{addr: "127.0.0.1:0", scope: "atproto transition:generic", store: spec, data: t.TempDir()})
	c := newClient()
	exchange(t, c, origin, authorize(t, c, origin, "alice.test", accounts["alice.test"]), true)
	if status, who := whoIs(t, c, origin, ""); status != 200 || who.Handle != "alice.test" {
		t.Fatalf("/auth/me on %s: got %d %+v, want alice.test", spec, status, who)
	}
	if status, out := pdsSessionOf(t, c, origin, ""); status != 200 {
		t.Errorf("/api/pds-session on %s: got %d %v, want 200", spec, status, out)
	}
}

// checkReachable opens the store once, so that a server that is configured
// but down skips (or, under CI, fails) with a clear message.
func checkReachable(t *testing.T, name, spec string) {
	t.Helper()
	s, err := parseStoreSpec(spec, t.TempDir())
	if err != nil {
		t.Fatalf("%s from the test environment: %v", name, err)
	}
	_, closeStore, err := openStore(t.Context(), s)
	if err != nil {
		testenv.Unreachable(t, name, err)
	}
	closeStore()
}

func TestDemoOnPostgres(t *testing.T) {
	spec := testenv.Postgres(t)
	checkReachable(t, "PostgreSQL", spec)
	signInOver(t, spec)
}

func TestDemoOnRedis(t *testing.T) {
	addr := testenv.Redis(t)
	spec := addr
	if !strings.HasPrefix(spec, "redis://") && !strings.HasPrefix(spec, "rediss://") {
		spec = "redis://" + addr
	}
	checkReachable(t, "Redis", spec)
	signInOver(t, spec)
}

// TestPDSSessionErrors checks how /api/pds-session answers a PDS that does
// not answer in time and a session that has ended.
func TestPDSSessionErrors(t *testing.T) {
	network := atauthtest.NewNetwork(t)
	alice, err := network.CreateAccount("alice.test", "hunter22")
	if err != nil {
		t.Fatal(err)
	}
	m, err := atauth.New(atauth.Config{
		RedirectURL:                "http://127.0.0.1:8080/auth/callback",
		SealingKeys:                []atauth.SealingKey{{ID: "k1", Secret: make([]byte, 32)}},
		Store:                      memstore.New(),
		PLCURL:                     network.PLCURL(),
		HandleResolverURL:          network.HandleResolverURL(),
		InsecureAllowLocalNetworks: true,
		Logger:                     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	start, err := m.StartLogin(t.Context(), alice.Handle)
	if err != nil {
		t.Fatal(err)
	}
	callback, err := network.Approve(t.Context(), start.AuthURL, alice.Handle, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(callback)
	res, err := m.HandleCallback(t.Context(), u.Query(), start.FlowCookie)
	if err != nil {
		t.Fatal(err)
	}
	h := pdsSession(m, slog.New(slog.DiscardHandler))
	call := func(ctx context.Context) (int, string) {
		req := httptest.NewRequestWithContext(atauth.ContextWithSession(ctx, res.Session), "GET", "/api/pds-session", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}

	if status, body := call(t.Context()); status != 200 || !strings.Contains(body, alice.DID) {
		t.Errorf("signed in: got %d %s, want 200 with %s", status, body, alice.DID)
	}

	network.SetLatency(time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	status, body := call(ctx)
	cancel()
	network.SetLatency(0)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"detail"`) {
		t.Errorf("PDS too slow: got %d %s, want 503 with a detail", status, body)
	}

	if err := m.Logout(t.Context(), res.Session); err != nil {
		t.Fatal(err)
	}
	if status, body := call(t.Context()); status != http.StatusUnauthorized || body != `{"detail":"session_expired"}` {
		t.Errorf("ended session: got %d %s, want 401 session_expired", status, body)
	}
}
