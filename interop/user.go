// Package interop tests atauth against Bluesky's reference PDS and its OAuth
// authorization server (@atproto/oauth-provider), run offline from
// @atproto/dev-env. See README.md for how to install and run it.
//
// This file holds the test's "browser": a headless user of the
// authorization server's sign-in, sign-up and consent API, the calls its
// web UI makes.
package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
)

// apiPath is where the reference authorization server serves the API its
// authorization page calls.
const apiPath = "/@atproto/oauth-provider/~api/"

// User is a headless user of the reference authorization server: it signs
// in, signs up, consents or refuses through the API the authorization
// page calls, with the headers a browser would send. It keeps the server's
// device cookies across flows, as one browser would.
type User struct {
	http *http.Client
}

// NewUser returns a User with an empty cookie jar.
func NewUser() *User {
	jar, _ := cookiejar.New(nil) // never fails without options
	return &User{http: &http.Client{
		Jar: jar,
		// The user reads each redirect itself: the last one goes to the
		// client's redirect_uri, which may not be reachable from here.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// APIError is a refusal from the authorization server's API or pages.
type APIError struct {
	Step       string
	StatusCode int
	Body       string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("interop: %s: HTTP %d: %s", e.Step, e.StatusCode, e.Body)
}

// NewAccount is an account to create with SignUp.
type NewAccount struct {
	Handle, Email, Password string
}

// SignIn opens authURL, signs in as username (a handle, DID or email) and
// consents. It returns the callback URL the server redirects to: the
// client's redirect_uri with code, state and iss. When the server
// remembers the device and the consent, it redirects at once and nothing
// is typed.
func (u *User) SignIn(ctx context.Context, authURL, username, password string) (*url.URL, error) {
	return u.authorize(ctx, authURL, func(p *page) (map[string]any, error) {
		return p.api(ctx, "sign-in", "", map[string]any{
			"locale": "en", "username": username, "password": password, "remember": false,
		})
	}, false)
}

// SignUp opens authURL, creates the account a and consents. It returns the
// callback URL.
func (u *User) SignUp(ctx context.Context, authURL string, a NewAccount) (*url.URL, error) {
	return u.authorize(ctx, authURL, func(p *page) (map[string]any, error) {
		avail, err := p.api(ctx, "verify-handle-availability", "", map[string]any{"handle": a.Handle})
		if err != nil {
			return nil, err
		}
		if avail["available"] != true {
			return nil, fmt.Errorf("interop: handle %s is not available", a.Handle)
		}
		return p.api(ctx, "sign-up", "", map[string]any{
			"locale": "en", "handle": a.Handle, "email": a.Email, "password": a.Password,
		})
	}, false)
}

// Refuse opens authURL, signs in and refuses the request. It returns the
// callback URL, which carries error=access_denied.
func (u *User) Refuse(ctx context.Context, authURL, username, password string) (*url.URL, error) {
	return u.authorize(ctx, authURL, func(p *page) (map[string]any, error) {
		return p.api(ctx, "sign-in", "", map[string]any{
			"locale": "en", "username": username, "password": password, "remember": false,
		})
	}, true)
}

// page is an open authorization page: its URL is the Referer that ties API
// calls to the pending request.
type page struct {
	u      *User
	issuer string
	url    string
}

// authorize opens the authorization page, runs enter (sign-in or sign-up),
// then consents or refuses, and follows the server's redirect back to the
// client.
func (u *User) authorize(ctx context.Context, authURL string, enter func(*page) (map[string]any, error), refuse bool) (*url.URL, error) {
	au, err := url.Parse(authURL)
	if err != nil {
		return nil, fmt.Errorf("interop: authorization URL: %w", err)
	}
	p := &page{u: u, issuer: au.Scheme + "://" + au.Host, url: authURL}
	resp, body, err := u.navigate(ctx, authURL, "cross-site", "")
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusSeeOther, http.StatusFound:
		// The device and the consent are remembered: straight back.
		return resp.Location()
	default:
		return nil, &APIError{Step: "authorize", StatusCode: resp.StatusCode, Body: body}
	}

	entered, err := enter(p)
	if err != nil {
		return nil, err
	}
	token, _ := entered["ephemeralToken"].(string)
	var decided map[string]any
	if refuse {
		decided, err = p.api(ctx, "reject", token, map[string]any{})
	} else {
		decided, err = p.api(ctx, "consent", token, consentBody(entered))
	}
	if err != nil {
		return nil, err
	}
	next, _ := decided["url"].(string)
	if next == "" {
		return nil, fmt.Errorf("interop: the server's decision has no url: %v", decided)
	}
	resp, body, err = u.navigate(ctx, next, "same-origin", authURL)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		return nil, &APIError{Step: "authorize/redirect", StatusCode: resp.StatusCode, Body: body}
	}
	return resp.Location()
}

// consentBody names the account the way the server's version wants it:
// provider 0.15 (PDS 0.4) says sub, provider 0.22 (PDS 0.5) says did, and
// both reject unknown fields.
func consentBody(entered map[string]any) map[string]any {
	acct, _ := entered["account"].(map[string]any)
	if sub, ok := acct["sub"].(string); ok {
		return map[string]any{"sub": sub}
	}
	return map[string]any{"did": acct["did"]}
}

// navigate loads a page as a browser's top-level navigation.
func (u *User) navigate(ctx context.Context, target, site, referer string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("Sec-Fetch-Site", site)
	if referer != "" {
		req.Header.Set("Referer", referer)
	}
	return u.do(req)
}

// api calls the page's API as its scripts do: same-origin, with the CSRF
// cookie echoed in a header and the page as Referer.
func (p *page) api(ctx context.Context, endpoint, bearer string, in any) (map[string]any, error) {
	data, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.issuer+apiPath+endpoint, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Mode", "same-origin")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Dest", "empty")
	req.Header.Set("Origin", p.issuer)
	req.Header.Set("Referer", p.url)
	req.Header.Set("X-CSRF-Token", p.u.cookie(req.URL, "csrf-token"))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, body, err := p.u.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &APIError{Step: endpoint, StatusCode: resp.StatusCode, Body: body}
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		return nil, fmt.Errorf("interop: %s: %w", endpoint, err)
	}
	return out, nil
}

func (u *User) cookie(target *url.URL, name string) string {
	for _, c := range u.http.Jar.Cookies(target) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (u *User) do(req *http.Request) (*http.Response, string, error) {
	resp, err := u.http.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("interop: %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, "", fmt.Errorf("interop: reading %s: %w", req.URL.Redacted(), err)
	}
	return resp, strings.TrimSpace(string(body)), nil
}
