package atauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
	"github.com/atauth/atauth/storeadapters/memstore"
)

// countingTransport counts the Manager's outbound requests.
type countingTransport struct {
	n    atomic.Int64
	mu   sync.Mutex
	urls []string
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	c.mu.Lock()
	c.urls = append(c.urls, r.Method+" "+r.URL.Scheme+"://"+r.URL.Host+r.URL.Path)
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) reset() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.urls
	c.urls = nil
	c.n.Store(0)
	return u
}

// testClock is the wall clock moved forward by Advance. The network keeps
// real time, so tests advance it only past their last call to the network
// that checks timestamps.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// testApp is a host app with atauth mounted, signed in against an atauthtest
// network.
type testApp struct {
	t     testing.TB
	net   *atauthtest.Network
	m     *atauth.Manager
	store *memstore.Store
	srv   *httptest.Server
	out   *countingTransport
	clock *testClock
	// use mounts m as the app's Manager.
	use   func(m *atauth.Manager)
	alice atauthtest.Account
	bob   atauthtest.Account
	cfg   atauth.Config
}

type appOption func(*atauth.Config)

func confidential(t testing.TB) appOption {
	return func(c *atauth.Config) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		c.ClientKeys = []atauth.ClientKey{{ID: "k1", Key: key}}
	}
}

func newTestApp(t testing.TB, opts ...appOption) *testApp {
	t.Helper()
	n := atauthtest.NewNetwork(t)
	alice, err := n.CreateAccount("alice.test", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := n.CreateAccount("bob.test", "bob-pw")
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{}
	app := &testApp{t: t, net: n, store: memstore.NewWithClock(clock.Now), clock: clock, out: &countingTransport{}, alice: alice, bob: bob}

	var handler http.Handler = http.NotFoundHandler()
	var mu sync.RWMutex
	app.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		h := handler
		mu.RUnlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(app.srv.Close)

	cfg := atauth.Config{
		RedirectURL:                app.srv.URL + "/auth/callback",
		Scopes:                     []string{"atproto", "transition:generic"},
		SealingKeys:                []atauth.SealingKey{{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}},
		Store:                      app.store,
		HTTPClient:                 &http.Client{Transport: app.out},
		PLCURL:                     n.PLCURL(),
		HandleResolverURL:          n.HandleResolverURL(),
		InsecureAllowLocalNetworks: true,
		ClientName:                 "atauth test app",
		Now:                        clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.ClientKeys) > 0 && cfg.ClientID == "" {
		cfg.ClientID = app.srv.URL + "/oauth-client-metadata.json"
	}
	m, err := atauth.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	app.m, app.cfg = m, cfg

	app.use = func(m *atauth.Manager) {
		app.m = m
		mux := http.NewServeMux()
		m.Register(mux)
		mux.Handle("GET /api/whoami", m.RequireAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, _ := atauth.SessionFromContext(r.Context())
			_, _ = io.WriteString(w, s.DID)
		})))
		mux.Handle("GET /api/email", m.RequireScopes("transition:email")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok")
		})))
		mu.Lock()
		handler = mux
		mu.Unlock()
	}
	app.use(m)
	return app
}

// browser is a cookie-keeping HTTP client that does not follow redirects and
// sends the headers a browser's fetch sends.
type browser struct {
	t      testing.TB
	app    *testApp
	client *http.Client
}

