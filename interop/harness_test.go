package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/storeadapters/memstore"
)

// The two sets of the reference PDS the tests run against; install.sh
// installs both.
var sets = []string{"node20", "node22"}

// clientHost is the made-up https host of confidential clients. The PDS's
// outgoing fetches to it go to a local server (the launcher's HOST_MAP);
// home.arpa passes the provider's checks, unlike example.com or .test.
const clientHost = "client.home.arpa"

const password = "hunter22-interop"

// installedSet finds the installed set name of the committed lockfile, or
// says why it cannot.
func installedSet(name string) (modules, node string, err error) {
	root := os.Getenv("ATAUTH_INTEROP_DIR")
	if root == "" {
		return "", "", errors.New("ATAUTH_INTEROP_DIR is not set; run interop/install.sh and export what it prints")
	}
	lock, err := os.ReadFile(filepath.Join(name, "package-lock.json"))
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(lock)
	dir := filepath.Join(root, name+"-"+hex.EncodeToString(sum[:])[:16])
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		return "", "", fmt.Errorf("%s is not installed for this lockfile (%v); run interop/install.sh", name, err)
	}
	nodePath, err := os.ReadFile(filepath.Join(dir, "node-path"))
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "node_modules"), strings.TrimSpace(string(nodePath)), nil
}

// skipOrFail skips a test whose harness is missing, unless CI requires it.
func skipOrFail(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("ATAUTH_INTEROP_REQUIRED") == "1" {
		t.Fatalf("interop harness required (ATAUTH_INTEROP_REQUIRED=1): %v", err)
	}
	t.Skipf("interop harness not installed: %v", err)
}

