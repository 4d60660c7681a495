package atauth

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxBodyBytes caps request bodies of the auth endpoints.
const maxBodyBytes = 64 << 10

// Handler returns an http.Handler that serves every auth endpoint under
// Config.PathPrefix, plus /oauth-client-metadata.json and
// /.well-known/jwks.json, as docs/HTTP-CONTRACT.md specifies. It refuses
// cross-origin state-changing requests except from the trusted origins and
// answers CORS for exactly those origins. Mount it with Register, or route
// the paths to it yourself.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range m.routes() {
		mux.HandleFunc(r.pattern, r.handler)
	}
	cop := http.NewCrossOriginProtection()
	for _, o := range m.origins {
		// The origins were validated by New.
		_ = cop.AddTrustedOrigin(o)
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return m.cors(cop.Handler(limitBody(noStore(mux))))
}

// Register adds every auth endpoint to mux, routed to Handler.
func (m *Manager) Register(mux *http.ServeMux) {
	h := m.Handler()
	for _, r := range m.routes() {
		mux.Handle(r.pattern, h)
	}
	mux.Handle("OPTIONS "+m.cfg.PathPrefix+"/", h)
}

type route struct {
	pattern string
	handler http.HandlerFunc
}

func (m *Manager) routes() []route {
	p := m.cfg.PathPrefix
	return []route{
		{"GET " + p + "/pds-options", m.handlePDSOptions},
		{"GET " + p + "/start", m.rateLimited(m.handleStart)},
		{"GET " + p + "/callback", m.rateLimited(m.handleCallback)},
		{"POST " + p + "/exchange", m.rateLimited(m.handleExchange)},
		{"GET " + p + "/me", m.handleMe},
		{"POST " + p + "/logout", m.handleLogout},
		{"POST " + p + "/logout-all", m.handleLogoutAll},
		{"POST " + p + "/switch-account", m.handleSwitchAccount},
		{"POST " + p + "/add-account/start", m.rateLimited(m.handleAddAccountStart)},
		{"POST " + p + "/developer-token/start", m.rateLimited(m.handleDeveloperTokenStart)},
		{"GET " + p + "/developer-tokens", m.handleListDeveloperTokens},
		{"DELETE " + p + "/developer-tokens/{prefix}", m.handleRevokeDeveloperToken},
		{"POST " + p + "/scope-upgrade/start", m.rateLimited(m.handleScopeUpgradeStart)},
		{"GET /oauth-client-metadata.json", m.handleClientMetadata},
		{"GET /.well-known/jwks.json", m.handleJWKS},
	}
}

func (m *Manager) handleStart(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	handle, pdsURL := q.Get("handle"), q.Get("pds_url")
	switch {
	case handle != "" && pdsURL != "":
		writeError(w, http.StatusBadRequest, "provide either handle or pds_url, not both")
		return
	case handle == "" && pdsURL == "":
		writeError(w, http.StatusBadRequest, "either handle or pds_url is required")
		return
	}
	var start *FlowStart
	var err error
	if pdsURL != "" {
		start, err = m.StartCreateAccount(r.Context(), pdsURL)
	} else {
		start, err = m.StartLogin(r.Context(), handle)
	}
	if err != nil {
		m.writeErr(w, r, err)
		return
	}
	m.setFlowCookie(w, r, start.FlowCookie)
	http.Redirect(w, r, start.AuthURL, http.StatusSeeOther)
}

