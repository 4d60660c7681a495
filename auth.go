package atauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/atauth/atauth/internal/oauthclient"
	"github.com/atauth/atauth/internal/resolve"
	"github.com/atauth/atauth/internal/safehttp"
	"github.com/atauth/atauth/internal/scope"
	"github.com/atauth/atauth/internal/seal"
)

// Lifetimes the reference authorization server grants, and atauth's defaults.
const (
	// MaxPublicSessionLifetime is the longest session a public client gets
	// from the reference authorization server.
	MaxPublicSessionLifetime = 7 * 24 * time.Hour
	// MaxConfidentialSessionLifetime is the longest session a confidential
	// client gets from the reference authorization server.
	MaxConfidentialSessionLifetime = 365 * 24 * time.Hour
	// DefaultConfidentialSessionLifetime is the session lifetime of
	// confidential clients when Config.SessionLifetime is zero.
	DefaultConfidentialSessionLifetime = 180 * 24 * time.Hour

	// PublicInactivityLimit and ConfidentialInactivityLimit are how long the
	// reference authorization server keeps an unused grant alive: a refresh
	// token not used within them is dead.
	PublicInactivityLimit       = 2 * 24 * time.Hour
	ConfidentialInactivityLimit = 30 * 24 * time.Hour

	flowTTL     = 10 * time.Minute
	exchangeTTL = 60 * time.Second
)

// SealingKey is a key of the keyring that encrypts secrets at rest.
type SealingKey struct {
	// ID names the key inside every ciphertext it seals: 1 to 16 printable
	// characters, unique in the keyring.
	ID string
	// Secret is 32 random bytes.
	Secret []byte
}

// ClientKey is an ES256 key a confidential client signs its client
// assertions with. All keys are published in the JWKS. A grant stays bound
// to the key that started it (the reference authorization server refuses
// any other), so a key must stay configured until the sessions it started
// have expired.
type ClientKey struct {
	// ID is the key's kid.
	ID string
	// Key is a P-256 private key.
	Key *ecdsa.PrivateKey
	// NotBefore is when the key starts signing. Publish a new key with a
	// NotBefore in the future, so that authorization servers that cache the
	// JWKS know it before it signs. The zero time signs at once.
	NotBefore time.Time
}

