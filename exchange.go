package atauth

import (
	"context"
	"errors"
	"fmt"
)

// exchangeRecord is the sealed record behind an exchange token.
type exchangeRecord struct {
	SessionID   string `json:"session_id"`
	BrowserHash string `json:"browser"`
	Developer   bool   `json:"developer,omitempty"`
}

func exchangeKey(token string) string { return "xchg:" + hashSecret(token) }

// mintExchange stores a one-time exchange token for sess, bound to the
// browser whose flow cookie hashes to browserHash.
func (m *Manager) mintExchange(ctx context.Context, sess *Session, browserHash string) (string, error) {
	token, err := m.newSecret()
	if err != nil {
		return "", err
	}
	key := exchangeKey(token)
	sealed, err := m.sealJSON(exchangeRecord{
		SessionID:   sess.id,
		BrowserHash: browserHash,
		Developer:   sess.Kind == KindDeveloper,
	}, key)
	if err != nil {
		return "", err
	}
	if err := m.store.PutOnce(ctx, key, sealed, m.now().Add(exchangeTTL)); err != nil {
		return "", storeErr("put exchange token", err)
	}
	return token, nil
}

// ExchangeRequest is a redemption of an exchange token.
type ExchangeRequest struct {
	// Token is the exchange token from the callback redirect.
	Token string
	// Browser says the request comes from a browser. A browser must present
	// the flow cookie of the flow that minted the token, so that a
	// forwarded exchange link does not sign another browser in.
	Browser bool
	// FlowCookie is the flow cookie the browser presented.
	FlowCookie string
}

// ExchangeResult is a redeemed exchange token.
type ExchangeResult struct {
	// SessionID is the session's credential.
	SessionID string
	// Session is the session.
	Session *Session
}

// Exchange redeems a one-time exchange token for its session. A token works
// once, for 60 seconds; any attempt spends it. It returns ErrInvalidInput for
// a malformed token and ErrInvalidExchangeToken for an unknown, used, expired
// or foreign one, or one whose session has ended since.
func (m *Manager) Exchange(ctx context.Context, req ExchangeRequest) (*ExchangeResult, error) {
	if !validSecret(req.Token) {
		return nil, fmt.Errorf("%w: malformed exchange token", ErrInvalidInput)
	}
	key := exchangeKey(req.Token)
	sealed, err := m.store.TakeOnce(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrInvalidExchangeToken
	}
	if err != nil {
		return nil, storeErr("take exchange token", err)
	}
	var rec exchangeRecord
	if err := m.openJSON(sealed, key, &rec); err != nil {
		return nil, err
	}
	if req.Browser && !rec.Developer && !flowCookieMatches(req.FlowCookie, rec.BrowserHash) {
		return nil, ErrInvalidExchangeToken
	}
	sess, err := m.SessionByID(ctx, rec.SessionID)
	if errors.Is(err, ErrInvalidSession) {
		return nil, ErrInvalidExchangeToken
	}
	if err != nil {
		return nil, err
	}
	return &ExchangeResult{SessionID: rec.SessionID, Session: sess}, nil
}
