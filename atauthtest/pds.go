package atauthtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// pdsInstance is one PDS of the network: the main one, or one from AddPDS.
// Its url is set before its server starts serving.
type pdsInstance struct {
	url   string
	nonce *nonceState
}

func (n *Network) pdsHandler(p *pdsInstance) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-protected-resource", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"resource":                 p.url,
			"authorization_servers":    []string{n.IssuerURL()},
			"scopes_supported":         []string{},
			"bearer_methods_supported": []string{"header"},
		})
	})
	mux.HandleFunc("GET /.well-known/atproto-did", n.handleAtprotoDID)
	mux.HandleFunc("GET /xrpc/com.atproto.identity.resolveHandle", n.handleResolveHandle)
	mux.HandleFunc("GET /xrpc/com.atproto.server.getSession", func(w http.ResponseWriter, r *http.Request) { n.handleGetSession(w, r, p) })
	mux.HandleFunc("POST /xrpc/com.atproto.repo.createRecord", func(w http.ResponseWriter, r *http.Request) { n.handleCreateRecord(w, r, p) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/xrpc/") {
			writeXRPCError(w, http.StatusNotImplemented, "MethodNotImplemented", "method not implemented: "+r.URL.Path)
			return
		}
		writeXRPCError(w, http.StatusNotFound, "NotFound", "not found: "+r.URL.Path)
	})
	return mux
}

func writeXRPCError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