// Config configures a Manager. Fields without a documented default are
// required.
type Config struct {
	// ClientID is the URL of the client metadata document, which the
	// handlers serve at /oauth-client-metadata.json, for example
	// https://app.example.com/oauth-client-metadata.json. Leave it empty for
	// a loopback client in local development: RedirectURL must then be
	// http://127.0.0.1:PORT/… or http://[::1]:PORT/…, and the client id is
	// derived from it as ATProto specifies.
	ClientID string

	// RedirectURL is the callback URL, served by the callback handler, for
	// example https://app.example.com/auth/callback.
	RedirectURL string

	// Scopes is the scope universe the client declares in its metadata. It
	// must contain "atproto". The default is ["atproto"].
	Scopes []string

	// LoginScopes are the scopes a sign-in asks for; a subset of Scopes.
	// The default is Scopes.
	LoginScopes []string

	// ClientKeys makes the client confidential (private_key_jwt). Empty
	// means a public client.
	ClientKeys []ClientKey

	// SealingKeys encrypt tokens, DPoP keys and pending flows at rest. The
	// first key seals; every key opens, so adding a new key in front rotates
	// without logging anyone out.
	SealingKeys []SealingKey

	// Store holds sessions and one-time records. Use
	// storeadapters/memstore for one process, or a shared adapter for
	// several.
	Store Store

	// ClientName, ClientURI, LogoURI, TOSURI and PolicyURI are published in
	// the client metadata when set.
	ClientName, ClientURI, LogoURI, TOSURI, PolicyURI string

	// JWKSURL is where the JWKS of a confidential client is published. The
	// default is /.well-known/jwks.json on ClientID's origin.
	JWKSURL string

	// HTTPClient carries every outbound request. The default refuses
	// loopback, private, link-local and metadata addresses at dial time,
	// caps response sizes and times out after 10 seconds. A client you
	// supply is used as is: it is then yours to make safe.
	HTTPClient *http.Client

	// PLCURL is the PLC directory. The default is https://plc.directory.
	PLCURL string

	// HandleResolverURL is an XRPC service whose
	// com.atproto.identity.resolveHandle resolves handles, instead of DNS
	// and HTTPS well-known. Local networks need it for *.test handles.
	HandleResolverURL string

	// InsecureAllowLocalNetworks allows http URLs, explicit ports, and
	// loopback and private addresses for every outbound request and in the
	// authorization server's metadata. It is for development against a
	// local network only: never set it in production, where it would let a
	// user point the server at internal services.
	InsecureAllowLocalNetworks bool

	// SessionLifetime is how long a browser session lasts. The default is
	// 7 days for public clients and 180 days for confidential ones; it may
	// not exceed what the reference authorization server grants (7 days and
	// 365 days).
	SessionLifetime time.Duration

	// AccountCreation enables creating accounts at a PDS
	// (/auth/start?pds_url=). The default is off.
	AccountCreation bool

	// PDSOptions are the PDSs offered for account creation, in the order
	// shown.
	PDSOptions []PDSOption

	// AllowAnyPDS lets account creation start at any https PDS, not only
	// those in PDSOptions. Requests still go through HTTPClient.
	AllowAnyPDS bool

	// DeveloperTokensCanManage lets developer tokens start developer-token,
	// add-account and scope-upgrade flows, list and revoke developer tokens,
	// switch accounts and log out the group. The default refuses them with
	// 403, so that a leaked token cannot mint more tokens or reach a
	// browser's other accounts.
	DeveloperTokensCanManage bool

	// PermissionSets gives the contents of the permission sets the app's
	// include: scopes name (NSID → its permission scopes), so RequireScopes
	// can check them. Authorization servers grant the expanded permissions,
	// not the include: itself, so without this an include: requirement is
	// met only by a grant that names the same include:.
	PermissionSets map[string][]string

	// OnFlowComplete, when set, is called after every completed flow, before
	// the callback answers: create the app's profile row or start a job
	// there. Its error fails the callback (auth_error=server_error) and the
	// new session is ended, except for a scope upgrade, which stays applied.
	OnFlowComplete func(ctx context.Context, e FlowEvent) error

	// FrontendURL is the origin, with an optional path, the callback
	// redirects to. The default is the app's own origin.
	FrontendURL string

	// LandingPath is the path under FrontendURL the callback redirects to.
	// The default is "/".
	LandingPath string

	// TrustedOrigins are frontend origins (scheme://host[:port]) allowed to
	// send cross-origin state-changing requests and to read credentialed
	// CORS responses. FrontendURL's origin is always trusted.
	TrustedOrigins []string

	// RateLimiter limits the unauthenticated endpoints and the flow
	// starters per client address. The default is a TokenBucket of
	// DefaultRateLimitPerMinute requests a minute with bursts of
	// DefaultRateLimitBurst; NoRateLimit turns limiting off.
	RateLimiter RateLimiter

	// TrustedProxies are the CIDR prefixes of reverse proxies whose
	// X-Forwarded-For names the client. Without them the client is the TCP
	// peer, and X-Forwarded-For is ignored, since anyone can send it.
	TrustedProxies []string

	// PathPrefix is where the auth endpoints live. The default is "/auth".
	PathPrefix string

	// CookieName is the session cookie's name. The default is "session_id".
	CookieName string

	// FlowCookieName is the name of the cookie that binds a sign-in to the
	// browser that started it. The default is "atauth_flow".
	FlowCookieName string

	// InactivityLimit is how long a session lasts without its grant being
	// used (a refresh): the authorization server lets an unused refresh
	// token die after it. The default is the reference server's: 2 days for
	// public clients, 30 days for confidential ones. The janitor
	// (RunJanitor) refreshes idle sessions before it; without the janitor
	// an app that never calls the PDS sees idle sessions end after it.
	InactivityLimit time.Duration

	// RefreshSkew is how long before its expiry an access token is
	// refreshed. The default is 5 minutes.
	RefreshSkew time.Duration

	// RefreshTimeout bounds one refresh request to the authorization
	// server. The refresh lease outlives it. The default is 15 seconds.
	RefreshTimeout time.Duration

	// OnEvent, when set, receives an Event for each login, refresh,
	// revocation failure, nonce retry, lease wait and store error: wire it
	// to metrics or traces. It must not block.
	OnEvent func(ctx context.Context, e Event)

	// HandleRefreshInterval is how often CurrentUser verifies an account's
	// handle again from its DID document, so that a handle change shows
	// within this interval. The default is 10 minutes; a negative value
	// never re-verifies.
	HandleRefreshInterval time.Duration

	// MetadataTTL is how long authorization server and protected resource
	// metadata are cached. The default is 10 minutes.
	MetadataTTL time.Duration

	// UserAgent is sent with outbound requests. The default is "atauth".
	UserAgent string

	// Now returns the current time. The default is time.Now.
	Now func() time.Time

	// Rand is the source of randomness for ids, tokens and keys. The
	// default is crypto/rand.Reader.
	Rand io.Reader

	// Logger receives diagnostics. It never receives secrets. The default
	// discards them.
	Logger *slog.Logger
}

