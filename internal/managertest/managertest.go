// Package managertest runs atauth's multi-instance scenarios against a Store
// adapter: several Managers, each with a Store handle of its own (its own
// connection pool, client or file handle), sharing one backend, as the
// instances of a deployed application would.
//
// An adapter's tests call the scenarios with a [StoresFunc]:
//
//	func TestManagers(t *testing.T) {
//		managertest.Run(t, func(t *testing.T, n int) []atauth.Store { … })
//	}
//
// [RefreshStorm] and [ExchangeContention] use the Manager API directly.
// [RunOutage] drives a Manager's HTTP handler with cookie-keeping browsers
// while the test cuts the Store's network, and checks the answers and what
// the Store holds afterwards.
package managertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
)

// sealingSecret is the fixed 32-byte sealing key of every test Manager, so
// that Managers made separately open each other's records.
const sealingSecret = "managertest-sealing-key-32-bytes"

// StoresFunc returns n Stores on one fresh backend, each as a separate
// instance of an application would hold it: its own connection pool, client
// or file handle. The backend is cleaned up when t ends.
type StoresFunc func(t *testing.T, n int) []atauth.Store

// Instances is how many Managers the multi-instance scenarios run.
const Instances = 4

// Config returns a Manager configuration for a loopback client of network,
// with redirectURL (an http://127.0.0.1 URL) as its redirect URL and store
// as its Store. Every Config shares one sealing key. Its logger discards:
// the scenarios provoke failures on purpose.
func Config(network *atauthtest.Network, store atauth.Store, redirectURL string) atauth.Config {
	return atauth.Config{
		RedirectURL:                redirectURL,
		Scopes:                     []string{"atproto", "transition:generic"},
		SealingKeys:                []atauth.SealingKey{{ID: "k1", Secret: []byte(sealingSecret)}},
		Store:                      store,
		PLCURL:                     network.PLCURL(),
		HandleResolverURL:          network.HandleResolverURL(),
		InsecureAllowLocalNetworks: true,
		ClientName:                 "atauth managertest",
		Logger:                     slog.New(slog.DiscardHandler),
	}
}

// defaultRedirect is the redirect URL of Managers that no browser reaches:
// the scenarios hand the callback to the Manager themselves.
const defaultRedirect = "http://127.0.0.1/auth/callback"

// NewManager returns a Manager for network on store, failing tb if New
// does.
func NewManager(tb testing.TB, network *atauthtest.Network, store atauth.Store) *atauth.Manager {
	tb.Helper()
	cfg := Config(network, store, defaultRedirect)
	cfg.HTTPClient = httpClient(tb)
	m, err := atauth.New(cfg)
	if err != nil {
		tb.Fatalf("atauth.New: %v", err)
	}
	return m
}

// httpClient returns an HTTP client for one Manager, with connections of
// its own, as a separate instance would have. Its timeout is generous: the
// scenarios run a thousand requests at once on small, busy machines, under
// the race detector, and a request that waits its turn for a CPU is not a
// failure of the Store under test. The client's connections close when tb
// ends.
func httpClient(tb testing.TB) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// NewNetwork starts a network with an account for each handle, whose
// password is the handle followed by "-pw".
func NewNetwork(tb testing.TB, handles ...string) (*atauthtest.Network, []atauthtest.Account) {
	tb.Helper()
	n := atauthtest.NewNetwork(tb)
	accts := make([]atauthtest.Account, len(handles))
	for i, h := range handles {
		a, err := n.CreateAccount(h, h+"-pw")
		if err != nil {
			tb.Fatalf("CreateAccount(%q): %v", h, err)
		}
		accts[i] = a
	}
	return n, accts
}