// writeErr answers err with the status its sentinel calls for and a
// {"detail"} a user can read. Store and upstream outages are 503; anything
// unexpected is a 500 whose cause goes to the log, not the client.
func (m *Manager) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	detail := strings.TrimPrefix(err.Error(), "atauth: ")
	switch {
	case errors.Is(err, ErrAccountNotFound):
		writeError(w, http.StatusBadRequest, "could not resolve that account; try signing in with your DID or your PDS URL")
	case errors.Is(err, ErrInvalidInput), errors.Is(err, ErrUnsupportedServer),
		errors.Is(err, ErrAlreadyInGroup), errors.Is(err, ErrNoGroup),
		errors.Is(err, ErrAlreadyActive), errors.Is(err, ErrAmbiguousPrefix):
		writeError(w, http.StatusBadRequest, detail)
	case errors.Is(err, ErrSessionExpired):
		writeError(w, http.StatusUnauthorized, "session_expired")
	case errors.Is(err, ErrNoCredential):
		writeError(w, http.StatusUnauthorized, "not authenticated - login required")
	case errors.Is(err, ErrInvalidSession):
		writeError(w, http.StatusUnauthorized, "invalid or expired session")
	case errors.Is(err, ErrForbidden):
		writeError(w, http.StatusForbidden, detail)
	case errors.Is(err, ErrNotInGroup), errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, detail)
	case errors.Is(err, ErrUpstream), errors.Is(err, ErrStoreUnavailable):
		m.log.WarnContext(r.Context(), "atauth: unavailable", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusServiceUnavailable, "service temporarily unavailable, try again")
	default:
		m.log.ErrorContext(r.Context(), "atauth: internal error", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func (m *Manager) handleCallback(w http.ResponseWriter, r *http.Request) {
	flowCookie, _ := cookieValue(r, m.cfg.FlowCookieName)
	res, err := m.HandleCallback(r.Context(), r.URL.Query(), flowCookie)
	q := url.Values{}
	if err != nil {
		ce := &CallbackError{Code: CodeServerError}
		errors.As(err, &ce)
		m.log.InfoContext(r.Context(), "atauth: callback failed", "code", ce.Code, "kind", ce.Kind, "err", err)
		if ce.Kind == FlowScopeUpgrade && ce.Code == CodeAccessDenied {
			q.Set("scope_upgrade_error", "refused")
		} else {
			q.Set("auth_error", ce.Code)
		}
	} else {
		switch res.Kind {
		case FlowScopeUpgrade:
			q.Set("scope_upgraded", "true")
		case FlowAddAccount:
			q.Set("account_added", "true")
		case FlowDeveloperToken:
			q.Set("dev_token", "true")
		}
		if res.ExchangeToken != "" {
			q.Set("exchange_token", res.ExchangeToken)
		}
	}
	http.Redirect(w, r, m.landingURL(q), http.StatusSeeOther)
}

func (m *Manager) landingURL(q url.Values) string {
	return m.cfg.FrontendURL + m.cfg.LandingPath + "?" + q.Encode()
}

type exchangeBody struct {
	ExchangeToken string `json:"exchange_token"`
}

func (m *Manager) handleExchange(w http.ResponseWriter, r *http.Request) {
	var body exchangeBody
	if !decodeJSON(w, r, &body) {
		return
	}
	flowCookie, _ := cookieValue(r, m.cfg.FlowCookieName)
	browser := isBrowser(r)
	res, err := m.Exchange(r.Context(), ExchangeRequest{Token: body.ExchangeToken, Browser: browser, FlowCookie: flowCookie})
	switch {
	case errors.Is(err, ErrInvalidInput):
		writeError(w, http.StatusBadRequest, "malformed exchange token")
		return
	case errors.Is(err, ErrInvalidExchangeToken):
		writeError(w, http.StatusUnauthorized, "invalid, expired, or already used exchange token")
		return
	case err != nil:
		m.writeErr(w, r, err)
		return
	}
	if !browser || res.Session.Kind == KindDeveloper {
		writeJSON(w, http.StatusOK, map[string]any{"session_id": res.SessionID})
		return
	}
	m.setSessionCookie(w, r, res.SessionID, res.Session.ExpiresAt)
	if len(flowNonces(flowCookie)) <= 1 {
		// No other flow of this browser is under way.
		m.clearCookie(w, r, m.cfg.FlowCookieName)
	}
	writeJSON(w, http.StatusOK, map[string]any{"session_id": nil})
}

// isBrowser reports whether r comes from a browser. Every current browser
// sends Sec-Fetch-Site, and Origin with fetch; scripts and CLIs send
// neither. The User-Agent is not consulted: it proves nothing.
func isBrowser(r *http.Request) bool {
	return r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Origin") != ""
}

func (m *Manager) handleMe(w http.ResponseWriter, r *http.Request) {
	s, ok := m.authenticateOrError(w, r)
	if !ok {
		return
	}
	u, err := m.CurrentUser(r.Context(), s)
	if err != nil {
		m.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (m *Manager) handleLogout(w http.ResponseWriter, r *http.Request) {
	s, ok := m.authenticateOrError(w, r)
	if !ok {
		return
	}
	_, bearer := r.Header["Authorization"]
	if target := r.URL.Query().Get("switch_to"); target != "" {
		next, err := m.LogoutAndSwitch(r.Context(), s, target)
		if errors.Is(err, ErrNotInGroup) || errors.Is(err, ErrNoGroup) {
			writeError(w, http.StatusBadRequest, "target account not in session group")
			return
		}
		if errors.Is(err, ErrAlreadyActive) {
			writeError(w, http.StatusBadRequest, "cannot switch to current account")
			return
		}
		if err != nil {
			m.writeErr(w, r, err)
			return
		}
		if !bearer {
			m.setSessionCookie(w, r, next.id, next.ExpiresAt)
		}
		writeJSON(w, http.StatusOK, map[string]Account{"switched_to": {DID: next.DID, Handle: next.Handle}})
		return
	}
	if err := m.Logout(r.Context(), s); err != nil {
		m.writeErr(w, r, err)
		return
	}
	if !bearer {
		m.clearCookie(w, r, m.cfg.CookieName)
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "logged out successfully"})
}

func (m *Manager) handleLogoutAll(w http.ResponseWriter, r *http.Request) {
	s, ok := m.authenticateOrError(w, r)
	if !ok {
		return
	}
	if err := m.LogoutAll(r.Context(), s); err != nil {
		m.writeErr(w, r, err)
		return
	}
	if _, bearer := r.Header["Authorization"]; !bearer {
		m.clearCookie(w, r, m.cfg.CookieName)
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "logged out of all accounts"})
}

type switchBody struct {
	TargetDID string `json:"target_did"`
}

func (m *Manager) handleSwitchAccount(w http.ResponseWriter, r *http.Request) {
	s, ok := m.authenticateOrError(w, r)
	if !ok {
		return
	}
	var body switchBody
	if !decodeJSON(w, r, &body) {
		return
	}
	if body.TargetDID == "" {
		writeError(w, http.StatusBadRequest, "target_did is required")
		return
	}
	next, err := m.SwitchAccount(r.Context(), s, body.TargetDID)
	if err != nil {
		m.writeErr(w, r, err)
		return
	}
	if _, bearer := r.Header["Authorization"]; !bearer {
		m.setSessionCookie(w, r, next.id, next.ExpiresAt)
	}
	writeJSON(w, http.StatusOK, Account{DID: next.DID, Handle: next.Handle})
}

type handleBody struct {
	Handle string `json:"handle"`
}

func (m *Manager) handleAddAccountStart(w http.ResponseWriter, r *http.Request) {
	s, ok := m.authenticateOrError(w, r)
	if !ok {
		return
	}
	var body handleBody
	if !decodeJSON(w, r, &body) {
		return
	}
	start, err := m.StartAddAccount(r.Context(), s, body.Handle)
	m.answerFlowStart(w, r, start, err)
}

func (m *Manager) handleDeveloperTokenStart(w http.ResponseWriter, r *http.Request) {
	s, ok := m.authenticateOrError(w, r)
	if !ok {
		return
	}
	var body DeveloperTokenRequest
	if !decodeJSON(w, r, &body) {
		return
	}
	start, err := m.StartDeveloperToken(r.Context(), s, body)
	m.answerFlowStart(w, r, start, err)
}

func (m *Manager) handleListDeveloperTokens(w http.ResponseWriter, r *http.Request) {
	s, ok := m.authenticateOrError(w, r)
	if !ok {
		return
	}
	tokens, err := m.ListDeveloperTokens(r.Context(), s)
	if err != nil {
		m.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]DeveloperToken{"tokens": tokens})
}

