package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/identity"

	"github.com/atauth/atauth/storeadapters/memstore"
)

// newIndigo returns indigo's ClientApp for a public client of fakeNet, as
// its documentation sets one up, with every HTTP client replaced by hc and
// the default cached directory rebuilt on hc: handles resolve through
// https://{handle}/.well-known/atproto-did (DNS is skipped for .test) and
// DIDs through the fake PLC.
func newIndigo(hc *http.Client, store oauth.ClientAuthStore) *oauth.ClientApp {
	cfg := oauth.NewPublicConfig("https://app.test/oauth-client-metadata.json", "https://app.test/oauth/callback", scopes)
	app := oauth.NewClientApp(&cfg, store)
	app.Client = hc
	app.Resolver.Client = hc
	app.Dir = identity.NewCacheDirectory(&identity.BaseDirectory{
		PLCURL:                fakePLC,
		HTTPClient:            *hc,
		SkipDNSDomainSuffixes: []string{".test"},
		UserAgent:             "bench",
	}, 1000, 24*time.Hour, 2*time.Minute, 5*time.Minute)
	return app
}

// indigoLogin signs alice in through app; pause and resume bracket the
// user's consent.
func indigoLogin(ctx context.Context, app *oauth.ClientApp, f *fakeNet, pause, resume func()) (*oauth.ClientSessionData, error) {
	authURL, err := app.StartAuthFlow(ctx, fakeHandle)
	if err != nil {
		return nil, fmt.Errorf("StartAuthFlow: %w", err)
	}
	if pause != nil {
		pause()
	}
	cb, err := f.Approve(authURL)
	if resume != nil {
		resume()
	}
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cb)
	if err != nil {
		return nil, err
	}
	sd, err := app.ProcessCallback(ctx, u.Query())
	if err != nil {
		return nil, fmt.Errorf("ProcessCallback: %w", err)
	}
	return sd, nil
}

// loginFunc signs alice in once; pause and resume bracket the user's
// consent.
type loginFunc func(ctx context.Context, pause, resume func()) error

// loginClient is one client under comparison. setup starts the network
// and returns a maker of fresh clients (empty caches) whose requests go
// through a counter.
type loginClient struct {
	name  string
	setup func(b *testing.B) func() (loginFunc, *countingTransport)
}

func loginClients() []loginClient {
	return []loginClient{
		{"atauth-atauthtest", func(b *testing.B) func() (loginFunc, *countingTransport) {
			network, alice := newAccount(b)
			return func() (loginFunc, *countingTransport) {
				hc, ct := counted(loopbackClient(b))
				m := newManager(b, testConfig(network, memstore.New(), hc))
				return func(ctx context.Context, pause, resume func()) error {
					_, err := login(ctx, m, alice.Handle, approveAt(network, alice), pause, resume)
					return err
				}, ct
			}
		}},
		{"atauth-fake", func(b *testing.B) func() (loginFunc, *countingTransport) {
			f := newFakeNet(b)
			return func() (loginFunc, *countingTransport) {
				hc, ct := counted(f.newClient(b))
				m := newManager(b, fakeConfig(memstore.New(), hc))
				return func(ctx context.Context, pause, resume func()) error {
					_, err := login(ctx, m, fakeHandle, approveFake(f), pause, resume)
					return err
				}, ct
			}
		}},
		{"indigo-fake", func(b *testing.B) func() (loginFunc, *countingTransport) {
			f := newFakeNet(b)
			return func() (loginFunc, *countingTransport) {
				hc, ct := counted(f.newClient(b))
				app := newIndigo(hc, oauth.NewMemStore())
				return func(ctx context.Context, pause, resume func()) error {
					_, err := indigoLogin(ctx, app, f, pause, resume)
					return err
				}, ct
			}
		}},
	}
}

// BenchmarkLogin measures a whole login (start, PAR, the callback's token
// request; the user's consent at the authorization server is outside the
// timer) and the requests the client sends, "requests/op". First is a new
// client's first login to the PDS; Second is a later login by the same
// client.
//
// atauth-atauthtest is atauth against atauthtest. atauth-fake and
// indigo-fake run against fakeNet (see fake_test.go for why indigo cannot
// use atauthtest), on the same TLS transport, so that the two clients meet
// the same server.
func BenchmarkLogin(b *testing.B) {
	ctx := context.Background()
	for _, c := range loginClients() {
		b.Run(c.name, func(b *testing.B) {
			b.Run("First", func(b *testing.B) {
				newClient := c.setup(b)
				var reqs int64
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					login, ct := newClient()
					b.StartTimer()
					if err := login(ctx, b.StopTimer, b.StartTimer); err != nil {
						b.Fatal(err)
					}
					reqs += ct.n.Load()
				}
				b.ReportMetric(float64(reqs)/float64(b.N), "requests/op")
			})
			b.Run("Second", func(b *testing.B) {
				login, ct := c.setup(b)()
				if err := login(ctx, nil, nil); err != nil {
					b.Fatal(err)
				}
				start := ct.n.Load()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := login(ctx, b.StopTimer, b.StartTimer); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(ct.n.Load()-start)/float64(b.N), "requests/op")
			})
		})
	}
}
