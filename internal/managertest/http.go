package managertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
)

// App is a Manager's Handler served by an httptest server on 127.0.0.1, the
// way a host application mounts it.
type App struct {
	// URL is the server's base URL.
	URL string
	// Manager is the app's Manager.
	Manager *atauth.Manager
	// Network is the ATProto network the app signs in against.
	Network *atauthtest.Network

	panics atomic.Int64
}

// NewApp serves a Manager on store for network until tb ends. The handler
// recovers panics, answers them 500 and counts them: see Panics.
func NewApp(tb testing.TB, network *atauthtest.Network, store atauth.Store) *App {
	tb.Helper()
	app := &App{Network: network}
	var h http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				app.panics.Add(1)
				tb.Errorf("the handler panicked on %s %s: %v", r.Method, r.URL.Path, v)
				http.Error(w, "panic", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	}))
	// The Manager needs the server's URL, which the unstarted server's
	// listener already knows.
	app.URL = "http://" + srv.Listener.Addr().String()
	cfg := Config(network, store, app.URL+"/auth/callback")
	cfg.HTTPClient = httpClient(tb)
	// Every browser here comes from 127.0.0.1, far faster than people.
	cfg.RateLimiter = atauth.NoRateLimit
	m, err := atauth.New(cfg)
	if err != nil {
		srv.Close()
		tb.Fatalf("atauth.New: %v", err)
	}
	app.Manager = m
	h = m.Handler()
	srv.Start()
	tb.Cleanup(srv.Close)
	return app
}

// Panics reports how many requests panicked in the handler.
func (app *App) Panics() int64 { return app.panics.Load() }

// Browser is a cookie-keeping HTTP client of an App that does not follow
// redirects and sends the headers a browser's fetch sends. Its methods
// return errors instead of failing a test, so that goroutines can use it.
type Browser struct {
	app    *App
	client *http.Client
}

// NewBrowser returns a browser with no cookies.
func (app *App) NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{app: app, client: &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// Response is an answer the browser got.
type Response struct {
	Method, Path string
	Status       int
	Body         []byte
	Location     *url.URL
}

func (r *Response) String() string {
	return fmt.Sprintf("%s %s: %d %.200s", r.Method, r.Path, r.Status, r.Body)
}

// Detail returns the "detail" of a JSON error body, and whether the body
// is a JSON object with a non-empty string "detail".
func (r *Response) Detail() (string, bool) {
	var v struct {
		Detail *string `json:"detail"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil || v.Detail == nil || *v.Detail == "" {
		return "", false
	}
	return *v.Detail, true
}

// Do sends a request. path is relative to the app, or an absolute URL. A
// non-empty body is sent as JSON. With fetch set the request carries the
// Sec-Fetch-Site and Origin headers of a same-origin fetch.
func (b *Browser) Do(ctx context.Context, method, path, body string, fetch bool) (*Response, error) {
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.app.URL + path
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if fetch {
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Origin", b.app.URL)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the body: %w", method, req.URL.Path, err)
	}
	out := &Response{Method: method, Path: req.URL.Path, Status: resp.StatusCode, Body: data}
	if loc, err := resp.Location(); err == nil {
		out.Location = loc
	}
	return out, nil
}

// Cookie returns the value of the browser's cookie name for the app, or "".
func (b *Browser) Cookie(name string) string {
	u, _ := url.Parse(b.app.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// SessionCookie returns the browser's session id: the session_id cookie.
func (b *Browser) SessionCookie() string { return b.Cookie("session_id") }