// account is a test account the launcher created.
type account struct {
	DID      string `json:"did"`
	Handle   string `json:"handle"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

// network is a running PLC directory and reference PDS.
type network struct {
	set      string
	PDSURL   string    `json:"pdsUrl"`
	PLCURL   string    `json:"plcUrl"`
	Accounts []account `json:"accounts"`
	Versions struct {
		Node          string `json:"node"`
		DevEnv        string `json:"devEnv"`
		PDS           string `json:"pds"`
		OAuthProvider string `json:"oauthProvider"`
	} `json:"versions"`
	StartMS int `json:"startMs"`

	clients *clientServer
}

func (n *network) alice() account { return n.Accounts[0] }
func (n *network) bob() account   { return n.Accounts[1] }

// startNetwork launches the set's network for the rest of the test. The
// launcher exits when its stdin closes, so it also ends if the test binary
// dies.
func startNetwork(t *testing.T, set, modules, node string) *network {
	t.Helper()
	clients := startClientServer(t)
	cmd := exec.Command(node, "launch-network.js")
	cmd.Env = append(os.Environ(),
		"ATAUTH_INTEROP_MODULES="+modules,
		"PLC_PORT="+strconv.Itoa(freePort(t)),
		"PDS_PORT="+strconv.Itoa(freePort(t)),
		"ACCOUNTS=alice,bob",
		"ACCOUNT_PASSWORD="+password,
		"HOST_MAP="+clientHost+"=http://localhost:"+clients.port,
	)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		r := bufio.NewReader(stdout)
		s, _ := r.ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, r)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("launcher stderr:\n%s", stderr.String())
		}
	})
	n := &network{set: set, clients: clients}
	select {
	case s := <-line:
		if err := json.Unmarshal([]byte(s), n); err != nil || n.PDSURL == "" {
			t.Fatalf("launcher: got %q (%v); stderr:\n%s", s, err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("launcher: not ready after 90s; stderr:\n%s", stderr.String())
	}
	t.Logf("%s: node %s, @atproto/dev-env %s, @atproto/pds %s, @atproto/oauth-provider %s; ready in %v (network %dms)",
		set, n.Versions.Node, n.Versions.DevEnv, n.Versions.PDS, n.Versions.OAuthProvider,
		time.Since(start).Round(time.Millisecond), n.StartMS)
	if len(n.Accounts) != 2 {
		t.Fatalf("launcher created %d accounts, want 2", len(n.Accounts))
	}
	return n
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// clientServer serves the confidential clients' metadata and JWKS: the
// PDS fetches https://client.home.arpa/<name>/… and HOST_MAP sends it here.
// Each client gets its own path, so that the provider's per-URL metadata
// cache never mixes keys.
type clientServer struct {
	port string
	mu   sync.Mutex
	apps map[string]http.Handler
}

func startClientServer(t *testing.T) *clientServer {
	cs := &clientServer{apps: map[string]http.Handler{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, cs.port, _ = net.SplitHostPort(l.Addr().String())
	srv := &http.Server{Handler: cs, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	// Node may resolve localhost to ::1 first; answer there too when the
	// machine has IPv6 loopback.
	if l6, err := net.Listen("tcp", "[::1]:"+cs.port); err == nil {
		srv6 := &http.Server{Handler: cs, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv6.Serve(l6) }()
		t.Cleanup(func() { _ = srv6.Close() })
	}
	return cs
}

func (cs *clientServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	cs.mu.Lock()
	h := cs.apps[name]
	cs.mu.Unlock()
	if h == nil {
		http.NotFound(w, r)
		return
	}
	http.StripPrefix("/"+name, h).ServeHTTP(w, r)
}

// add serves h under a new path and returns the path's name.
func (cs *clientServer) add(h http.Handler) string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	name := fmt.Sprintf("app%d", len(cs.apps)+1)
	cs.apps[name] = h
	return name
}

// events records a Manager's events.
type events struct {
	mu  sync.Mutex
	all []atauth.Event
}

func (e *events) record(_ context.Context, ev atauth.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// count counts events of type typ, and of outcome unless it is "".
func (e *events) count(typ atauth.EventType, outcome string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Type == typ && (outcome == "" || ev.Outcome == outcome) {
			n++
		}
	}
	return n
}

// wire records a Manager's outbound requests: what the servers saw.
type wire struct {
	mu    sync.Mutex
	calls []call
}

// call is one outbound request and its answer.
type call struct {
	method, path string
	form         url.Values // of a pushed authorization or token request
	grantType    string     // of a token request
	oauthError   string     // of a refused token request
	status       int
	challenge    string // WWW-Authenticate
}

func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	c := call{method: req.Method, path: req.URL.Path}
	if (req.URL.Path == "/oauth/token" || req.URL.Path == "/oauth/par") && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		data, _ := io.ReadAll(body)
		c.form, _ = url.ParseQuery(string(data))
		c.grantType = c.form.Get("grant_type")
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	c.status = resp.StatusCode
	c.challenge = resp.Header.Get("WWW-Authenticate")
	if c.grantType != "" && resp.StatusCode != http.StatusOK {
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(data))
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		c.oauthError = e.Error
	}
	w.mu.Lock()
	w.calls = append(w.calls, c)
	w.mu.Unlock()
	return resp, nil
}

// refreshes counts the refresh_token grant requests the server answered
// with oauthError ("" for success). A use_dpop_nonce answer is a retry, not
// a refresh.
func (w *wire) refreshes(oauthError string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.calls {
		if c.grantType == "refresh_token" && c.oauthError == oauthError {
			n++
		}
	}
	return n
}

// lastPARPrompt is the prompt of the last accepted pushed authorization
// request.
func (w *wire) lastPARPrompt() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.calls) - 1; i >= 0; i-- {
		if c := w.calls[i]; c.path == "/oauth/par" && c.status == http.StatusCreated {
			return c.form.Get("prompt")
		}
	}
	return ""
}

// lastChallenge is the WWW-Authenticate of the last 401 from the PDS.
func (w *wire) lastChallenge() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.calls) - 1; i >= 0; i-- {
		if c := w.calls[i]; c.status == http.StatusUnauthorized && strings.HasPrefix(c.path, "/xrpc/") {
			return c.challenge
		}
	}
	return ""
}

// app is an atauth Manager under test, its store and its events.
type app struct {
	m      *atauth.Manager
	store  *replayStore
	events *events
	wire   *wire
	cfg    atauth.Config
	// url is the app's own origin for a loopback client, served by
	// httptest.
	url string
}

// appOptions vary the Manager.
type appOptions struct {
	confidential bool
	// store, when set, is shared with another app.
	store *replayStore
	// sealing, when set, is shared with another app.
	sealing []atauth.SealingKey
}

// newApp returns a Manager configured for the network: a loopback client
// served by httptest, or a confidential client on clientHost.
func (n *network) newApp(t *testing.T, o appOptions) *app {
	t.Helper()
	a := &app{events: &events{}, store: o.store, wire: &wire{}}
	if a.store == nil {
		a.store = &replayStore{Store: memstore.New()}
	}
	sealing := o.sealing
	if sealing == nil {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		sealing = []atauth.SealingKey{{ID: "k1", Secret: secret}}
	}
	cfg := atauth.Config{
		Scopes:                     []string{"atproto", "transition:generic", "transition:email"},
		LoginScopes:                []string{"atproto", "transition:generic"},
		SealingKeys:                sealing,
		Store:                      a.store,
		PLCURL:                     n.PLCURL,
		HandleResolverURL:          n.PDSURL,
		InsecureAllowLocalNetworks: true,
		AccountCreation:            true,
		AllowAnyPDS:                true,
		RateLimiter:                atauth.NoRateLimit,
		OnEvent:                    a.events.record,
		// Plain transport, recorded: the default client refuses nothing
		// here anyway (InsecureAllowLocalNetworks).
		HTTPClient: &http.Client{Transport: a.wire, Timeout: 30 * time.Second},
	}
	var handler struct {
		mu sync.Mutex
		h  http.Handler
	}
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.mu.Lock()
		h := handler.h
		handler.mu.Unlock()
		h.ServeHTTP(w, r)
	})
	if o.confidential {
		name := n.clients.add(serve)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		base := "https://" + clientHost + "/" + name
		cfg.ClientID = base + "/oauth-client-metadata.json"
		cfg.JWKSURL = base + "/.well-known/jwks.json"
		cfg.RedirectURL = base + "/auth/callback"
		cfg.ClientKeys = []atauth.ClientKey{{ID: "k-" + name, Key: key}}
		a.url = base
	} else {
		srv := httptest.NewServer(serve)
		t.Cleanup(srv.Close)
		cfg.RedirectURL = srv.URL + "/auth/callback"
		a.url = srv.URL
	}
	m, err := atauth.New(cfg)
	if err != nil {
		t.Fatalf("atauth.New: %v", err)
	}
	handler.mu.Lock()
	handler.h = m.Handler()
	handler.mu.Unlock()
	a.m, a.cfg = m, cfg
	return a
}

// share returns another instance of the app: a Manager with the same
// configuration on a view of the same store, as a second process on a
// shared database would be.
func (n *network) share(t *testing.T, a *app) *app {
	t.Helper()
	b := &app{events: &events{}, store: &replayStore{Store: a.store.Share()}, wire: &wire{}, url: a.url}
	cfg := a.cfg
	cfg.Store = b.store
	cfg.OnEvent = b.events.record
	cfg.HTTPClient = &http.Client{Transport: b.wire, Timeout: 30 * time.Second}
	m, err := atauth.New(cfg)
	if err != nil {
		t.Fatalf("atauth.New: %v", err)
	}
	b.m, b.cfg = m, cfg
	return b
}

// replayStore is a memstore that remembers the pending flows it handed out,
// so that a test can replay a callback (and with it an authorization code)
// past atauth's own one-time check.
type replayStore struct {
	*memstore.Store
	mu    sync.Mutex
	flows map[string][]byte
}

func (s *replayStore) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	v, err := s.Store.TakeOnce(ctx, key)
	if err == nil && strings.HasPrefix(key, "flow:") {
		s.mu.Lock()
		if s.flows == nil {
			s.flows = map[string][]byte{}
		}
		s.flows[key] = bytes.Clone(v)
		s.mu.Unlock()
	}
	return v, err
}

// restoreFlows puts back every flow taken so far.
func (s *replayStore) restoreFlows(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.flows {
		if err := s.Store.PutOnce(ctx, k, v, time.Now().Add(5*time.Minute)); err != nil {
			return err
		}
	}
	return nil
}

// record returns the stored record of session id.
func (s *replayStore) record(t *testing.T, ctx context.Context, id string) atauth.SessionRecord {
	t.Helper()
	sum := sha256.Sum256([]byte(id))
	rec, err := s.GetSession(ctx, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	return rec
}

// restore replaces the stored session with rec, as it was when it was read.
func (s *replayStore) restore(t *testing.T, ctx context.Context, rec atauth.SessionRecord) {
	t.Helper()
	if err := s.DeleteSession(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, rec); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
}

// signedIn is a session and its credential.
type signedIn struct {
	id string
	s  *atauth.Session
}

// finish completes a flow at the Manager from the callback URL the user
// came back with, and redeems the exchange token as the browser would.
func (a *app) finish(t *testing.T, ctx context.Context, start *atauth.FlowStart, callback *url.URL, wantKind atauth.FlowKind) signedIn {
	t.Helper()
	if !strings.HasPrefix(callback.String(), a.cfg.RedirectURL+"?") {
		t.Fatalf("callback %s, want the redirect URL %s", callback.Redacted(), a.cfg.RedirectURL)
	}
	res, err := a.m.HandleCallback(ctx, callback.Query(), start.FlowCookie)
	if err != nil {
		t.Fatalf("HandleCallback: %v", err)
	}
	if res.Kind != wantKind {
		t.Fatalf("callback kind: got %q, want %q", res.Kind, wantKind)
	}
	if res.ExchangeToken == "" {
		return signedIn{s: res.Session}
	}
	x, err := a.m.Exchange(ctx, atauth.ExchangeRequest{Token: res.ExchangeToken, Browser: wantKind != atauth.FlowDeveloperToken, FlowCookie: start.FlowCookie})
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return signedIn{id: x.SessionID, s: x.Session}
}

// login signs acct in through the Manager.
func (a *app) login(t *testing.T, ctx context.Context, u *User, acct account) signedIn {
	t.Helper()
	start, err := a.m.StartLogin(ctx, acct.Handle)
	if err != nil {
		t.Fatalf("StartLogin(%s): %v", acct.Handle, err)
	}
	cb, err := u.SignIn(ctx, start.AuthURL, acct.Handle, acct.Password)
	if err != nil {
		t.Fatalf("signing in at the authorization server: %v", err)
	}
	return a.finish(t, ctx, start, cb, atauth.FlowLogin)
}

// serverSession is what com.atproto.server.getSession answers.
type serverSession struct {
	DID            string `json:"did"`
	Handle         string `json:"handle"`
	Email          string `json:"email"`
	EmailConfirmed *bool  `json:"emailConfirmed"`
	Active         *bool  `json:"active"`
}

// getSession calls com.atproto.server.getSession through the session's
// DPoP-bound client.
func (a *app) getSession(ctx context.Context, s *atauth.Session) (serverSession, error) {
	var out serverSession
	err := a.m.PDSClient(s).Query(ctx, "com.atproto.server.getSession", nil, &out)
	return out, err
}

// mustGetSession calls getSession and checks it answers for s's account.
func (a *app) mustGetSession(t *testing.T, ctx context.Context, s *atauth.Session) serverSession {
	t.Helper()
	got, err := a.getSession(ctx, s)
	if err != nil {
		t.Fatalf("getSession: %v", err)
	}
	if got.DID != s.DID {
		t.Fatalf("getSession: got did %q, want %q", got.DID, s.DID)
	}
	return got
}