// Login signs acct in through m with the Manager API, the way the HTTP
// handlers do: StartLogin, consent at the network, HandleCallback. It
// returns the callback's result, whose ExchangeToken is not redeemed yet.
func Login(ctx context.Context, m *atauth.Manager, network *atauthtest.Network, acct atauthtest.Account) (*atauth.CallbackResult, error) {
	start, err := m.StartLogin(ctx, acct.Handle)
	if err != nil {
		return nil, fmt.Errorf("atauth: managertest: StartLogin: %w", err)
	}
	cb, err := network.Approve(ctx, start.AuthURL, acct.Handle, acct.Password)
	if err != nil {
		return nil, fmt.Errorf("atauth: managertest: approving the login: %w", err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		return nil, fmt.Errorf("atauth: managertest: parsing the callback URL: %w", err)
	}
	res, err := m.HandleCallback(ctx, u.Query(), start.FlowCookie)
	if err != nil {
		return nil, fmt.Errorf("atauth: managertest: HandleCallback: %w", err)
	}
	return res, nil
}

// SignIn signs acct in through m and redeems the exchange token as a
// non-browser client would. It returns the session id.
func SignIn(tb testing.TB, m *atauth.Manager, network *atauthtest.Network, acct atauthtest.Account) string {
	tb.Helper()
	ctx := context.Background()
	res, err := Login(ctx, m, network, acct)
	if err != nil {
		tb.Fatalf("signing %s in: %v", acct.Handle, err)
	}
	x, err := m.Exchange(ctx, atauth.ExchangeRequest{Token: res.ExchangeToken})
	if err != nil {
		tb.Fatalf("Exchange: %v", err)
	}
	return x.SessionID
}

// StoreKey returns the Store key of the session id: the hex SHA-256 the
// Manager looks sessions up by.
func StoreKey(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return hex.EncodeToString(sum[:])
}

// managers returns one Manager per Store.
func managers(tb testing.TB, network *atauthtest.Network, stores []atauth.Store) []*atauth.Manager {
	tb.Helper()
	ms := make([]*atauth.Manager, len(stores))
	for i, s := range stores {
		ms[i] = NewManager(tb, network, s)
	}
	return ms
}

// Run runs every Manager-API scenario: RefreshStorm and
// ExchangeContention.
func Run(t *testing.T, stores StoresFunc) {
	t.Run("RefreshStorm", func(t *testing.T) { RefreshStorm(t, stores) })
	t.Run("ExchangeContention", func(t *testing.T) { ExchangeContention(t, stores) })
}

// StormCalls is how many PDS calls RefreshStorm makes at once.
const StormCalls = 1000

// RefreshStorm signs alice in, marks her access token expired, and makes
// StormCalls concurrent PDS calls spread over Instances Managers, each with
// a Store of its own on one backend, against an authorization server that
// ends the whole grant when a refresh token is used twice. Exactly one
// refresh must reach the server, every call must succeed, and the grant
// must survive.
func RefreshStorm(t *testing.T, stores StoresFunc) {
	network, accts := NewNetwork(t, "alice.test")
	alice := accts[0]
	ms := managers(t, network, stores(t, Instances))
	ctx := context.Background()
	id := SignIn(t, ms[0], network, alice)
	s, err := ms[0].SessionByID(ctx, id)
	if err != nil {
		t.Fatalf("SessionByID: %v", err)
	}
	if err := ms[0].MarkAccessTokenExpired(ctx, s); err != nil {
		t.Fatalf("MarkAccessTokenExpired: %v", err)
	}
	before := network.Stats().Refresh

	var failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range StormCalls {
		m := ms[i%len(ms)]
		wg.Go(func() {
			<-start
			s, err := m.SessionByID(ctx, id)
			if err == nil {
				var out struct {
					DID string `json:"did"`
				}
				err = m.PDSClient(s).Query(ctx, "com.atproto.server.getSession", nil, &out)
				if err == nil && out.DID != alice.DID {
					err = fmt.Errorf("atauth: managertest: getSession answered did %q, want %q", out.DID, alice.DID)
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.Do(func() { t.Errorf("a call failed: %v", err) })
			}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d calls over %d Managers in %v", StormCalls, len(ms), time.Since(t0).Round(time.Millisecond))

	if got := network.Stats().Refresh - before; got != 1 {
		t.Errorf("refreshes at the authorization server: got %d, want exactly 1", got)
	}
	if got := failed.Load(); got != 0 {
		t.Errorf("failed calls: got %d, want 0", got)
	}
	if got := network.ActiveGrants(alice.DID); got != 1 {
		t.Errorf("grants after the storm: got %d, want 1", got)
	}
}

// ContentionRedemptions is how many redemptions of one exchange token
// ExchangeContention makes at once.
const ContentionRedemptions = 64

// ExchangeContention mints one exchange token by a real sign-in, then
// redeems it ContentionRedemptions times at once, spread over Instances
// Managers with Stores of their own on one backend. Exactly one redemption
// must get the session; every other must be ErrInvalidExchangeToken.
func ExchangeContention(t *testing.T, stores StoresFunc) {
	network, accts := NewNetwork(t, "alice.test")
	ms := managers(t, network, stores(t, Instances))
	ctx := context.Background()
	res, err := Login(ctx, ms[0], network, accts[0])
	if err != nil {
		t.Fatal(err)
	}
	xt := res.ExchangeToken
	if xt == "" {
		t.Fatal("the callback minted no exchange token")
	}

	results := make([]*atauth.ExchangeResult, ContentionRedemptions)
	errs := make([]error, ContentionRedemptions)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range ContentionRedemptions {
		m := ms[i%len(ms)]
		wg.Go(func() {
			<-start
			results[i], errs[i] = m.Exchange(ctx, atauth.ExchangeRequest{Token: xt})
		})
	}
	close(start)
	wg.Wait()

	var winner *atauth.ExchangeResult
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
			winner = results[i]
		case !errors.Is(err, atauth.ErrInvalidExchangeToken):
			t.Errorf("redemption %d: got %v, want success or ErrInvalidExchangeToken", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("successful redemptions: got %d, want exactly 1", wins)
	}
	if winner.Session.DID != accts[0].DID {
		t.Errorf("winner's session: got DID %q, want %q", winner.Session.DID, accts[0].DID)
	}
	// The session works on every instance, and the token stays spent.
	for i, m := range ms {
		if _, err := m.SessionByID(ctx, winner.SessionID); err != nil {
			t.Errorf("SessionByID on Manager %d: %v", i, err)
		}
		if _, err := m.Exchange(ctx, atauth.ExchangeRequest{Token: xt}); !errors.Is(err, atauth.ErrInvalidExchangeToken) {
			t.Errorf("a later redemption on Manager %d: got %v, want ErrInvalidExchangeToken", i, err)
		}
	}
}