func (m *Manager) handleRevokeDeveloperToken(w http.ResponseWriter, r *http.Request) {
	s, ok := m.authenticateOrError(w, r)
	if !ok {
		return
	}
	if err := m.RevokeDeveloperToken(r.Context(), s, r.PathValue("prefix")); err != nil {
		m.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "developer token revoked"})
}

type scopesBody struct {
	Scopes []string `json:"scopes"`
}

func (m *Manager) handleScopeUpgradeStart(w http.ResponseWriter, r *http.Request) {
	s, ok := m.authenticateOrError(w, r)
	if !ok {
		return
	}
	var body scopesBody
	if !decodeJSON(w, r, &body) {
		return
	}
	start, err := m.StartScopeUpgrade(r.Context(), s, body.Scopes)
	m.answerFlowStart(w, r, start, err)
}

func (m *Manager) handlePDSOptions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, m.PDSOptions())
}

// answerFlowStart answers a flow started by a fetch: the frontend navigates
// to auth_url itself, and the flow cookie binds the flow to this browser.
func (m *Manager) answerFlowStart(w http.ResponseWriter, r *http.Request, start *FlowStart, err error) {
	if err != nil {
		m.writeErr(w, r, err)
		return
	}
	m.setFlowCookie(w, r, start.FlowCookie)
	writeJSON(w, http.StatusOK, map[string]string{"auth_url": start.AuthURL})
}

