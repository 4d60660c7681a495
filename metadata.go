package atauth

import (
	"encoding/json"
	"net/http"
	"strings"
)

// ClientMetadata is the client metadata document ATProto authorization
// servers fetch from the client id URL.
type ClientMetadata struct {
	ClientID                    string   `json:"client_id"`
	ApplicationType             string   `json:"application_type"`
	ClientName                  string   `json:"client_name,omitempty"`
	ClientURI                   string   `json:"client_uri,omitempty"`
	LogoURI                     string   `json:"logo_uri,omitempty"`
	TOSURI                      string   `json:"tos_uri,omitempty"`
	PolicyURI                   string   `json:"policy_uri,omitempty"`
	GrantTypes                  []string `json:"grant_types"`
	ResponseTypes               []string `json:"response_types"`
	Scope                       string   `json:"scope"`
	RedirectURIs                []string `json:"redirect_uris"`
	DPoPBoundAccessTokens       bool     `json:"dpop_bound_access_tokens"`
	TokenEndpointAuthMethod     string   `json:"token_endpoint_auth_method"`
	TokenEndpointAuthSigningAlg string   `json:"token_endpoint_auth_signing_alg,omitempty"`
	JWKSURI                     string   `json:"jwks_uri,omitempty"`
}

// ClientMetadata returns the client's metadata document. Its scope is the
// declared universe, Config.Scopes.
func (m *Manager) ClientMetadata() ClientMetadata {
	md := ClientMetadata{
		ClientID:                m.clientID,
		ApplicationType:         "web",
		ClientName:              m.cfg.ClientName,
		ClientURI:               m.cfg.ClientURI,
		LogoURI:                 m.cfg.LogoURI,
		TOSURI:                  m.cfg.TOSURI,
		PolicyURI:               m.cfg.PolicyURI,
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		Scope:                   strings.Join(m.cfg.Scopes, " "),
		RedirectURIs:            []string{m.cfg.RedirectURL},
		DPoPBoundAccessTokens:   true,
		TokenEndpointAuthMethod: "none",
	}
	if m.confidential {
		md.TokenEndpointAuthMethod = "private_key_jwt"
		md.TokenEndpointAuthSigningAlg = "ES256"
		md.JWKSURI = m.cfg.JWKSURL
	}
	return md
}

// JWKS returns the public keys of a confidential client as a JWKS document:
// every configured key, including those whose NotBefore has not come yet, so
// servers learn a key before it signs. ok is false for a public client.
func (m *Manager) JWKS() (jwks []byte, ok bool) {
	if !m.confidential {
		return nil, false
	}
	b, err := m.signer.PublicJWKS()
	if err != nil {
		return nil, false
	}
	return b, true
}

func (m *Manager) handleClientMetadata(w http.ResponseWriter, r *http.Request) {
	b, err := json.Marshal(m.ClientMetadata())
	if err != nil {
		m.writeErr(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}

func (m *Manager) handleJWKS(w http.ResponseWriter, r *http.Request) {
	b, ok := m.JWKS()
	if !ok {
		writeError(w, http.StatusNotFound, "this client publishes no keys")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}
