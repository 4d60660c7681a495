package atauth

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"golang.org/x/oauth2"

	"github.com/atauth/atauth/internal/oauthclient"
	"github.com/atauth/atauth/internal/resolve"
)

// FlowKind says what an authorization flow is for. The callback dispatches on
// it.
type FlowKind string

// Flow kinds.
const (
	// FlowLogin signs a browser in.
	FlowLogin FlowKind = "login"
	// FlowCreateAccount creates an account at a PDS and signs it in.
	FlowCreateAccount FlowKind = "create"
	// FlowAddAccount signs another account into the browser's group.
	FlowAddAccount FlowKind = "add-account"
	// FlowScopeUpgrade replaces a session's grant with a broader one.
	FlowScopeUpgrade FlowKind = "scope-upgrade"
	// FlowDeveloperToken mints a developer token with its own grant.
	FlowDeveloperToken FlowKind = "dev-token"
)

// maxIdentifierLen caps what a user may type as an identifier: a handle is
// at most 253 characters, a DID at most 2 KiB, a URL a little more.
const maxIdentifierLen = 2048

// FlowStart is the result of starting a flow.
type FlowStart struct {
	// AuthURL is where to send the browser: the authorization server's
	// authorization endpoint.
	AuthURL string
	// FlowCookie is the value of the flow cookie that binds the flow to the
	// browser that started it. The handlers set it; an app that calls the
	// Manager directly must set it as an HttpOnly cookie and pass it back
	// to HandleCallback and Exchange.
	FlowCookie string
}

// flowRecord is the sealed pending-flow record, keyed by the hash of state.
type flowRecord struct {
	Kind               FlowKind  `json:"kind"`
	Issuer             string    `json:"iss"`
	TokenEndpoint      string    `json:"token_endpoint"`
	RevocationEndpoint string    `json:"revocation_endpoint,omitempty"`
	Verifier           string    `json:"verifier"`
	DPoPKey            []byte    `json:"dpop_key"`
	ExpectedDID        string    `json:"did,omitempty"`
	Handle             string    `json:"handle,omitempty"`
	PDS                string    `json:"pds,omitempty"`
	Scopes             []string  `json:"scopes"`
	BrowserHash        string    `json:"browser"`
	CreatedAt          time.Time `json:"created_at"`
	// Initiator is the store key of the session that started an
	// add-account, upgrade or developer-token flow.
	Initiator string `json:"initiator,omitempty"`
	// GroupID is the initiator's group when an add-account flow started.
	GroupID string `json:"group,omitempty"`
	// TokenName and TokenLifetime describe the developer token to mint.
	TokenName     string        `json:"token_name,omitempty"`
	TokenLifetime time.Duration `json:"token_lifetime,omitempty"`
	// ClientKeyID is the client key the flow's requests are signed with.
	ClientKeyID string `json:"client_kid,omitempty"`
}

func flowKey(state string) string { return "flow:" + hashSecret(state) }

// maxFlowNonces is how many flows one browser may have under way at once
// (sign-in in one tab, adding an account in another): the flow cookie holds
// their nonces, newest first, separated by dots.
const maxFlowNonces = 3

// flowNonces returns the well-formed nonces of a flow cookie's value.
func flowNonces(cookie string) []string {
	var out []string
	for _, n := range strings.SplitN(cookie, ".", maxFlowNonces+1) {
		if validSecret(n) && len(out) < maxFlowNonces {
			out = append(out, n)
		}
	}
	return out
}

// flowCookieMatches reports whether one of the cookie's nonces is the one
// whose hash a flow recorded.
func flowCookieMatches(cookie, browserHash string) bool {
	for _, n := range flowNonces(cookie) {
		if sameHash(hashSecret(n), browserHash) {
			return true
		}
	}
	return false
}

// StartLogin starts signing in the account named by identifier: a handle
// (with or without a leading @), a DID, or the https URL of a PDS or entryway,
// where the user then picks the account. It resolves the account, discovers
// its authorization server, pushes the authorization request, and records
// the pending flow.
func (m *Manager) StartLogin(ctx context.Context, identifier string) (*FlowStart, error) {
	target, err := m.resolveTarget(ctx, identifier)
	if err != nil {
		return nil, err
	}
	return m.startFlow(ctx, flowParams{kind: FlowLogin, target: target, scopes: m.loginScopes})
}

// target is where a flow signs in: the authorization server, and the account
// when it is known before the flow.
type target struct {
	meta      *oauthclient.ServerMetadata
	did       string
	handle    string
	pds       string
	loginHint string
}

// resolveTarget resolves identifier to an account and its authorization
// server, or a server URL to its authorization server.
func (m *Manager) resolveTarget(ctx context.Context, identifier string) (*target, error) {
	server, atid, err := m.parseIdentifier(identifier)
	if err != nil {
		return nil, err
	}
	if server != "" {
		meta, err := m.oauth.ResolveEntry(ctx, server)
		if err != nil {
			return nil, classifyOAuthErr(err)
		}
		return &target{meta: meta}, nil
	}
	ident, err := m.resolver.Lookup(ctx, atid)
	if err != nil {
		return nil, classifyResolveErr(err)
	}
	issuer, err := m.oauth.ResolveAuthServer(ctx, ident.PDS)
	if err != nil {
		return nil, classifyOAuthErr(err)
	}
	meta, err := m.oauth.AuthServerMetadata(ctx, issuer)
	if err != nil {
		return nil, classifyOAuthErr(err)
	}
	hint := ident.DID.String()
	if ident.Handle != "" && !atid.IsDID() {
		hint = ident.Handle
	}
	return &target{meta: meta, did: ident.DID.String(), handle: ident.Handle, pds: ident.PDS, loginHint: hint}, nil
}

