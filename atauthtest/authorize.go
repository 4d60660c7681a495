package atauthtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// scopeDescriptions explains the scopes on the consent page.
var scopeDescriptions = map[string]string{
	"atproto":              "Identify you by your account (required)",
	"transition:generic":   "Read and write your data, like posts and follows",
	"transition:email":     "See your email address",
	"transition:chat.bsky": "Read and send your direct messages",
}

type scopeView struct{ Name, Description string }

type pageData struct {
	ClientName  string
	ClientID    string
	Scopes      []scopeView
	RequestURI  string
	CSRF        string
	Handle      string
	SignUp      bool
	Error       string
	Action      string
	RedirectURI string
}

var pageTemplate = template.Must(template.New("authorize").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{if .SignUp}}Create an account{{else}}Sign in{{end}} · atauthtest</title>
<style>
 :root { color-scheme: light dark; --accent: #1677ff; --muted: #6b7280; --border: #d1d5db; }
 * { box-sizing: border-box; }
 body { margin: 0; min-height: 100vh; display: grid; place-items: center; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; background: Canvas; color: CanvasText; }
 main { width: min(420px, calc(100% - 2rem)); border: 1px solid var(--border); border-radius: 12px; padding: 1.5rem; }
 h1 { font-size: 1.25rem; margin: 0 0 .25rem; }
 .sub { color: var(--muted); margin: 0 0 1rem; word-break: break-all; font-size: .9rem; }
 .badge { display: inline-block; font-size: .75rem; padding: .1rem .5rem; border-radius: 999px; background: #fde68a; color: #78350f; margin-bottom: 1rem; }
 ul { padding-left: 1.2rem; margin: .25rem 0 1rem; }
 li code { font-size: .85rem; }
 label { display: block; font-weight: 600; margin: .75rem 0 .25rem; }
 input[type=text], input[type=password] { width: 100%; padding: .6rem .7rem; border: 1px solid var(--border); border-radius: 8px; font: inherit; background: Field; color: FieldText; }
 .error { border: 1px solid #ef4444; background: #fee2e2; color: #7f1d1d; border-radius: 8px; padding: .5rem .75rem; margin-bottom: 1rem; }
 /* Approve comes first in the form so the Enter key approves; it is shown on the right. */
 .actions { display: flex; flex-direction: row-reverse; gap: .75rem; margin-top: 1.25rem; }
 button { flex: 1; padding: .65rem; border-radius: 8px; font: inherit; font-weight: 600; cursor: pointer; border: 1px solid var(--border); background: transparent; color: inherit; }
 button.primary { background: var(--accent); border-color: var(--accent); color: white; }
 footer { margin-top: 1rem; font-size: .8rem; color: var(--muted); }
</style>
</head>
<body>
<main>
 <span class="badge">Test network · not a real server</span>
 <h1>{{if .SignUp}}Create an account for {{.ClientName}}{{else}}Sign in to {{.ClientName}}{{end}}</h1>
 <p class="sub">{{.ClientID}}</p>
 {{with .Error}}<div class="error" role="alert">{{.}}</div>{{end}}
 <p>This app asks to:</p>
 <ul>{{range .Scopes}}<li>{{.Description}} <code>{{.Name}}</code></li>{{end}}</ul>
 <form method="post" action="{{.Action}}">
  <input type="hidden" name="request_uri" value="{{.RequestURI}}">
  <input type="hidden" name="csrf" value="{{.CSRF}}">
  {{if .SignUp}}<input type="hidden" name="signup" value="1">{{end}}
  <label for="handle">Handle</label>
  <input id="handle" name="handle" type="text" value="{{.Handle}}" placeholder="alice.test" autocomplete="username" autocapitalize="none" spellcheck="false">
  <label for="password">{{if .SignUp}}Choose a password{{else}}Password{{end}}</label>
  <input id="password" name="password" type="password" autocomplete="{{if .SignUp}}new-password{{else}}current-password{{end}}">
  <div class="actions">
   <button type="submit" name="action" value="approve" class="primary">{{if .SignUp}}Create and approve{{else}}Approve{{end}}</button>
   <button type="submit" name="action" value="deny" formnovalidate>Deny</button>
  </div>
 </form>
 <footer>You will return to {{.RedirectURI}}</footer>
</main>
</body>
</html>
`))

var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorization error · atauthtest</title>
<style>body{font:16px/1.5 system-ui,sans-serif;display:grid;place-items:center;min-height:100vh;margin:0}main{max-width:420px;padding:1.5rem;border:1px solid #ef4444;border-radius:12px}</style>
</head><body><main><h1>Authorization failed</h1><p>{{.}}</p></main></body></html>
`))

func writeErrorPage(w http.ResponseWriter, status int, msg string) {
	var buf bytes.Buffer
	if err := errorTemplate.Execute(&buf, msg); err != nil {
		http.Error(w, html.EscapeString(msg), status)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// pendingRequest returns the live request for uri. The caller holds n.mu.
func (n *Network) pendingRequest(uri, clientID string) (*authRequest, error) {
	req := n.requests[uri]
	switch {
	case req == nil:
		return nil, errors.New("unknown request_uri")
	case req.used:
		return nil, errors.New("this authorization request was already used")
	case !n.cfg.now().Before(req.expires):
		return nil, errors.New("this authorization request expired")
	case clientID != "" && clientID != req.client.id:
		return nil, errors.New("client_id does not match the authorization request")
	}
	return req, nil
}

func (n *Network) renderPage(w http.ResponseWriter, status int, req *authRequest, handle, errMsg string) {
	d := pageData{
		ClientName:  req.client.name(),
		ClientID:    req.client.id,
		RequestURI:  req.uri,
		CSRF:        req.csrf,
		Handle:      handle,
		SignUp:      req.params.Prompt == "create",
		Error:       errMsg,
		Action:      n.IssuerURL() + "/oauth/authorize",
		RedirectURI: req.params.RedirectURI,
	}
	for _, s := range strings.Fields(req.params.Scope) {
		desc := scopeDescriptions[s]
		if desc == "" {
			desc = "Use the permission"
		}
		d.Scopes = append(d.Scopes, scopeView{Name: s, Description: desc})
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		writeErrorPage(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (n *Network) handleAuthorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("request_uri") == "" {
		writeErrorPage(w, http.StatusBadRequest, "This server requires pushed authorization requests: request_uri is missing.")
		return
	}
	n.mu.Lock()
	req, err := n.pendingRequest(q.Get("request_uri"), q.Get("client_id"))
	if err != nil {
		n.mu.Unlock()
		writeErrorPage(w, http.StatusBadRequest, err.Error())
		return
	}
	if q.Get("client_id") == "" {
		n.mu.Unlock()
		writeErrorPage(w, http.StatusBadRequest, "client_id is missing.")
		return
	}
	if req.params.Prompt == "none" {
		// No single sign-on exists here, so a silent request cannot succeed.
		req.used = true
		loc := n.redirectLocked(req, url.Values{
			"error":             {"login_required"},
			"error_description": {"Login is required"},
		})
		n.mu.Unlock()
		http.Redirect(w, r, loc, http.StatusSeeOther)
		return
	}
	handle := req.params.LoginHint
	if a := n.lookupAccount(handle); a != nil {
		handle = a.Handle
	}
	n.mu.Unlock()
	n.renderPage(w, http.StatusOK, req, handle, "")
}

func (n *Network) handleAuthorizeSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeErrorPage(w, http.StatusBadRequest, "Unreadable form.")
		return
	}
	f := r.PostForm
	n.mu.Lock()
	req, err := n.pendingRequest(f.Get("request_uri"), "")
	if err != nil {
		n.mu.Unlock()
		writeErrorPage(w, http.StatusBadRequest, err.Error())
		return
	}
	if f.Get("csrf") == "" || f.Get("csrf") != req.csrf {
		n.mu.Unlock()
		writeErrorPage(w, http.StatusForbidden, "The form is stale or forged (CSRF check failed). Reload the page.")
		return
	}
	n.mu.Unlock()

	handle, password := strings.TrimSpace(f.Get("handle")), f.Get("password")
	switch f.Get("action") {
	case "deny":
		n.finish(w, r, req, url.Values{
			"error":             {"access_denied"},
			"error_description": {"The user denied the request"},
		}, "")
	case "approve":
		if f.Get("signup") == "1" {
			if _, err := n.CreateAccount(handle, password); err != nil {
				n.renderPage(w, http.StatusBadRequest, req, handle, "Cannot create the account: "+strings.TrimPrefix(err.Error(), "atauthtest: "))
				return
			}
		}
		n.mu.Lock()
		a := n.lookupAccount(handle)
		ok := a != nil && a.checkPassword(password)
		var did string
		if ok {
			did = a.DID
		}
		n.mu.Unlock()
		if !ok {
			n.renderPage(w, http.StatusUnauthorized, req, handle, "Wrong handle or password.")
			return
		}
		n.finish(w, r, req, nil, did)
	default:
		n.renderPage(w, http.StatusBadRequest, req, handle, "Choose Approve or Deny.")
	}
}

// finish consumes the request and redirects the browser back to the client,
// with a code for did, or with the error in params.
func (n *Network) finish(w http.ResponseWriter, r *http.Request, req *authRequest, params url.Values, did string) {
	n.mu.Lock()
	if req.used {
		n.mu.Unlock()
		writeErrorPage(w, http.StatusBadRequest, "this authorization request was already used")
		return
	}
	req.used = true
	if did != "" {
		code := "cod-" + n.randomString(32)
		n.codes[code] = &authCode{req: req, did: did, expires: n.cfg.now().Add(codeTTL)}
		params = url.Values{"code": {code}}
	}
	loc := n.redirectLocked(req, params)
	n.mu.Unlock()
	http.Redirect(w, r, loc, http.StatusSeeOther)
}

// redirectLocked builds the redirect to the client. The caller holds n.mu.
func (n *Network) redirectLocked(req *authRequest, params url.Values) string {
	u, err := url.Parse(req.params.RedirectURI)
	if err != nil {
		// The redirect_uri was parsed when the request was pushed.
		return req.params.RedirectURI
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	q.Set("state", req.params.State)
	iss := n.IssuerURL()
	if n.wrongIssuer {
		iss = "http://wrong-issuer.invalid"
	}
	q.Set("iss", iss)
	u.RawQuery = q.Encode()
	return u.String()
}

// Approve signs in as handle with password at the AS and consents to the
// authorization request in authURL, the URL a client sent the browser to
// ({authorization_endpoint}?client_id=…&request_uri=…). It drives the same
// HTML form a person would, over HTTP, and returns the URL the AS redirects
// the browser to: redirect_uri?code=…&state=…&iss=…. When the request has
// prompt=create and no account has the handle yet, the account is created
// through the sign-up form first.
func (n *Network) Approve(ctx context.Context, authURL, handle, password string) (callbackURL string, err error) {
	return n.drive(ctx, authURL, "approve", handle, password)
}

// Deny refuses consent to the authorization request in authURL and returns
// the URL the AS redirects to:
// redirect_uri?error=access_denied&error_description=…&state=…&iss=….
func (n *Network) Deny(ctx context.Context, authURL string) (callbackURL string, err error) {
	return n.drive(ctx, authURL, "deny", "", "")
}

func (n *Network) drive(ctx context.Context, authURL, action, handle, password string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("atauthtest: invalid authorization URL: %w", err)
	}
	if u.Scheme+"://"+u.Host != n.IssuerURL() || u.Path != "/oauth/authorize" {
		return "", fmt.Errorf("atauthtest: %q is not this network's authorization endpoint %s/oauth/authorize", authURL, n.IssuerURL())
	}
	browser := &http.Client{
		Transport: n.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return "", fmt.Errorf("atauthtest: %w", err)
	}
	req.Header.Set("Accept", "text/html")
	status, loc, body, err := do(browser, req)
	if err != nil {
		return "", err
	}
	if status == http.StatusSeeOther {
		return loc, nil
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("atauthtest: authorization page: status %d: %s", status, pageMessage(body))
	}
	csrf := hiddenValue(body, "csrf")
	if csrf == "" {
		return "", errors.New("atauthtest: authorization page has no CSRF field")
	}

	form := url.Values{
		"request_uri": {u.Query().Get("request_uri")},
		"csrf":        {csrf},
		"action":      {action},
	}
	if action == "approve" {
		form.Set("handle", handle)
		form.Set("password", password)
		if hiddenValue(body, "signup") == "1" {
			n.mu.Lock()
			exists := n.lookupAccount(handle) != nil
			n.mu.Unlock()
			if !exists {
				form.Set("signup", "1")
			}
		}
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, n.IssuerURL()+"/oauth/authorize", strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("atauthtest: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", n.IssuerURL())
	status, loc, body, err = do(browser, req)
	if err != nil {
		return "", err
	}
	if status != http.StatusSeeOther {
		return "", fmt.Errorf("atauthtest: %s: status %d: %s", action, status, pageMessage(body))
	}
	return loc, nil
}

func do(c *http.Client, req *http.Request) (status int, location, body string, err error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", "", fmt.Errorf("atauthtest: %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", "", fmt.Errorf("atauthtest: reading %s: %w", req.URL.Path, err)
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(b), nil
}

// hiddenValue finds value="…" of the input named name in a page rendered by
// pageTemplate, which always writes name before value.
func hiddenValue(page, name string) string {
	marker := `name="` + name + `" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		return ""
	}
	rest := page[i+len(marker):]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return html.UnescapeString(rest[:j])
}

// pageMessage extracts the error shown on a page, for error messages.
func pageMessage(page string) string {
	for _, marker := range []string{`role="alert">`, "<p>"} {
		if i := strings.Index(page, marker); i >= 0 {
			rest := page[i+len(marker):]
			if j := strings.IndexByte(rest, '<'); j >= 0 {
				return html.UnescapeString(rest[:j])
			}
		}
	}
	if len(page) > 200 {
		page = page[:200]
	}
	return page
}