// Manager signs users in with ATProto OAuth and manages their sessions. It is
// safe for concurrent use. Create it with New.
type Manager struct {
	cfg          Config
	store        Store
	keyring      *seal.Keyring
	oauth        *oauthclient.Client
	resolver     *resolve.Resolver
	now          func() time.Time
	rand         io.Reader
	log          *slog.Logger
	clientID     string
	confidential bool
	signer       *oauthclient.KeySigner
	lifetime     time.Duration
	loginScopes  []string
	origins      []string
	permSets     map[string][]scope.Scope
	handles      handleCache
	http         *http.Client
	refreshes    singleflight.Group
	limiter      RateLimiter
	proxies      []netip.Prefix
}

// New validates cfg and returns a Manager. It fails early on any setup that
// could not work or would be unsafe.
func New(cfg Config) (*Manager, error) {
	if err := applyDefaults(&cfg); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:         cfg,
		store:       cfg.Store,
		now:         cfg.Now,
		rand:        cfg.Rand,
		log:         cfg.Logger,
		loginScopes: cfg.LoginScopes,
	}
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: Store is required", ErrInvalidConfig)
	}
	keys := make([]seal.Key, len(cfg.SealingKeys))
	for i, k := range cfg.SealingKeys {
		keys[i] = seal.Key{ID: k.ID, Secret: k.Secret}
	}
	kr, err := seal.NewKeyring(keys)
	if err != nil {
		return nil, fmt.Errorf("%w: SealingKeys: %w", ErrInvalidConfig, err)
	}
	kr.Rand = cfg.Rand
	m.keyring = kr

	if err := m.configureClient(); err != nil {
		return nil, err
	}
	if err := m.configureOrigins(); err != nil {
		return nil, err
	}
	m.limiter = cfg.RateLimiter
	if m.limiter == nil {
		m.limiter = NewTokenBucket(DefaultRateLimitPerMinute, DefaultRateLimitBurst, cfg.Now)
	}
	for _, p := range cfg.TrustedProxies {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("%w: TrustedProxies: %w", ErrInvalidConfig, err)
		}
		m.proxies = append(m.proxies, prefix.Masked())
	}
	if err := m.configurePermissionSets(); err != nil {
		return nil, err
	}
	for _, o := range cfg.PDSOptions {
		if _, err := m.checkServerURL(o.URL); err != nil {
			return nil, fmt.Errorf("%w: PDSOptions: %w", ErrInvalidConfig, err)
		}
	}

	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = safehttp.NewClient(safehttp.Options{
			AllowPrivate: cfg.InsecureAllowLocalNetworks,
			UserAgent:    cfg.UserAgent,
		})
	}
	m.http = httpClient
	m.resolver = &resolve.Resolver{
		HTTP:              httpClient,
		PLCURL:            cfg.PLCURL,
		HandleResolverURL: cfg.HandleResolverURL,
		Insecure:          cfg.InsecureAllowLocalNetworks,
		UserAgent:         cfg.UserAgent,
	}
	oc, err := oauthclient.New(oauthclient.Client{
		HTTP:        httpClient,
		ClientID:    m.clientID,
		RedirectURI: cfg.RedirectURL,
		Signer:      m.signer,
		Insecure:    cfg.InsecureAllowLocalNetworks,
		Now:         cfg.Now,
		Rand:        cfg.Rand,
		UserAgent:   cfg.UserAgent,
		MetadataTTL: cfg.MetadataTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	m.oauth = oc
	return m, nil
}

func applyDefaults(cfg *Config) error {
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"atproto"}
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return fmt.Errorf("%w: scope %q is malformed", ErrInvalidConfig, s)
		}
	}
	if !slices.Contains(cfg.Scopes, "atproto") {
		return fmt.Errorf("%w: Scopes must contain \"atproto\"", ErrInvalidConfig)
	}
	if len(cfg.LoginScopes) == 0 {
		cfg.LoginScopes = cfg.Scopes
	}
	if err := checkScopes(cfg.LoginScopes, cfg.Scopes); err != nil {
		return fmt.Errorf("%w: LoginScopes: %w", ErrInvalidConfig, err)
	}
	if !slices.Contains(cfg.LoginScopes, "atproto") {
		return fmt.Errorf("%w: LoginScopes must contain \"atproto\"", ErrInvalidConfig)
	}
	if cfg.PathPrefix == "" {
		cfg.PathPrefix = "/auth"
	}
	if !strings.HasPrefix(cfg.PathPrefix, "/") || strings.HasSuffix(cfg.PathPrefix, "/") || strings.ContainsAny(cfg.PathPrefix, "{}? ") {
		return fmt.Errorf("%w: PathPrefix %q must start with / and not end with /", ErrInvalidConfig, cfg.PathPrefix)
	}
	if cfg.LandingPath == "" {
		cfg.LandingPath = "/"
	}
	if !strings.HasPrefix(cfg.LandingPath, "/") || strings.HasPrefix(cfg.LandingPath, "//") || strings.ContainsAny(cfg.LandingPath, "?#\\") {
		return fmt.Errorf("%w: LandingPath %q must be an absolute path", ErrInvalidConfig, cfg.LandingPath)
	}
	if cfg.CookieName == "" {
		cfg.CookieName = "session_id"
	}
	if cfg.FlowCookieName == "" {
		cfg.FlowCookieName = "atauth_flow"
	}
	for _, name := range []string{cfg.CookieName, cfg.FlowCookieName} {
		if !validCookieName(name) {
			return fmt.Errorf("%w: cookie name %q is not a valid token", ErrInvalidConfig, name)
		}
	}
	if cfg.CookieName == cfg.FlowCookieName {
		return fmt.Errorf("%w: CookieName and FlowCookieName must differ", ErrInvalidConfig)
	}
	if cfg.RefreshSkew == 0 {
		cfg.RefreshSkew = 5 * time.Minute
	}
	if cfg.RefreshTimeout == 0 {
		cfg.RefreshTimeout = 15 * time.Second
	}
	if cfg.RefreshSkew < 0 || cfg.RefreshTimeout < 0 || cfg.InactivityLimit < 0 {
		return fmt.Errorf("%w: RefreshSkew, RefreshTimeout and InactivityLimit must not be negative", ErrInvalidConfig)
	}
	if cfg.HandleRefreshInterval == 0 {
		cfg.HandleRefreshInterval = 10 * time.Minute
	}
	if cfg.MetadataTTL == 0 {
		cfg.MetadataTTL = 10 * time.Minute
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "atauth"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// configureClient decides the client type from ClientID, RedirectURL and
// ClientKeys, and checks that they fit together.
func (m *Manager) configureClient() error {
	cfg := &m.cfg
	redirect, err := url.Parse(cfg.RedirectURL)
	if err != nil || redirect.Host == "" || redirect.Fragment != "" || redirect.User != nil {
		return fmt.Errorf("%w: RedirectURL %q must be an absolute URL", ErrInvalidConfig, cfg.RedirectURL)
	}
	loopbackRedirect := redirect.Scheme == "http" && isLoopbackIP(redirect.Hostname())
	switch {
	case redirect.Scheme == "https":
	case loopbackRedirect:
	case redirect.Scheme == "http" && cfg.InsecureAllowLocalNetworks:
	default:
		return fmt.Errorf("%w: RedirectURL %q must be https (or http on 127.0.0.1 or [::1])", ErrInvalidConfig, cfg.RedirectURL)
	}

	if cfg.ClientID == "" {
		if !loopbackRedirect {
			return fmt.Errorf("%w: ClientID is required unless RedirectURL is on http://127.0.0.1 or http://[::1] (a loopback client)", ErrInvalidConfig)
		}
		if len(cfg.ClientKeys) > 0 {
			return fmt.Errorf("%w: a loopback client is public: it cannot have ClientKeys", ErrInvalidConfig)
		}
		q := url.Values{"redirect_uri": {cfg.RedirectURL}, "scope": {strings.Join(cfg.Scopes, " ")}}
		m.clientID = "http://localhost?" + q.Encode()
	} else {
		u, err := url.Parse(cfg.ClientID)
		if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("%w: ClientID %q must be an absolute URL", ErrInvalidConfig, cfg.ClientID)
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && cfg.InsecureAllowLocalNetworks) {
			return fmt.Errorf("%w: ClientID %q must be https", ErrInvalidConfig, cfg.ClientID)
		}
		m.clientID = cfg.ClientID
	}

	if len(cfg.ClientKeys) > 0 {
		keys := make([]oauthclient.SigningKey, len(cfg.ClientKeys))
		for i, k := range cfg.ClientKeys {
			keys[i] = oauthclient.SigningKey{ID: k.ID, Key: k.Key, NotBefore: k.NotBefore}
		}
		signer, err := oauthclient.NewKeySigner(keys)
		if err != nil {
			return fmt.Errorf("%w: ClientKeys: %w", ErrInvalidConfig, err)
		}
		m.signer = signer
		m.confidential = true
		if cfg.JWKSURL == "" {
			u, _ := url.Parse(cfg.ClientID)
			cfg.JWKSURL = u.Scheme + "://" + u.Host + "/.well-known/jwks.json"
		}
	}

	limit := MaxPublicSessionLifetime
	m.lifetime = MaxPublicSessionLifetime
	if m.confidential {
		limit = MaxConfidentialSessionLifetime
		m.lifetime = DefaultConfidentialSessionLifetime
	}
	if cfg.SessionLifetime < 0 || cfg.SessionLifetime > limit {
		return fmt.Errorf("%w: SessionLifetime %v exceeds the %v the authorization server allows this client type", ErrInvalidConfig, cfg.SessionLifetime, limit)
	}
	if cfg.SessionLifetime > 0 {
		m.lifetime = cfg.SessionLifetime
	}
	if cfg.InactivityLimit == 0 {
		cfg.InactivityLimit = PublicInactivityLimit
		if m.confidential {
			cfg.InactivityLimit = ConfidentialInactivityLimit
		}
	}
	return nil
}

