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
}

func flowKey(state string) string { return "flow:" + hashSecret(state) }

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
	identifier = strings.TrimSpace(identifier)
	if identifier == "" || len(identifier) > maxIdentifierLen {
		return nil, fmt.Errorf("%w: a handle, DID or server URL is required", ErrInvalidInput)
	}
	if strings.HasPrefix(identifier, "https://") || strings.HasPrefix(identifier, "http://") {
		server, err := m.checkServerURL(identifier)
		if err != nil {
			return nil, err
		}
		meta, err := m.oauth.ResolveEntry(ctx, server)
		if err != nil {
			return nil, classifyOAuthErr(err)
		}
		return &target{meta: meta}, nil
	}
	identifier = strings.TrimPrefix(strings.TrimPrefix(identifier, "at://"), "@")
	atid, err := syntax.ParseAtIdentifier(identifier)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not a handle or DID", ErrInvalidInput, identifier)
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
	kind   FlowKind
	target *target
	scopes []string
	prompt string
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
	start, err := m.oauth.PushAuthorization(ctx, oauthclient.AuthRequest{
		Metadata:  p.target.meta,
		Scopes:    p.scopes,
		LoginHint: p.target.loginHint,
		Prompt:    p.prompt,
		State:     state,
		Verifier:  verifier,
		DPoPKey:   key,
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

func (m *Manager) grant(issuer, tokenEndpoint, revocationEndpoint string, key *ecdsa.PrivateKey) oauthclient.Grant {
	return oauthclient.Grant{
		Issuer:             issuer,
		TokenEndpoint:      tokenEndpoint,
		RevocationEndpoint: revocationEndpoint,
		DPoPKey:            key,
	}
}

// CallbackResult is the outcome of a successful callback.
type CallbackResult struct {
	// Kind is the kind of flow the callback finished.
	Kind FlowKind
	// Session is the session the flow created.
	Session *Session
	// ExchangeToken is a one-time token, valid for 60 seconds, that the
	// frontend redeems with Exchange for the session.
	ExchangeToken string
}

// HandleCallback finishes a flow from the authorization server's redirect.
// query is the callback URL's query; flowCookie is the value of the flow
// cookie the browser presented ("" when none). Every error is a
// *CallbackError whose Code says what to tell the user.
//
// The pending flow is consumed before anything else is checked, so a state
// is usable once, whatever the outcome.
func (m *Manager) HandleCallback(ctx context.Context, query url.Values, flowCookie string) (*CallbackResult, error) {
	state := query.Get("state")
	if !validSecret(state) {
		return nil, callbackErr(CodeExpired, fmt.Errorf("%w: missing or malformed state", ErrInvalidInput))
	}
	key := flowKey(state)
	sealed, err := m.store.TakeOnce(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, callbackErr(CodeExpired, errors.New("atauth: unknown, expired or replayed state"))
	}
	if err != nil {
		return nil, callbackErr(CodeServerError, storeErr("take flow", err))
	}
	var flow flowRecord
	if err := m.openJSON(sealed, key, &flow); err != nil {
		return nil, callbackErr(CodeServerError, err)
	}
	if flowCookie == "" || !sameHash(hashSecret(flowCookie), flow.BrowserHash) {
		return nil, callbackErr(CodeBrowserMismatch, errors.New("atauth: callback from another browser than the one that started the flow"))
	}
	if errCode := query.Get("error"); errCode != "" {
		code := CodeServerError
		if errCode == "access_denied" {
			code = CodeAccessDenied
		}
		return nil, &CallbackError{
			Code:        code,
			Description: query.Get("error_description"),
			Err:         fmt.Errorf("atauth: authorization server answered %q", errCode),
		}
	}
	if iss := query.Get("iss"); iss != flow.Issuer {
		return nil, callbackErr(CodeIssuerMismatch, fmt.Errorf("atauth: callback iss %q, want %q", iss, flow.Issuer))
	}
	code := query.Get("code")
	if code == "" {
		return nil, callbackErr(CodeServerError, errors.New("atauth: callback without code"))
	}
	dpopKey, err := oauthclient.ParseDPoPKey(flow.DPoPKey)
	if err != nil {
		return nil, callbackErr(CodeServerError, err)
	}
	grant := m.grant(flow.Issuer, flow.TokenEndpoint, flow.RevocationEndpoint, dpopKey)
	tokens, err := m.oauth.ExchangeCode(ctx, grant, code, flow.Verifier)
	if err != nil {
		return nil, callbackErr(CodeServerError, err)
	}

	handle, pds, err := m.verifyAccount(ctx, &flow, tokens.Sub)
	if err != nil {
		// The grant was issued to the wrong account or by the wrong server:
		// do not leave it alive.
		if rerr := m.oauth.Revoke(ctx, grant, tokens.RefreshToken); rerr != nil {
			m.log.WarnContext(ctx, "atauth: revoking a mismatched grant failed", "err", rerr)
		}
		return nil, err
	}

	now := m.now()
	authMethod := "none"
	if m.confidential {
		authMethod = "private_key_jwt"
	}
	sess, err := m.createSession(ctx, newSession{
		DID:      tokens.Sub,
		Handle:   handle,
		Kind:     KindBrowser,
		Scope:    tokens.Scope,
		Lifetime: m.lifetime,
		Secrets: sessionSecrets{
			PDS:                pds,
			Issuer:             flow.Issuer,
			TokenEndpoint:      flow.TokenEndpoint,
			RevocationEndpoint: flow.RevocationEndpoint,
			AccessToken:        tokens.AccessToken,
			RefreshToken:       tokens.RefreshToken,
			AccessExpiresAt:    tokens.ExpiresAt,
			DPoPKey:            flow.DPoPKey,
			AuthMethod:         authMethod,
			GrantedAt:          now,
		},
	})
	if err != nil {
		return nil, callbackErr(CodeServerError, err)
	}
	xt, err := m.mintExchange(ctx, sess, flow.BrowserHash)
	if err != nil {
		return nil, callbackErr(CodeServerError, err)
	}
	return &CallbackResult{Kind: flow.Kind, Session: sess, ExchangeToken: xt}, nil
}

// verifyAccount checks that the token's sub is the account the flow is for
// and returns its handle and PDS. A flow that knew the DID at its start
// requires the same DID and reuses what it resolved then. A flow that
// started at a server URL resolves sub to its PDS and authorization server,
// and requires the issuer that answered.
func (m *Manager) verifyAccount(ctx context.Context, flow *flowRecord, sub string) (handle, pds string, err error) {
	if flow.ExpectedDID != "" {
		if sub != flow.ExpectedDID {
			return "", "", callbackErr(CodeAccountMismatch, fmt.Errorf("atauth: token sub %q, want %q", sub, flow.ExpectedDID))
		}
		return flow.Handle, flow.PDS, nil
	}
	did, err := syntax.ParseDID(sub)
	if err != nil {
		return "", "", callbackErr(CodeAccountMismatch, fmt.Errorf("atauth: token sub %q is not a DID", sub))
	}
	ident, err := m.resolver.LookupDID(ctx, did)
	if err != nil {
		return "", "", callbackErr(CodeServerError, err)
	}
	issuer, err := m.oauth.ResolveAuthServer(ctx, ident.PDS)
	if err != nil {
		return "", "", callbackErr(CodeServerError, err)
	}
	if issuer != flow.Issuer {
		return "", "", callbackErr(CodeAccountMismatch, fmt.Errorf("atauth: %s is served by %q, but %q issued the token", sub, issuer, flow.Issuer))
	}
	return ident.Handle, ident.PDS, nil
}
