package oauthclient

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrInvalidMetadata is wrapped by every *MetadataError: a protected resource
// or authorization server metadata document that fails validation.
var ErrInvalidMetadata = errors.New("atauth: oauth: invalid server metadata")

// ErrPromptUnsupported is returned by PushAuthorization, before any request is
// sent, when the requested prompt is not in the server's
// prompt_values_supported.
var ErrPromptUnsupported = errors.New("atauth: oauth: prompt not supported by authorization server")

// ErrNoRevocationEndpoint is returned by Revoke when the authorization server
// does not advertise a revocation endpoint.
var ErrNoRevocationEndpoint = errors.New("atauth: oauth: authorization server has no revocation endpoint")

// ErrInvalidResponse is wrapped by errors for successful (2xx) responses whose
// body does not meet the protocol: malformed JSON, a token_type other than
// DPoP, a sub that is not a DID, a scope without atproto, a missing
// request_uri.
var ErrInvalidResponse = errors.New("atauth: oauth: invalid response from server")

// ErrResponseTooLarge is wrapped when a response body exceeds the size cap.
var ErrResponseTooLarge = errors.New("atauth: oauth: response body too large")

// ErrTransient marks failures that say nothing about the validity of a grant
// and may succeed when retried: transport errors (including timeouts and
// context cancellation), and HTTP 5xx, 429 and 408 responses. Test for it with
// errors.Is; *TokenError and *HTTPError match it through their Is methods when
// their status code is transient.
var ErrTransient = errors.New("atauth: oauth: transient failure")

// MetadataError reports a metadata document that was fetched but is not
// acceptable. It wraps ErrInvalidMetadata.
type MetadataError struct {
	URL    string // the document's URL
	Reason string
}

// Error implements error.
func (e *MetadataError) Error() string {
	return fmt.Sprintf("atauth: oauth: invalid metadata at %s: %s", e.URL, e.Reason)
}

// Unwrap returns ErrInvalidMetadata.
func (e *MetadataError) Unwrap() error { return ErrInvalidMetadata }

// HTTPError reports an unexpected HTTP status from a metadata fetch.
type HTTPError struct {
	URL        string
	StatusCode int
}

// Error implements error.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("atauth: oauth: GET %s: unexpected status %d", e.URL, e.StatusCode)
}

// Is reports whether target is ErrTransient and the status is transient.
func (e *HTTPError) Is(target error) bool {
	return target == ErrTransient && transientStatus(e.StatusCode)
}

// TokenError is an error response from the PAR, token or revocation endpoint
// (RFC 6749 §5.2). Code is empty when the body was not an RFC 6749 JSON error;
// for a DPoP challenge sent only in WWW-Authenticate, Code comes from there.
//
// Code, Description and URI are chosen by the remote server: treat them as
// untrusted data and escape them before rendering.
type TokenError struct {
	StatusCode  int
	Code        string // "error"
	Description string // "error_description"
	URI         string // "error_uri"
}

// Error implements error. The message contains the server-chosen code and
// description.
func (e *TokenError) Error() string {
	switch {
	case e.Code == "":
		return fmt.Sprintf("atauth: oauth: server responded with HTTP %d", e.StatusCode)
	case e.Description == "":
		return fmt.Sprintf("atauth: oauth: %s (HTTP %d)", e.Code, e.StatusCode)
	default:
		return fmt.Sprintf("atauth: oauth: %s (HTTP %d): %s", e.Code, e.StatusCode, e.Description)
	}
}

// Is reports whether target is ErrTransient and the status is transient, so
// that a 5xx with an RFC 6749 body is both a *TokenError and transient.
func (e *TokenError) Is(target error) bool {
	return target == ErrTransient && transientStatus(e.StatusCode)
}

// IsInvalidGrant reports whether err is, or wraps, a *TokenError with code
// invalid_grant: the code, refresh token or grant is dead.
func IsInvalidGrant(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && te.Code == "invalid_grant"
}

func transientStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// transportError wraps an error from the HTTP client so that it matches both
// ErrTransient and the underlying error (context.Canceled, net.Error, ...).
// The *url.Error from http.Client.Do already names the method and URL.
type transportError struct{ err error }

func (e *transportError) Error() string { return "atauth: oauth: " + e.err.Error() }

func (e *transportError) Unwrap() []error { return []error{ErrTransient, e.err} }
