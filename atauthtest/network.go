package atauthtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Defaults of the network. They follow the reference authorization server
// (@atproto/oauth-provider) where it has a value.
const (
	defaultAccessTokenTTL        = 60 * time.Minute
	defaultPublicSessionLife     = 7 * 24 * time.Hour
	defaultConfidentialSessionLf = 365 * 24 * time.Hour
	defaultNonceRotation         = time.Minute
	parExpiresIn                 = 5 * time.Minute
	codeTTL                      = time.Minute
	clientAssertionMaxAge        = time.Minute
	dpopMaxAge                   = 10 * time.Second
	dpopClockTolerance           = 3 * time.Minute
)

// defaultPromptValues is the prompt_values_supported of the reference AS.
var defaultPromptValues = []string{"none", "login", "consent", "select_account", "create"}

// Option configures a Network built by [NewNetwork] or [Start].
type Option func(*config)

type config struct {
	promptValues   []string
	accessTokenTTL time.Duration
	sessionLife    time.Duration // 0 means the reference defaults per client type
	nonceRotation  time.Duration
	now            func() time.Time
	rand           io.Reader
	stateFile      string
	logger         *slog.Logger
}

// WithPromptValues sets prompt_values_supported in the AS metadata. The
// default is ["none","login","consent","select_account","create"]. An empty
// list omits the field, and the AS then rejects every prompt parameter.
func WithPromptValues(v []string) Option {
	return func(c *config) { c.promptValues = slices.Clone(v) }
}

// WithAccessTokenTTL sets the lifetime of access tokens. The default is 60
// minutes, as in the reference AS.
func WithAccessTokenTTL(d time.Duration) Option {
	return func(c *config) { c.accessTokenTTL = d }
}

// WithSessionLifetime sets the lifetime of every grant (session at the AS).
// By default grants of public clients live 7 days and grants of confidential
// clients 1 year, as in the reference AS.
func WithSessionLifetime(d time.Duration) Option {
	return func(c *config) { c.sessionLife = d }
}

// WithClock sets the clock of the network. It is used for every expiry,
// DPoP iat window, client assertion check and nonce rotation. The default is
// time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithRand sets the source of randomness for identifiers, tokens and nonces.
// It must be safe for concurrent use and must not fail. The default is
// crypto/rand.Reader.
func WithRand(r io.Reader) Option {
	return func(c *config) { c.rand = r }
}

// WithNonceRotation sets how often the DPoP nonces of the AS and the PDS
// rotate. A nonce stays valid for one more period after it is replaced. The
// default is one minute.
func WithNonceRotation(d time.Duration) Option {
	return func(c *config) { c.nonceRotation = d }
}

// WithLogger sets where the network reports what it cannot return as an
// error, such as a state file it failed to save (see [WithStateFile]). The
// default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// Network is an in-process ATProto network: an identity directory (like
// plc.directory), a PDS and an OAuth authorization server, each an HTTP
// server on 127.0.0.1. Its methods are safe for concurrent use.
type Network struct {
	cfg config

	plc, pds, as          *httptest.Server
	plcURL, pdsURL, asURL string // fixed before the servers start

	// client fetches client metadata documents and JWKS; browser drives the
	// authorize page for Approve and Deny. Both have their own transport so
	// Close can drop their idle connections.
	transport *http.Transport
	client    *http.Client

	signingKey jwk.Key // the AS's ES256 key for access tokens
	publicKey  jwk.Key

	mu           sync.Mutex
	accounts     []*account
	byDID        map[string]*account
	byHandle     map[string]*account
	requests     map[string]*authRequest // by request_uri
	codes        map[string]*authCode
	grants       map[string]*grant // by id
	refreshIndex map[string]*grant // current and spent refresh tokens
	accessTokens map[string]*accessRecord
	seenJTI      map[string]time.Time // DPoP proof and client assertion jti → expiry
	asNonce      nonceState
	pdsNonce     nonceState
	extraPDS     []*extraPDS
	stats        Stats
	lastPAR      PARParams
	failNext     int
	latency      time.Duration
	wrongIssuer  bool
	wrongSub     string
	refreshGrace time.Duration
	promptValues []string
}

