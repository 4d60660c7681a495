package atauth

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/atauth/atauth/internal/oauthclient"
)

// CallbackResult is the outcome of a successful callback.
type CallbackResult struct {
	// Kind is the kind of flow the callback finished.
	Kind FlowKind
	// Session is the session the flow created, or the upgraded session.
	Session *Session
	// ExchangeToken is a one-time token, valid for 60 seconds, that the
	// frontend redeems with Exchange for the session. A scope upgrade keeps
	// the session's id and mints none.
	ExchangeToken string
}

// HandleCallback finishes a flow from the authorization server's redirect,
// whatever its kind: it dispatches on the kind recorded when the flow
// started. query is the callback URL's query; flowCookie is the value of the
// flow cookie the browser presented ("" when none). Every error is a
// *CallbackError whose Code says what to tell the user.
//
// The pending flow is consumed before anything else is checked, so a state
// is usable once, whatever the outcome. A grant the callback obtains but
// cannot use (wrong account, store failure) is revoked.
func (m *Manager) HandleCallback(ctx context.Context, query url.Values, flowCookie string) (*CallbackResult, error) {
	flow, err := m.takeFlow(ctx, query.Get("state"))
	if err != nil {
		return nil, err
	}
	fail := func(code string, err error) *CallbackError {
		return &CallbackError{Code: code, Kind: flow.Kind, Err: err}
	}
	if !flowCookieMatches(flowCookie, flow.BrowserHash) {
		return nil, fail(CodeBrowserMismatch, errors.New("atauth: callback from another browser than the one that started the flow"))
	}
	if errCode := query.Get("error"); errCode != "" {
		code := CodeServerError
		// A refused upgrade may come back as invalid_scope: the user
		// declined part of what was asked.
		if errCode == "access_denied" || (flow.Kind == FlowScopeUpgrade && errCode == "invalid_scope") {
			code = CodeAccessDenied
		}
		e := fail(code, fmt.Errorf("atauth: authorization server answered %q", errCode))
		e.Description = query.Get("error_description")
		return nil, e
	}
	if iss := query.Get("iss"); iss != flow.Issuer {
		return nil, fail(CodeIssuerMismatch, fmt.Errorf("atauth: callback iss %q, want %q", iss, flow.Issuer))
	}
	code := query.Get("code")
	if code == "" {
		return nil, fail(CodeServerError, errors.New("atauth: callback without code"))
	}
	dpopKey, err := oauthclient.ParseDPoPKey(flow.DPoPKey)
	if err != nil {
		return nil, fail(CodeServerError, err)
	}
	grant := m.grant(flow.Issuer, flow.TokenEndpoint, flow.RevocationEndpoint, flow.ClientKeyID, dpopKey)
	tokens, err := m.oauth.ExchangeCode(ctx, grant, code, flow.Verifier)
	if err != nil {
		return nil, fail(CodeServerError, err)
	}
	// From here on a grant exists: every failure revokes it.
	abandon := func(err error) (*CallbackResult, error) {
		m.revokeToken(ctx, grant, tokens.RefreshToken, tokens.Sub)
		var ce *CallbackError
		if !errors.As(err, &ce) {
			ce = &CallbackError{Code: CodeServerError, Err: err}
		}
		ce.Kind = flow.Kind
		return nil, ce
	}

	handle, pds, err := m.verifyAccount(ctx, flow, tokens.Sub)
	if err != nil {
		return abandon(err)
	}
	secrets := m.newSecrets(flow, tokens, pds)

	var sess *Session
	switch flow.Kind {
	case FlowLogin, FlowCreateAccount:
		sess, err = m.createSession(ctx, newSession{DID: tokens.Sub, Handle: handle, Kind: KindBrowser, Scope: tokens.Scope, Lifetime: m.lifetime, Secrets: secrets})
	case FlowAddAccount:
		sess, err = m.finishAddAccount(ctx, flow, newSession{DID: tokens.Sub, Handle: handle, Kind: KindBrowser, Scope: tokens.Scope, Lifetime: m.lifetime, Secrets: secrets})
	case FlowDeveloperToken:
		sess, err = m.createSession(ctx, newSession{DID: tokens.Sub, Handle: handle, Kind: KindDeveloper, Name: flow.TokenName, Scope: tokens.Scope, Lifetime: flow.TokenLifetime, Secrets: secrets})
	case FlowScopeUpgrade:
		sess, err = m.finishUpgrade(ctx, flow, tokens.Scope, secrets)
	default:
		err = fmt.Errorf("atauth: unknown flow kind %q", flow.Kind)
	}
	if err != nil {
		return abandon(err)
	}

	if err := m.flowCompleted(ctx, flow.Kind, sess); err != nil {
		if flow.Kind != FlowScopeUpgrade {
			// Nothing half-done: the hook refused the new session.
			m.endSessionByKey(ctx, sess.storeID)
		}
		return nil, fail(CodeServerError, err)
	}
	if flow.Kind == FlowScopeUpgrade {
		return &CallbackResult{Kind: flow.Kind, Session: sess}, nil
	}
	xt, err := m.mintExchange(ctx, sess, flow.BrowserHash)
	if err != nil {
		m.endSessionByKey(ctx, sess.storeID)
		return nil, fail(CodeServerError, err)
	}
	return &CallbackResult{Kind: flow.Kind, Session: sess, ExchangeToken: xt}, nil
}

// takeFlow consumes and opens the pending flow of state.
func (m *Manager) takeFlow(ctx context.Context, state string) (*flowRecord, error) {
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
	return &flow, nil
}

func (m *Manager) newSecrets(flow *flowRecord, tokens *oauthclient.TokenSet, pds string) sessionSecrets {
	authMethod := "none"
	if m.confidential {
		authMethod = "private_key_jwt"
	}
	return sessionSecrets{
		PDS:                pds,
		Issuer:             flow.Issuer,
		TokenEndpoint:      flow.TokenEndpoint,
		RevocationEndpoint: flow.RevocationEndpoint,
		AccessToken:        tokens.AccessToken,
		RefreshToken:       tokens.RefreshToken,
		AccessExpiresAt:    tokens.ExpiresAt,
		DPoPKey:            flow.DPoPKey,
		AuthMethod:         authMethod,
		ClientKeyID:        flow.ClientKeyID,
		GrantedAt:          m.now(),
	}
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

// revokeToken revokes one token of a grant, best effort.
func (m *Manager) revokeToken(ctx context.Context, grant oauthclient.Grant, token, did string) {
	if token == "" || grant.RevocationEndpoint == "" {
		return
	}
	if err := m.oauth.Revoke(ctx, grant, token); err != nil {
		m.log.WarnContext(ctx, "atauth: revocation failed", "did", did, "issuer", grant.Issuer, "err", err)
		m.emit(ctx, Event{Type: EventRevocationFailed, DID: did, Err: err})
	}
}