// handleAtprotoDID answers the HTTPS well-known handle resolution, keyed by
// the Host header as a PDS serving many handles does.
func (n *Network) handleAtprotoDID(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	n.mu.Lock()
	a := n.byHandle[strings.ToLower(host)]
	n.mu.Unlock()
	if a == nil {
		http.Error(w, "no user by that name", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, a.DID)
}

func (n *Network) handleResolveHandle(w http.ResponseWriter, r *http.Request) {
	handle := r.URL.Query().Get("handle")
	if handle == "" {
		writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", `Error: Params must have the property "handle"`)
		return
	}
	n.mu.Lock()
	a := n.byHandle[strings.ToLower(handle)]
	n.mu.Unlock()
	if a == nil {
		writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", "Unable to resolve handle")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"did": a.DID})
}

// authError is a failed check of a request to the PDS.
type authError struct {
	code, desc string
	status     int // 0 means 401
}

func (e *authError) Error() string { return "atauthtest: pds: " + e.code + ": " + e.desc }

// writeAuthError answers 401 with the RFC 9449 WWW-Authenticate challenge.
func (n *Network) writeAuthError(w http.ResponseWriter, p *pdsInstance, e *authError) {
	if e.status == http.StatusBadRequest {
		// Not an authentication failure: the token is fine, the account is
		// not here.
		writeXRPCError(w, e.status, e.code, e.desc)
		return
	}
	if e.code == "use_dpop_nonce" {
		n.mu.Lock()
		w.Header().Set("DPoP-Nonce", p.nonce.current(n))
		n.mu.Unlock()
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`DPoP algs="ES256", error=%q, error_description=%q`, e.code, e.desc))
	writeXRPCError(w, http.StatusUnauthorized, e.code, e.desc)
}

type accessClaims struct {
	Iss      string `json:"iss"`
	Sub      string `json:"sub"`
	Aud      string `json:"aud"`
	Scope    string `json:"scope"`
	ClientID string `json:"client_id"`
	Exp      int64  `json:"exp"`
	JTI      string `json:"jti"`
	Cnf      struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
}

// authenticate checks a DPoP-bound access token the way an ATProto resource
// server does, and returns the account it grants and the token's scope.
func (n *Network) authenticate(r *http.Request, p *pdsInstance) (*account, string, error) {
	authz := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(authz, " ")
	if !strings.EqualFold(scheme, "DPoP") || token == "" {
		return nil, "", &authError{code: "invalid_token", desc: `an "Authorization: DPoP <token>" header is required`}
	}
	proof, present, err := n.checkDPoP(r, p.url, p.nonce, "pds:", token)
	if err != nil {
		var de *dpopError
		if errors.As(err, &de) {
			return nil, "", &authError{code: de.code(), desc: de.desc}
		}
		return nil, "", err
	}
	if !present {
		return nil, "", &authError{code: "invalid_dpop_proof", desc: "DPoP proof required"}
	}
	payload, err := jws.Verify([]byte(token), jws.WithKey(jwa.ES256, n.publicKey))
	if err != nil {
		return nil, "", &authError{code: "invalid_token", desc: "the access token signature is invalid"}
	}
	var c accessClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, "", &authError{code: "invalid_token", desc: "the access token claims are malformed"}
	}
	now := n.cfg.now()
	switch {
	case c.Iss != n.IssuerURL():
		return nil, "", &authError{code: "invalid_token", desc: "the access token has the wrong issuer"}
	case c.Aud != p.url:
		return nil, "", &authError{code: "invalid_token", desc: "the access token has the wrong audience"}
	case !now.Before(time.Unix(c.Exp, 0)):
		return nil, "", &authError{code: "invalid_token", desc: "\"exp\" claim timestamp check failed"}
	case c.Cnf.JKT == "" || c.Cnf.JKT != proof.jkt:
		return nil, "", &authError{code: "invalid_token", desc: "Invalid DPoP key binding"}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	rec := n.accessTokens[token]
	switch {
	case rec == nil:
		return nil, "", &authError{code: "invalid_token", desc: "unknown access token"}
	case rec.expired:
		return nil, "", &authError{code: "invalid_token", desc: "\"exp\" claim timestamp check failed"}
	case !rec.grant.alive(now):
		return nil, "", &authError{code: "invalid_token", desc: "the grant of this token has ended"}
	}
	a := n.byDID[c.Sub]
	if a == nil {
		return nil, "", &authError{code: "invalid_token", desc: "unknown account"}
	}
	if n.accountPDS(a) != p.url {
		return nil, "", &authError{code: "AccountDeactivated", desc: "the account has moved to another PDS", status: http.StatusBadRequest}
	}
	return a, c.Scope, nil
}

func (n *Network) handleGetSession(w http.ResponseWriter, r *http.Request, p *pdsInstance) {
	a, scope, err := n.authenticate(r, p)
	if err != nil {
		var ae *authError
		if errors.As(err, &ae) {
			n.writeAuthError(w, p, ae)
			return
		}
		writeXRPCError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
		return
	}
	out := map[string]any{
		"did":    a.DID,
		"handle": a.Handle,
		"active": true,
	}
	// As the reference PDS does, the email is shown only to a token granted
	// transition:email.
	if slices.Contains(strings.Fields(scope), "transition:email") {
		out["email"] = strings.SplitN(a.Handle, ".", 2)[0] + "@example.com"
		out["emailConfirmed"] = false
	}
	writeJSON(w, http.StatusOK, out)
}

// handleCreateRecord accepts a record for the caller's repository and
// answers its URI, without storing anything: enough for clients to test
// authenticated procedures with a body.
func (n *Network) handleCreateRecord(w http.ResponseWriter, r *http.Request, p *pdsInstance) {
	a, _, err := n.authenticate(r, p)
	if err != nil {
		var ae *authError
		if errors.As(err, &ae) {
			n.writeAuthError(w, p, ae)
			return
		}
		writeXRPCError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
		return
	}
	var in struct {
		Repo       string          `json:"repo"`
		Collection string          `json:"collection"`
		Record     json.RawMessage `json:"record"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil || in.Collection == "" || len(in.Record) == 0 {
		writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", "repo, collection and record are required")
		return
	}
	if in.Repo != a.DID && in.Repo != a.Handle {
		writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", "repo must be the caller's")
		return
	}
	rkey := n.randomString(8)
	writeJSON(w, http.StatusOK, map[string]any{
		"uri": "at://" + a.DID + "/" + in.Collection + "/" + rkey,
		"cid": "bafyrei" + strings.ToLower(rkey),
	})
}