// NewNetwork starts a network and stops it with t.Cleanup. Setup errors call
// t.Fatal.
func NewNetwork(t testing.TB, opts ...Option) *Network {
	t.Helper()
	n, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// Start starts a network for programs such as demos. The caller must call
// Close. Tests should use [NewNetwork].
func Start(opts ...Option) (*Network, error) {
	cfg := config{
		promptValues:   slices.Clone(defaultPromptValues),
		accessTokenTTL: defaultAccessTokenTTL,
		nonceRotation:  defaultNonceRotation,
		now:            time.Now,
		rand:           rand.Reader,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.accessTokenTTL <= 0 {
		return nil, errors.New("atauthtest: access token TTL must be positive")
	}
	if cfg.nonceRotation <= 0 {
		return nil, errors.New("atauthtest: nonce rotation must be positive")
	}
	if cfg.sessionLife < 0 {
		return nil, errors.New("atauthtest: session lifetime must not be negative")
	}

	// saved is nil without a state file, or before the first save.
	saved, err := loadState(cfg.stateFile)
	if err != nil {
		return nil, err
	}
	var signingKey jwk.Key
	if saved != nil {
		signingKey, err = saved.signingKey()
	} else {
		signingKey, err = newSigningKey(cfg.rand)
	}
	if err != nil {
		return nil, err
	}
	publicKey, err := signingKey.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("atauthtest: signing key: %w", err)
	}

	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	n := &Network{
		cfg:          cfg,
		transport:    transport,
		client:       &http.Client{Transport: transport, Timeout: 10 * time.Second},
		signingKey:   signingKey,
		publicKey:    publicKey,
		byDID:        make(map[string]*account),
		byHandle:     make(map[string]*account),
		requests:     make(map[string]*authRequest),
		codes:        make(map[string]*authCode),
		grants:       make(map[string]*grant),
		refreshIndex: make(map[string]*grant),
		accessTokens: make(map[string]*accessRecord),
		seenJTI:      make(map[string]time.Time),
		promptValues: cfg.promptValues,
	}
	var ports savedPorts
	if saved != nil {
		n.restore(saved)
		ports = saved.Ports
	}
	// The handlers read their own URLs, so every listener exists and every
	// URL is known before any server starts serving.
	n.plc = n.newLoopbackServer("identity directory", ports.PLC, n.countPLC(n.plcHandler()))
	mainPDS := &pdsInstance{nonce: &n.pdsNonce}
	n.pds = n.newLoopbackServer("PDS", ports.PDS, n.serverMiddleware(&n.pdsNonce, &n.stats.PDSRequests, n.pdsHandler(mainPDS)))
	n.as = n.newLoopbackServer("authorization server", ports.AS, n.serverMiddleware(&n.asNonce, &n.stats.ASRequests, n.asHandler()))
	n.plcURL, n.pdsURL, n.asURL = serverURL(n.plc), serverURL(n.pds), serverURL(n.as)
	mainPDS.url = n.pdsURL
	n.plc.Start()
	n.pds.Start()
	n.as.Start()
	if cfg.stateFile != "" {
		// Save at once, so that the key and the ports outlive even a network
		// that never changes, and so that an unwritable file fails Start.
		n.mu.Lock()
		err := n.saveLocked()
		n.mu.Unlock()
		if err != nil {
			n.stop()
			return nil, err
		}
	}
	return n, nil
}

// newSigningKey generates the AS's ES256 key for access tokens.
func newSigningKey(random io.Reader) (jwk.Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), random)
	if err != nil {
		return nil, fmt.Errorf("atauthtest: generating signing key: %w", err)
	}
	key, err := jwk.FromRaw(priv)
	if err != nil {
		return nil, fmt.Errorf("atauthtest: signing key: %w", err)
	}
	if err := key.Set(jwk.KeyIDKey, "as-key-1"); err != nil {
		return nil, fmt.Errorf("atauthtest: signing key: %w", err)
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.ES256); err != nil {
		return nil, fmt.Errorf("atauthtest: signing key: %w", err)
	}
	return key, nil
}

// newLoopbackServer returns an unstarted server listening on 127.0.0.1, on
// port when it is not 0 and still free. A restored network wants its old
// ports back because its URLs are in DID documents and in the sessions
// clients keep; when a port is taken it warns and takes any free one.
func (n *Network) newLoopbackServer(name string, port int, h http.Handler) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	// httptest listens on 127.0.0.1:0 by default; say it anyway because
	// clients rely on loopback addresses only.
	var l net.Listener
	var err error
	if port != 0 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if l, err = net.Listen("tcp", addr); err != nil {
			n.cfg.logger.Warn("atauthtest: the "+name+"'s address before the restart is taken; it moves to a new port, and sessions made before the restart stop working",
				"addr", addr, "err", err)
		}
	}
	if l == nil {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err == nil {
		s.Listener.Close()
		s.Listener = l
	}
	return s
}

func serverURL(s *httptest.Server) string { return "http://" + s.Listener.Addr().String() }

// Close stops all servers of the network. With [WithStateFile] it saves the
// state a last time, in case a save failed earlier. It is safe to call more
// than once.
func (n *Network) Close() {
	n.stop()
	n.mu.Lock()
	n.persistLocked()
	n.mu.Unlock()
}

func (n *Network) stop() {
	n.as.Close()
	n.pds.Close()
	n.mu.Lock()
	extra := n.extraPDS
	n.mu.Unlock()
	for _, p := range extra {
		p.srv.Close()
	}
	n.plc.Close()
	n.transport.CloseIdleConnections()
}

// PLCURL returns the URL of the identity directory. GET {PLCURL}/{did}
// answers the DID document.
func (n *Network) PLCURL() string { return n.plcURL }

