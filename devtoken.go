package atauth

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Developer-token limits.
const (
	// MaxDeveloperTokenNameLen is the longest name a developer token may
	// have, in characters.
	MaxDeveloperTokenNameLen = 100
	// DefaultDeveloperTokenDays is a developer token's lifetime when none is
	// asked for, unless the client type allows less.
	DefaultDeveloperTokenDays = 90
	// developerTokenPrefixLen is how many characters of a token are shown
	// and accepted for revocation.
	developerTokenPrefixLen = 8
)

// DeveloperTokenRequest describes a developer token to mint.
type DeveloperTokenRequest struct {
	// Name labels the token in lists; at most 100 characters.
	Name string `json:"name"`
	// ExpiresInDays is the token's lifetime. Nil means the default (90
	// days, or the client type's limit if lower); 0 means the limit.
	ExpiresInDays *int `json:"expires_in_days"`
}

// DeveloperTokenMaxDays returns the longest developer-token lifetime the
// client type allows: the lifetime of the grant the authorization server
// gives (7 days for public clients, 365 for confidential ones).
func (m *Manager) DeveloperTokenMaxDays() int {
	if m.confidential {
		return int(MaxConfidentialSessionLifetime / (24 * time.Hour))
	}
	return int(MaxPublicSessionLifetime / (24 * time.Hour))
}

// StartDeveloperToken starts minting a developer token for s's account: a
// long-lived bearer credential with its own OAuth grant. The user approves
// it at the authorization server; the callback requires the same account.
func (m *Manager) StartDeveloperToken(ctx context.Context, s *Session, req DeveloperTokenRequest) (*FlowStart, error) {
	if err := m.checkManage(s); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(req.Name) > MaxDeveloperTokenNameLen || !utf8.ValidString(req.Name) {
		return nil, fmt.Errorf("%w: name must be at most %d characters", ErrInvalidInput, MaxDeveloperTokenNameLen)
	}
	limit := m.DeveloperTokenMaxDays()
	days := min(DefaultDeveloperTokenDays, limit)
	if req.ExpiresInDays != nil {
		switch d := *req.ExpiresInDays; {
		case d == 0:
			days = limit
		case d < 0 || d > limit:
			return nil, fmt.Errorf("%w: expires_in_days must be between 1 and %d (0 means %d)", ErrInvalidInput, limit, limit)
		default:
			days = d
		}
	}
	target, err := m.targetForSession(ctx, s)
	if err != nil {
		return nil, err
	}
	return m.startFlow(ctx, flowParams{
		kind:          FlowDeveloperToken,
		target:        target,
		scopes:        m.loginScopes,
		initiator:     s,
		tokenName:     req.Name,
		tokenLifetime: time.Duration(days) * 24 * time.Hour,
	})
}

// targetForSession resolves the account of s again, for a flow that must
// come back with the same account.
func (m *Manager) targetForSession(ctx context.Context, s *Session) (*target, error) {
	t, err := m.resolveTarget(ctx, s.DID)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// DeveloperToken describes a developer token without revealing it.
type DeveloperToken struct {
	// Prefix is the token's first 8 characters.
	Prefix    string    `json:"session_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ListDeveloperTokens lists the live developer tokens of s's account,
// oldest first.
func (m *Manager) ListDeveloperTokens(ctx context.Context, s *Session) ([]DeveloperToken, error) {
	if err := m.checkManage(s); err != nil {
		return nil, err
	}
	recs, err := m.store.ListSessionsByDID(ctx, s.DID, KindDeveloper)
	if err != nil {
		return nil, storeErr("list developer tokens", err)
	}
	tokens := make([]DeveloperToken, 0, len(recs))
	for _, rec := range recs {
		if m.live(&rec) {
			tokens = append(tokens, DeveloperToken{Prefix: rec.Prefix, Name: rec.Name, CreatedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt})
		}
	}
	return tokens, nil
}

// RevokeDeveloperToken ends the developer token of s's account that prefix
// names, and revokes its grant. A prefix of 1 to 8 characters matches the
// token's displayed prefix; a longer value must be the whole token. It
// returns ErrNotFound when nothing matches and ErrAmbiguousPrefix when
// several tokens do.
func (m *Manager) RevokeDeveloperToken(ctx context.Context, s *Session, prefix string) error {
	if err := m.checkManage(s); err != nil {
		return err
	}
	if prefix == "" || len(prefix) > encodedSecretLen {
		return fmt.Errorf("%w: no developer token matches", ErrNotFound)
	}
	recs, err := m.store.ListSessionsByDID(ctx, s.DID, KindDeveloper)
	if err != nil {
		return storeErr("list developer tokens", err)
	}
	var match []int
	for i, rec := range recs {
		if len(prefix) <= developerTokenPrefixLen && strings.HasPrefix(rec.Prefix, prefix) ||
			len(prefix) > developerTokenPrefixLen && sameHash(hashSecret(prefix), rec.ID) {
			match = append(match, i)
		}
	}
	switch len(match) {
	case 0:
		return fmt.Errorf("%w: no developer token matches", ErrNotFound)
	case 1:
		return m.endSession(ctx, &recs[match[0]])
	default:
		return ErrAmbiguousPrefix
	}
}
