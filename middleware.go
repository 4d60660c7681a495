package atauth

import (
	"context"
	"errors"
	"net/http"
)

type contextKey struct{ name string }

func (k *contextKey) String() string { return "atauth context value " + k.name }

var sessionContextKey = &contextKey{"session"}

// SessionFromContext returns the session RequireAuth or OptionalAuth put in
// ctx.
func SessionFromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(sessionContextKey).(*Session)
	return s, ok
}

// ContextWithSession returns a copy of ctx that carries s.
func ContextWithSession(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, sessionContextKey, s)
}

// RequireAuth serves next only for requests with a valid credential, with the
// session in the request's context; others get 401 {"detail": …}.
func (m *Manager) RequireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := m.authenticateOrError(w, r)
		if !ok {
			return
		}
		next.ServeHTTP(w, r.WithContext(ContextWithSession(r.Context(), s)))
	})
}

// OptionalAuth serves next for every request, with the session in the
// context when the request carries a valid credential. An invalid or
// expired credential is treated as none, so a stale cookie does not break a
// public page; a store outage is a 503.
func (m *Manager) OptionalAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Authenticate(r)
		switch {
		case err == nil:
			r = r.WithContext(ContextWithSession(r.Context(), s))
		case errors.Is(err, ErrNoCredential), errors.Is(err, ErrInvalidSession):
		default:
			m.writeErr(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}
