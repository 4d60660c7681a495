// Package atauth signs users of a Go web backend in with their ATProto
// (Bluesky) account and keeps them signed in.
//
// It speaks ATProto OAuth (pushed authorization requests, PKCE, DPoP-bound
// tokens, confidential or public clients) and manages the sessions an app
// builds on it: one-time exchange tokens that hand a sign-in to the
// frontend, session cookies and bearer tokens, logout that revokes the grant
// at the authorization server. Sessions live in a pluggable Store.
//
// # Quickstart
//
// Create a Manager once and mount its handlers:
//
//	m, err := atauth.New(atauth.Config{
//		ClientID:    "https://app.example.com/oauth-client-metadata.json",
//		RedirectURL: "https://app.example.com/auth/callback",
//		Scopes:      []string{"atproto", "transition:generic"},
//		SealingKeys: []atauth.SealingKey{{ID: "2026-12", Secret: secret32}},
//		Store:       memstore.New(),
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	mux := http.NewServeMux()
//	m.Register(mux) // /auth/…, /oauth-client-metadata.json, /.well-known/jwks.json
//	mux.Handle("GET /api/private", m.RequireAuth(myHandler))
//
// Inside myHandler, SessionFromContext returns the signed-in account.
//
// # Flows
//
// A sign-in starts at GET /auth/start?handle=… (Manager.StartLogin), which
// resolves the handle or DID to the account's PDS and authorization server,
// pushes the authorization request and redirects the browser there. The
// server redirects back to GET /auth/callback (Manager.HandleCallback),
// which checks the response, exchanges the code for DPoP-bound tokens,
// creates a session and redirects to the frontend with a one-time
// exchange_token. The frontend posts it to POST /auth/exchange
// (Manager.Exchange) and receives the session cookie.
//
// The same callback finishes every other flow, dispatching on the kind the
// flow recorded when it started: account creation at an offered PDS
// (StartCreateAccount, prompt=create), adding an account to the browser's
// group (StartAddAccount, then SwitchAccount, LogoutAndSwitch, LogoutAll),
// developer tokens with their own grant (StartDeveloperToken,
// ListDeveloperTokens, RevokeDeveloperToken), and scope upgrades that keep
// the session id (StartScopeUpgrade, RequireScopes). docs/HTTP-CONTRACT.md in
// the repository specifies every endpoint; Config.OnFlowComplete lets the
// app create its own records when a flow completes.
//
// # Calling the user's PDS
//
// PDSClient returns a client for a session's PDS: Query and Procedure for
// XRPC, or an *http.Client. Requests carry the DPoP-bound access token and a
// proof; nonce challenges are answered once, and the nonce is kept in the
// session so another instance starts warm. Tokens are refreshed before they
// expire and when the PDS refuses them. Refresh never loses a grant: one
// refresh per session is in flight in a process, a Store lease serializes
// instances, the session is read again under the lease so a refresh a peer
// already made is not repeated, and the result is written with
// compare-and-swap. A grant the authorization server refuses ends the
// session with ErrSessionExpired (HTTP 401 {"detail": "session_expired"}).
//
// The reference authorization server lets an unused refresh token die
// after 2 days (public clients) or 30 days (confidential ones); sessions end
// then too. RunJanitor purges expired records and refreshes idle sessions
// before that limit; atauth starts no goroutine unless you run it.
//
// # Observability
//
// Config.Logger receives diagnostics and never a secret: session ids,
// tokens, codes and states appear in no log line. Config.OnEvent receives an
// Event for every completed flow, refresh (with its outcome: ok, skipped
// because a peer had refreshed, failed, expired, raced), lease wait, nonce
// retry, failed revocation and store error. Counting them needs no metrics
// library in atauth; with Prometheus, for example:
//
//	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "atauth_refreshes_total"}, []string{"outcome"})
//	cfg.OnEvent = func(ctx context.Context, e atauth.Event) {
//		if e.Type == atauth.EventRefresh {
//			refreshes.WithLabelValues(e.Outcome).Inc()
//		}
//	}
//
// With OpenTelemetry, add e as a span event of trace.SpanFromContext(ctx).
//
// # Security model
//
// Secrets are never stored in the clear. Session ids, exchange tokens and
// OAuth states are 256-bit random values, and the Store only ever sees their
// SHA-256. OAuth tokens, DPoP private keys, PKCE verifiers and the session
// id inside an exchange record are sealed with AES-256-GCM under a keyring
// (Config.SealingKeys): the newest key seals, any key opens, and each
// ciphertext is bound to its record's key.
//
// A flow is bound to the browser that started it: the start sets an HttpOnly
// flow cookie whose hash the pending flow keeps, and the callback and a
// browser's exchange require it. A callback URL or exchange token forwarded
// to another browser signs nobody in. The pending flow is consumed before
// anything else is checked, so a state works once whatever the outcome. The
// callback requires the iss parameter to equal the authorization server that
// the flow started at, and the token's sub to be the account the flow was
// for; a flow started at a server URL resolves sub to its PDS and
// authorization server and requires the same issuer. A mismatched grant is
// revoked.
//
// Session cookies are HttpOnly, SameSite=Lax, host-only, Path=/, and Secure
// except for an app served over plain http on a loopback host. A request's
// credential is its Authorization: Bearer token when that header is present
// and the cookie otherwise; an invalid one is refused, never replaced by the
// other. Browsers never receive a session id in a JSON body: a request is a
// browser's when it carries Sec-Fetch-Site or Origin, which every current
// browser sends with fetch. State-changing requests from other origins than
// the app's own and Config.TrustedOrigins are refused
// (http.CrossOriginProtection), and credentialed CORS is answered for exactly
// those origins. Request bodies are capped at 64 KiB.
//
// Every outbound request (handle and DID resolution, metadata, PAR, token,
// revocation) goes through one HTTP client that refuses loopback, private,
// link-local, CGNAT, multicast and cloud metadata addresses at dial time, so
// a DNS answer cannot redirect it inside the network; it caps response sizes
// and times out. Config.InsecureAllowLocalNetworks lifts these limits, and
// allows http and explicit ports, for development against a local network;
// never set it in production.
//
// # Stores
//
// A Store keeps session records, one-time records (pending flows, exchange
// tokens) and leases. storeadapters/memstore keeps them in memory for one
// process, storeadapters/sqlitestore in a SQLite file (pure Go), and
// storeadapters/pgstore and storeadapters/redisstore in PostgreSQL and
// Redis for several instances. Every Store must pass storetest.Run;
// examples/customstore builds one from scratch on MariaDB.
//
// # Testing an app
//
// Package atauthtest runs an ATProto network (identity directory, PDS and
// authorization server) inside a test, over real HTTP, so an app can test
// its sign-in end to end without the internet.
package atauth
