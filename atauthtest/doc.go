// Package atauthtest runs an in-process ATProto network for tests and demos:
// an identity directory (like plc.directory), a PDS and an OAuth
// authorization server, each a real HTTP server on 127.0.0.1. It is not for
// production: accounts, passwords and tokens live in memory (or, with
// [WithStateFile], in a JSON file), passwords are stored in clear, and the
// authorization server trusts client metadata served over plain http from
// loopback addresses.
//
// The authorization server is strict in the way Bluesky's reference
// (@atproto/oauth-provider) is: pushed authorization requests only, PKCE
// S256, DPoP (ES256) with server nonces on every endpoint, single-use and
// rotating refresh tokens whose reuse ends the whole grant, and
// private_key_jwt client assertions for confidential clients. It verifies
// clients with its own JOSE code (github.com/lestrrat-go/jwx), never with
// atauth's, so a bug in one cannot hide in the other.
//
// # Using it in a test
//
// [NewNetwork] starts a network that stops when the test ends. Point the
// client under test at [Network.PLCURL] for DID documents and at
// [Network.HandleResolverURL] for handles (".test" handles cannot resolve
// through DNS), and allow http for loopback hosts. When the client redirects
// the browser, hand that URL to [Network.Approve] (or [Network.Deny]) to get
// the callback URL the browser would land on:
//
//	func TestLogin(t *testing.T) {
//		network := atauthtest.NewNetwork(t)
//		alice, err := network.CreateAccount("alice.test", "hunter22")
//		if err != nil {
//			t.Fatal(err)
//		}
//		m, err := atauth.New(atauth.Config{
//			RedirectURL:                "http://127.0.0.1:8080/auth/callback",
//			SealingKeys:                []atauth.SealingKey{{ID: "k1", Secret: testKey}},
//			Store:                      memstore.New(),
//			PLCURL:                     network.PLCURL(),
//			HandleResolverURL:          network.HandleResolverURL(),
//			InsecureAllowLocalNetworks: true,
//		})
//		if err != nil {
//			t.Fatal(err)
//		}
//		start, err := m.StartLogin(t.Context(), alice.Handle) // the client does PAR
//		if err != nil {
//			t.Fatal(err)
//		}
//		callback, err := network.Approve(t.Context(), start.AuthURL, alice.Handle, alice.Password)
//		if err != nil {
//			t.Fatal(err)
//		}
//		u, _ := url.Parse(callback)
//		res, err := m.HandleCallback(t.Context(), u.Query(), start.FlowCookie) // code → tokens
//		if err != nil {
//			t.Fatal(err)
//		}
//		if res.Session.DID != alice.DID {
//			t.Errorf("got DID %q, want %q", res.Session.DID, alice.DID)
//		}
//	}
//
// Over HTTP, drive the app's /auth/start and /auth/callback with a
// cookie-keeping client instead, and hand the Location of /auth/start to
// Approve. The package's Example runs this flow.
//
// # Fault knobs
//
// Methods such as [Network.ForceNonceChallenge], [Network.ExpireAccessTokens],
// [Network.FailNext], [Network.SetWrongIssuer] and [Network.SetWrongSub]
// inject the failures a real deployment produces, and [Network.Stats],
// [Network.LastPAR] and [Network.ActiveGrants] let a test observe what the
// client did. All methods are safe for concurrent use.
//
// # Keeping state across restarts
//
// A demo that should survive a restart starts its network with
// [WithStateFile]. The accounts, the authorization server's key, the live
// grants and the ports are saved on every change and restored by the next
// Start, so a session made before the restart still refreshes after it:
//
//	network, err := atauthtest.Start(atauthtest.WithStateFile(filepath.Join(dataDir, "network.json")))
//
// # Endpoints
//
// The identity directory answers GET /{did}. The PDS serves
// /.well-known/oauth-protected-resource, /.well-known/atproto-did (by Host
// header), com.atproto.identity.resolveHandle and
// com.atproto.server.getSession. The authorization server, on its own
// origin, serves /.well-known/oauth-authorization-server, /oauth/par,
// /oauth/authorize (an HTML page a person can use in a browser),
// /oauth/token, /oauth/revoke and /oauth/jwks.
package atauthtest
