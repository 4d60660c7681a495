package atauth

import (
	"errors"
	"fmt"
)

// Errors returned by the Manager. Test for them with errors.Is.
var (
	// ErrInvalidConfig reports a Config that New rejects.
	ErrInvalidConfig = errors.New("atauth: invalid config")

	// ErrInvalidInput reports malformed caller input: an identifier that is
	// neither a handle, a DID nor a server URL, a malformed token, a scope
	// outside the declared universe.
	ErrInvalidInput = errors.New("atauth: invalid input")

	// ErrAccountNotFound reports an identifier that does not resolve to an
	// account with a usable PDS.
	ErrAccountNotFound = errors.New("atauth: account not found")

	// ErrUnsupportedServer reports an authorization server whose metadata
	// does not meet ATProto's requirements or lacks a needed feature, such as
	// a prompt value.
	ErrUnsupportedServer = errors.New("atauth: authorization server not supported")

	// ErrUpstream reports a network failure, timeout or 5xx answer from an
	// identity directory, PDS or authorization server. It is transient.
	ErrUpstream = errors.New("atauth: upstream unavailable")

	// ErrNoCredential reports a request that carries neither a bearer token
	// nor a session cookie.
	ErrNoCredential = errors.New("atauth: no credential")

	// ErrInvalidSession reports a credential that names no live session: it
	// is unknown, expired, or was logged out.
	ErrInvalidSession = errors.New("atauth: invalid or expired session")

	// ErrInvalidExchangeToken reports an exchange token that is unknown,
	// expired, already used, or presented by another browser than the one
	// that started the flow.
	ErrInvalidExchangeToken = errors.New("atauth: invalid, expired or already used exchange token")

	// ErrStoreUnavailable wraps errors from the Store other than ErrNotFound
	// and ErrConflict.
	ErrStoreUnavailable = errors.New("atauth: store unavailable")
)

// Callback error codes. They are the closed set of values the callback
// handler puts in the auth_error query parameter.
const (
	CodeAccessDenied    = "access_denied"
	CodeExpired         = "expired"
	CodeBrowserMismatch = "browser_mismatch"
	CodeIssuerMismatch  = "issuer_mismatch"
	CodeAccountMismatch = "account_mismatch"
	CodeServerError     = "server_error"
)

// CallbackError is the error HandleCallback returns. Code is one of the Code…
// constants; Err is the underlying cause, for logs.
//
// Description carries the authorization server's error_description when
// the server refused the request. It is untrusted input: escape it before
// rendering.
type CallbackError struct {
	Code        string
	Kind        FlowKind
	Description string
	Err         error
}

func (e *CallbackError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("atauth: callback failed (%s): %v", e.Code, e.Err)
	}
	return fmt.Sprintf("atauth: callback failed (%s)", e.Code)
}

func (e *CallbackError) Unwrap() error { return e.Err }

func callbackErr(code string, err error) *CallbackError {
	return &CallbackError{Code: code, Err: err}
}

// Errors of the account and session management methods.
var (
	// ErrForbidden reports an action the credential may not take, such as a
	// developer token managing tokens or groups, or account creation when it
	// is disabled.
	ErrForbidden = errors.New("atauth: not allowed")

	// ErrAlreadyInGroup reports an add-account for an account that is
	// already in the browser's group, the current one included.
	ErrAlreadyInGroup = errors.New("atauth: account already in the session group")

	// ErrNoGroup reports a switch from a session that belongs to no group.
	ErrNoGroup = errors.New("atauth: no session group")

	// ErrNotInGroup reports a switch to an account that is not in the group.
	ErrNotInGroup = errors.New("atauth: target account not in session group")

	// ErrAlreadyActive reports a switch to the current account.
	ErrAlreadyActive = errors.New("atauth: account already active")

	// ErrAmbiguousPrefix reports a developer-token prefix that matches more
	// than one token.
	ErrAmbiguousPrefix = errors.New("atauth: prefix matches more than one token; provide more characters")

	// ErrSessionExpired reports a session that has ended: expired, or its
	// grant refused by the authorization server.
	ErrSessionExpired = errors.New("atauth: session expired")
)
