// Package atauthtest runs an in-process ATProto network for tests and demos:
// an identity directory (like plc.directory), a PDS and an OAuth
// authorization server, each a real HTTP server on 127.0.0.1. It is not for
// production: accounts, passwords and tokens live in memory, passwords are
// stored in clear, and the authorization server trusts client metadata
// served over plain http from loopback addresses.
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
//		net := atauthtest.NewNetwork(t)
//		alice, err := net.CreateAccount("alice.test", "hunter22")
//		if err != nil {
//			t.Fatal(err)
//		}
//		app := newAppUnderTest(t, net.PLCURL(), net.HandleResolverURL())
//
//		authURL := app.StartLogin(t, alice.Handle) // the client does PAR
//		callback, err := net.Approve(t.Context(), authURL, alice.Handle, alice.Password)
//		if err != nil {
//			t.Fatal(err)
//		}
//		session := app.HandleCallback(t, callback) // code → tokens
//		if session.DID != alice.DID {
//			t.Errorf("got DID %q; want %q", session.DID, alice.DID)
//		}
//		if got := net.ActiveGrants(alice.DID); got != 1 {
//			t.Errorf("got %d grants; want 1", got)
//		}
//	}
//
// # Fault knobs
//
// Methods such as [Network.ForceNonceChallenge], [Network.ExpireAccessTokens],
// [Network.FailNext], [Network.SetWrongIssuer] and [Network.SetWrongSub]
// inject the failures a real deployment produces, and [Network.Stats],
// [Network.LastPAR] and [Network.ActiveGrants] let a test observe what the
// client did. All methods are safe for concurrent use.
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