// parseIdentifier reads what a user typed to sign in: a server URL (its
// origin is returned) or a handle or DID, with an optional leading @ or
// at://. Anything else is ErrInvalidInput.
func (m *Manager) parseIdentifier(identifier string) (server string, atid syntax.AtIdentifier, err error) {
	identifier = strings.TrimSpace(identifier)
	if identifier == "" || len(identifier) > maxIdentifierLen {
		return "", "", fmt.Errorf("%w: a handle, DID or server URL is required", ErrInvalidInput)
	}
	if strings.HasPrefix(identifier, "https://") || strings.HasPrefix(identifier, "http://") {
		server, err := m.checkServerURL(identifier)
		return server, "", err
	}
	identifier = strings.TrimPrefix(strings.TrimPrefix(identifier, "at://"), "@")
	atid, err = syntax.ParseAtIdentifier(identifier)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q is not a handle or DID", ErrInvalidInput, identifier)
	}
	return "", atid, nil
}

// checkServerURL normalizes a PDS or entryway URL to its origin.
func (m *Manager) checkServerURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("%w: %q is not a server URL (https://host)", ErrInvalidInput, raw)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && m.cfg.InsecureAllowLocalNetworks) {
		return "", fmt.Errorf("%w: server URL %q must be https", ErrInvalidInput, raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

func classifyResolveErr(err error) error {
	switch {
	case errors.Is(err, resolve.ErrResolution):
		return fmt.Errorf("%w: %w", ErrUpstream, err)
	default:
		return fmt.Errorf("%w: %w", ErrAccountNotFound, err)
	}
}

func classifyOAuthErr(err error) error {
	switch {
	case errors.Is(err, oauthclient.ErrInvalidMetadata), errors.Is(err, oauthclient.ErrPromptUnsupported):
		return fmt.Errorf("%w: %w", ErrUnsupportedServer, err)
	case errors.Is(err, oauthclient.ErrTransient):
		return fmt.Errorf("%w: %w", ErrUpstream, err)
	default:
		var te *oauthclient.TokenError
		if errors.As(err, &te) && te.StatusCode >= 500 {
			return fmt.Errorf("%w: %w", ErrUpstream, err)
		}
		return fmt.Errorf("%w: %w", ErrUnsupportedServer, err)
	}
}

// flowParams describes a flow to start.
type flowParams struct {
	kind          FlowKind
	target        *target
	scopes        []string
	prompt        string
	initiator     *Session
	tokenName     string
	tokenLifetime time.Duration
}

// startFlow pushes the authorization request and stores the pending flow.
func (m *Manager) startFlow(ctx context.Context, p flowParams) (*FlowStart, error) {
	if err := checkScopes(p.scopes, m.cfg.Scopes); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	state, err := m.newSecret()
	if err != nil {
		return nil, err
	}
	nonce, err := m.newSecret()
	if err != nil {
		return nil, err
	}
	key, err := oauthclient.NewDPoPKey(m.rand)
	if err != nil {
		return nil, err
	}
	keyBytes, err := oauthclient.MarshalDPoPKey(key)
	if err != nil {
		return nil, err
	}
	verifier := oauth2.GenerateVerifier()
	var kid string
	if m.signer != nil {
		// The reference authorization server binds the grant to this key:
		// every later request of the grant is signed with it.
		if kid, err = m.signer.CurrentKeyID(m.now()); err != nil {
			return nil, err
		}
	}
	start, err := m.oauth.PushAuthorization(ctx, oauthclient.AuthRequest{
		ClientKeyID: kid,
		Metadata:    p.target.meta,
		Scopes:      p.scopes,
		LoginHint:   p.target.loginHint,
		Prompt:      p.prompt,
		State:       state,
		Verifier:    verifier,
		DPoPKey:     key,
	})
	if err != nil {
		return nil, classifyOAuthErr(err)
	}
	rec := flowRecord{
		Kind:               p.kind,
		Issuer:             p.target.meta.Issuer,
		TokenEndpoint:      p.target.meta.TokenEndpoint,
		RevocationEndpoint: p.target.meta.RevocationEndpoint,
		Verifier:           verifier,
		DPoPKey:            keyBytes,
		ExpectedDID:        p.target.did,
		Handle:             p.target.handle,
		PDS:                p.target.pds,
		Scopes:             p.scopes,
		BrowserHash:        hashSecret(nonce),
		CreatedAt:          m.now(),
		TokenName:          p.tokenName,
		TokenLifetime:      p.tokenLifetime,
		ClientKeyID:        kid,
	}
	if p.initiator != nil {
		rec.Initiator = p.initiator.storeID
		rec.GroupID = p.initiator.GroupID
	}
	key2 := flowKey(state)
	sealed, err := m.sealJSON(rec, key2)
	if err != nil {
		return nil, err
	}
	if err := m.store.PutOnce(ctx, key2, sealed, m.now().Add(flowTTL)); err != nil {
		return nil, storeErr("put flow", err)
	}
	return &FlowStart{AuthURL: start.AuthURL, FlowCookie: nonce}, nil
}

func (m *Manager) grant(issuer, tokenEndpoint, revocationEndpoint, clientKeyID string, key *ecdsa.PrivateKey) oauthclient.Grant {
	return oauthclient.Grant{
		Issuer:             issuer,
		TokenEndpoint:      tokenEndpoint,
		RevocationEndpoint: revocationEndpoint,
		DPoPKey:            key,
		ClientKeyID:        clientKeyID,
	}
}
