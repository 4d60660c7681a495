package oauthclient

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/oauth2"
)

// AuthRequest is one authorization request, pushed to the server's PAR
// endpoint (RFC 9126).
type AuthRequest struct {
	// Metadata is the validated metadata of the authorization server.
	Metadata *ServerMetadata
	// Scopes are the requested scopes; they must include atproto.
	Scopes []string
	// LoginHint is an optional handle or DID that pre-fills the sign-in.
	LoginHint string
	// Prompt is an optional prompt value (login, select_account, consent,
	// create, none). It must be in Metadata.PromptValuesSupported.
	Prompt string
	// State is the OAuth state, echoed in the callback.
	State string
	// Verifier is the PKCE code verifier (RFC 7636); the S256 challenge is
	// derived from it. oauth2.GenerateVerifier makes one.
	Verifier string
	// DPoPKey is the P-256 key the grant's tokens will be bound to.
	DPoPKey *ecdsa.PrivateKey
	// ClientKeyID is the kid of the client key to sign with, for a
	// confidential client; the grant's later requests must use the same.
	// Empty means the current key.
	ClientKeyID string
}

// AuthStart is the outcome of a pushed authorization request.
type AuthStart struct {
	// AuthURL is where to send the browser: the authorization endpoint with
	// client_id and request_uri.
	AuthURL string
	// RequestURI is the request_uri the server assigned.
	RequestURI string
	// ExpiresIn is the request_uri's lifetime in seconds (0 if not given).
	ExpiresIn int
}

// parResponse is the body of a successful PAR response (RFC 9126 §2.2).
type parResponse struct {
	RequestURI string `json:"request_uri"`
	ExpiresIn  int    `json:"expires_in"`
}

// PushAuthorization pushes req to the authorization server's PAR endpoint,
// with client authentication and a DPoP proof, and returns the URL to send
// the browser to. A prompt the server does not support fails with
// ErrPromptUnsupported before any request is made.
func (c *Client) PushAuthorization(ctx context.Context, req AuthRequest) (*AuthStart, error) {
	if err := checkAuthRequest(req); err != nil {
		return nil, err
	}
	m := req.Metadata
	form := url.Values{
		"response_type":         {"code"},
		"redirect_uri":          {c.RedirectURI},
		"scope":                 {strings.Join(req.Scopes, " ")},
		"state":                 {req.State},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(req.Verifier)},
		"code_challenge_method": {"S256"},
	}
	if req.LoginHint != "" {
		form.Set("login_hint", req.LoginHint)
	}
	if req.Prompt != "" {
		form.Set("prompt", req.Prompt)
	}
	body, err := c.postForm(ctx, m.PAREndpoint, m.Issuer, req.ClientKeyID, form, req.DPoPKey, func(code int) bool {
		return code == http.StatusOK || code == http.StatusCreated
	})
	if err != nil {
		return nil, err
	}
	var pr parResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		return nil, fmt.Errorf("%w: PAR response: %v", ErrInvalidResponse, err)
	}
	if pr.RequestURI == "" {
		return nil, fmt.Errorf("%w: PAR response has no request_uri", ErrInvalidResponse)
	}
	au, err := url.Parse(m.AuthorizationEndpoint)
	if err != nil {
		return nil, fmt.Errorf("atauth: oauth: authorization_endpoint: %w", err)
	}
	// Keep any query the authorization endpoint already has (RFC 6749 §3.1).
	q := au.Query()
	q.Set("client_id", c.ClientID)
	q.Set("request_uri", pr.RequestURI)
	au.RawQuery = q.Encode()
	return &AuthStart{AuthURL: au.String(), RequestURI: pr.RequestURI, ExpiresIn: pr.ExpiresIn}, nil
}

func checkAuthRequest(req AuthRequest) error {
	switch {
	case req.Metadata == nil:
		return errors.New("atauth: oauth: AuthRequest.Metadata is required")
	case req.Prompt != "" && !req.Metadata.SupportsPrompt(req.Prompt):
		return fmt.Errorf("%w: %q", ErrPromptUnsupported, req.Prompt)
	case !slices.Contains(req.Scopes, "atproto"):
		return errors.New(`atauth: oauth: AuthRequest.Scopes must include "atproto"`)
	case req.State == "":
		return errors.New("atauth: oauth: AuthRequest.State is required")
	case !validVerifier(req.Verifier):
		return errors.New("atauth: oauth: AuthRequest.Verifier is not a valid PKCE code verifier")
	case req.DPoPKey == nil:
		return errors.New("atauth: oauth: AuthRequest.DPoPKey is required")
	}
	return nil
}

// validVerifier checks RFC 7636 §4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, r := range v {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case r == '-', r == '.', r == '_', r == '~':
		default:
			return false
		}
	}
	return true
}