// authenticateOrError authenticates r or answers 401 (503 when the store is
// down).
func (m *Manager) authenticateOrError(w http.ResponseWriter, r *http.Request) (*Session, bool) {
	s, err := m.Authenticate(r)
	if err != nil {
		m.writeErr(w, r, err)
		return nil, false
	}
	return s, true
}

// Cookies.

// secureCookies reports whether cookies for r need the Secure attribute:
// always, except for an app served over plain http on a loopback host, where
// browsers would drop a Secure cookie.
func secureCookies(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return !(host == "localhost" || isLoopbackIP(strings.Trim(host, "[]")))
}

func (m *Manager) setSessionCookie(w http.ResponseWriter, r *http.Request, id string, expires time.Time) {
	maxAge := int(time.Until(expires).Seconds())
	if now := m.now(); !now.IsZero() {
		maxAge = int(expires.Sub(now).Seconds())
	}
	if maxAge <= 0 {
		maxAge = -1
	}
	http.SetCookie(w, &http.Cookie{
		Name:     m.cfg.CookieName,
		Value:    id,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   secureCookies(r),
		SameSite: http.SameSiteLaxMode,
	})
}

// setFlowCookie adds a flow's nonce to the browser's flow cookie, keeping
// the nonces of its other flows under way.
func (m *Manager) setFlowCookie(w http.ResponseWriter, r *http.Request, nonce string) {
	existing, _ := cookieValue(r, m.cfg.FlowCookieName)
	nonces := append([]string{nonce}, flowNonces(existing)...)
	nonces = nonces[:min(len(nonces), maxFlowNonces)]
	http.SetCookie(w, &http.Cookie{
		Name:     m.cfg.FlowCookieName,
		Value:    strings.Join(nonces, "."),
		Path:     "/",
		MaxAge:   int(flowTTL.Seconds()),
		HttpOnly: true,
		Secure:   secureCookies(r),
		SameSite: http.SameSiteLaxMode,
	})
}

func (m *Manager) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   secureCookies(r),
		SameSite: http.SameSiteLaxMode,
	})
}

// Plumbing.

// cors answers credentialed CORS for exactly the trusted origins.
func (m *Manager) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		trusted := false
		for _, o := range m.origins {
			if origin == o {
				trusted = true
				break
			}
		}
		w.Header().Add("Vary", "Origin")
		if trusted {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if trusted {
				h := w.Header()
				h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
				h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
				h.Set("Access-Control-Max-Age", "600")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// decodeJSON decodes r's body into v, answering 400 or 413 itself when it
// cannot.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("trailing data after the JSON body")
		}
	}
	if err == nil {
		return true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return false
	}
	writeError(w, http.StatusBadRequest, "malformed JSON body")
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]string{"detail": detail})
}