// PDSURL returns the origin of the PDS, which is also the OAuth protected
// resource.
func (n *Network) PDSURL() string { return n.pdsURL }

// IssuerURL returns the issuer of the authorization server. It has its own
// origin, separate from the PDS, so clients must follow the protected
// resource metadata.
func (n *Network) IssuerURL() string { return n.asURL }

// HandleResolverURL returns the base URL of an XRPC service that answers
// com.atproto.identity.resolveHandle for the accounts of the network. It is
// the PDS.
func (n *Network) HandleResolverURL() string { return n.pdsURL }

// ForceNonceChallenge makes the next DPoP request to the AS and the next one
// to the PDS fail with a use_dpop_nonce challenge even if its nonce is
// current. The challenge carries a new nonce; older nonces become stale.
func (n *Network) ForceNonceChallenge() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.asNonce.force = true
	n.pdsNonce.force = true
	for _, p := range n.extraPDS {
		p.nonce.force = true
	}
}

// ExpireAccessTokens expires every access token issued so far for did. The
// PDS answers 401 invalid_token to them; the grants stay alive, so refresh
// works.
func (n *Network) ExpireAccessTokens(did string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range n.accessTokens {
		if a.did == did {
			a.expired = true
		}
	}
}

// SetRefreshGrace lets a spent refresh token keep working for d after its
// use, as some deployments do. The default 0 turns the grace off: any reuse
// ends the grant, as in the reference AS. Reuse after the grace ends the grant
// as well.
func (n *Network) SetRefreshGrace(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refreshGrace = d
}

// FailNext makes the next count requests to the AS endpoints (PAR, token,
// revocation and metadata) answer 503 {"error":"server_error"}.
func (n *Network) FailNext(count int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failNext = count
}

// SetLatency makes every request to the AS and the PDS wait d before it is
// handled. A cancelled request stops waiting.
func (n *Network) SetLatency(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.latency = d
}

// SetWrongIssuer makes the authorization redirect carry an iss value that is
// not the issuer, to test that clients check it.
func (n *Network) SetWrongIssuer(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wrongIssuer = on
}

// SetWrongSub makes token responses carry did as sub instead of the real
// account. The access token itself keeps the real sub. An empty did turns the
// fault off.
func (n *Network) SetWrongSub(did string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wrongSub = did
}

// SetPromptValues sets prompt_values_supported in the AS metadata and the
// prompt values PAR accepts. Nil or empty omits the field and rejects every
// prompt.
func (n *Network) SetPromptValues(v []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.promptValues = slices.Clone(v)
}

// Stats counts what the network served.
type Stats struct {
	PAR                   int // successful pushed authorization requests
	AuthorizationCode     int // successful authorization_code grants
	Refresh               int // successful refresh_token grants
	Revoke                int // answered revocation requests
	MetadataFetches       int // AS metadata documents served
	ClientMetadataFetches int // client metadata documents the AS fetched

	ASRequests  int // every HTTP request to the AS, failed ones included
	PDSRequests int // every HTTP request to the PDS
	PLCRequests int // every HTTP request to the identity directory
}

// Stats returns the counters so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// PARParams are the parameters of a pushed authorization request.
type PARParams struct {
	ClientID, RedirectURI, Scope, State, LoginHint, Prompt string
}

// LastPAR returns the parameters of the last successful pushed authorization
// request.
func (n *Network) LastPAR() PARParams {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lastPAR
}

// ActiveGrants returns how many grants (sessions at the AS) are alive for
// did: neither revoked, killed by a replayed refresh token, nor expired.
func (n *Network) ActiveGrants(did string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.cfg.now()
	count := 0
	for _, g := range n.grants {
		if g.did == did && g.alive(now) {
			count++
		}
	}
	return count
}

// serverMiddleware adds what every AS and PDS response shares: latency,
// request counting and the DPoP-Nonce header.
func (n *Network) serverMiddleware(nonce *nonceState, counter *int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		*counter++
		latency := n.latency
		current := nonce.current(n)
		n.mu.Unlock()
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		w.Header().Set("DPoP-Nonce", current)
		next.ServeHTTP(w, r)
	})
}

func (n *Network) countPLC(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.stats.PLCRequests++
		n.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// randomString returns size random bytes, base64url without padding. The
// reader must be safe for concurrent use (see WithRand).
func (n *Network) randomString(size int) string {
	b := make([]byte, size)
	if _, err := io.ReadFull(n.cfg.rand, b); err != nil {
		// Randomness is a setup concern in a test network; an unreadable
		// source leaves no sane way to continue.
		panic(fmt.Sprintf("atauthtest: reading randomness: %v", err))
	}
	return b64(b)
}

var base32Lower = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func (n *Network) newDID() string {
	b := make([]byte, 15)
	if _, err := io.ReadFull(n.cfg.rand, b); err != nil {
		panic(fmt.Sprintf("atauthtest: reading randomness: %v", err))
	}
	return "did:plc:" + strings.ToLower(base32Lower.EncodeToString(b))
}