func (m *Manager) configureOrigins() error {
	add := func(raw string) error {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("%w: origin %q must be scheme://host[:port]", ErrInvalidConfig, raw)
		}
		origin := u.Scheme + "://" + u.Host
		if !slices.Contains(m.origins, origin) {
			m.origins = append(m.origins, origin)
		}
		return nil
	}
	if m.cfg.FrontendURL != "" {
		if err := add(m.cfg.FrontendURL); err != nil {
			return err
		}
		m.cfg.FrontendURL = strings.TrimRight(m.cfg.FrontendURL, "/")
	}
	for _, o := range m.cfg.TrustedOrigins {
		if err := add(o); err != nil {
			return err
		}
	}
	return nil
}

// checkScopes reports an error unless every scope in want is in universe.
func checkScopes(want, universe []string) error {
	for _, s := range want {
		if !slices.Contains(universe, s) {
			return fmt.Errorf("scope %q is not declared in Scopes", s)
		}
	}
	return nil
}

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ClientID returns the client_id the Manager sends to authorization servers.
func (m *Manager) ClientID() string { return m.clientID }

func (m *Manager) configurePermissionSets() error {
	m.permSets = make(map[string][]scope.Scope, len(m.cfg.PermissionSets))
	for nsid, perms := range m.cfg.PermissionSets {
		for _, p := range perms {
			sc, err := scope.Parse(p)
			if err != nil {
				return fmt.Errorf("%w: PermissionSets[%q]: %w", ErrInvalidConfig, nsid, err)
			}
			m.permSets[nsid] = append(m.permSets[nsid], sc)
		}
	}
	return nil
}

// permissionSets resolves include: scopes for the scope package.
func (m *Manager) permissionSets(nsid string) ([]scope.Scope, bool) {
	s, ok := m.permSets[nsid]
	return s, ok
}

// grantLifetime is the longest a grant lives at the reference authorization
// server for this client type.
func (m *Manager) grantLifetime() time.Duration {
	if m.confidential {
		return MaxConfidentialSessionLifetime
	}
	return MaxPublicSessionLifetime
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