func (app *testApp) newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: app.t, app: app, client: &http.Client{
		Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

type response struct {
	status   int
	header   http.Header
	body     []byte
	location *url.URL
}

func (r *response) json(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return v
}

// do sends a request. path may be absolute or relative to the app.
func (b *browser) do(method, path string, body string, header map[string]string) *response {
	b.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.app.srv.URL + path
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := &response{status: resp.StatusCode, header: resp.Header, body: data}
	if loc, err := resp.Location(); err == nil {
		out.location = loc
	}
	return out
}

// fetch sends a same-origin request the way a page's fetch would.
func (b *browser) fetch(method, path, body string) *response {
	b.t.Helper()
	return b.do(method, path, body, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": b.app.srv.URL})
}

// start begins a sign-in and returns the authorization URL.
func (b *browser) start(handle string) string {
	b.t.Helper()
	resp := b.do("GET", "/auth/start?handle="+url.QueryEscape(handle), "", nil)
	if resp.status != http.StatusSeeOther || resp.location == nil {
		b.t.Fatalf("start: got %d %s, want 303 with Location", resp.status, resp.body)
	}
	return resp.location.String()
}

// callback follows the authorization server's redirect back to the app and
// returns the landing URL's query.
func (b *browser) callback(callbackURL string) url.Values {
	b.t.Helper()
	resp := b.do("GET", callbackURL, "", nil)
	if resp.status != http.StatusSeeOther || resp.location == nil {
		b.t.Fatalf("callback: got %d %s, want 303", resp.status, resp.body)
	}
	return resp.location.Query()
}

// exchange redeems an exchange token the way the frontend does.
func (b *browser) exchange(token string) *response {
	b.t.Helper()
	return b.fetch("POST", "/auth/exchange", `{"exchange_token":"`+token+`"}`)
}

// login runs a whole browser sign-in and returns the session cookie's value.
func (b *browser) login(acct atauthtest.Account) {
	b.t.Helper()
	authURL := b.start(acct.Handle)
	cb, err := b.app.net.Approve(context.Background(), authURL, acct.Handle, acct.Password)
	if err != nil {
		b.t.Fatalf("Approve: %v", err)
	}
	q := b.callback(cb)
	xt := q.Get("exchange_token")
	if xt == "" {
		b.t.Fatalf("callback landed on %v, want an exchange_token", q)
	}
	if resp := b.exchange(xt); resp.status != http.StatusOK {
		b.t.Fatalf("exchange: got %d %s, want 200", resp.status, resp.body)
	}
}

func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.app.srv.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (app *testApp) sessionsOf(did string) int {
	app.t.Helper()
	recs, err := app.store.ListSessionsByDID(context.Background(), did, atauth.KindBrowser)
	if err != nil {
		app.t.Fatal(err)
	}
	return len(recs)
}

// startFlow posts a flow start the way the page's fetch does and returns
// the auth_url.
func (b *browser) startFlow(path, body string) string {
	b.t.Helper()
	resp := b.fetch("POST", path, body)
	if resp.status != http.StatusOK {
		b.t.Fatalf("POST %s: got %d %s, want 200", path, resp.status, resp.body)
	}
	u, _ := resp.json(b.t)["auth_url"].(string)
	if u == "" {
		b.t.Fatalf("POST %s: body %s has no auth_url", path, resp.body)
	}
	return u
}

// approveAndReturn approves authURL as acct and follows the redirect back to
// the app, returning the landing query.
func (b *browser) approveAndReturn(authURL string, acct atauthtest.Account) url.Values {
	b.t.Helper()
	cb, err := b.app.net.Approve(context.Background(), authURL, acct.Handle, acct.Password)
	if err != nil {
		b.t.Fatalf("Approve: %v", err)
	}
	return b.callback(cb)
}

// me returns /auth/me's JSON, failing the test unless it answers 200.
func (b *browser) me() map[string]any {
	b.t.Helper()
	resp := b.fetch("GET", "/auth/me", "")
	if resp.status != http.StatusOK {
		b.t.Fatalf("/auth/me: got %d %s", resp.status, resp.body)
	}
	return resp.json(b.t)
}

// linked returns the DIDs of /auth/me's linked_accounts.
func linked(me map[string]any) []string {
	var dids []string
	list, _ := me["linked_accounts"].([]any)
	for _, a := range list {
		if m, ok := a.(map[string]any); ok {
			did, _ := m["did"].(string)
			dids = append(dids, did)
		}
	}
	return dids
}

func (app *testApp) developerTokensOf(did string) int {
	app.t.Helper()
	recs, err := app.store.ListSessionsByDID(context.Background(), did, atauth.KindDeveloper)
	if err != nil {
		app.t.Fatal(err)
	}
	return len(recs)
}
