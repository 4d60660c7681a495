package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startDemo runs the demo offline on a free port and returns its URL and the
// accounts it printed.
func startDemo(t *testing.T) (string, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, options{addr: "127.0.0.1:0", scope: "atproto transition:generic", store: "memory"}, pw)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo exited with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("demo did not stop")
		}
	})
	accounts := map[string]string{}
	lines := bufio.NewScanner(pr)
	account := regexp.MustCompile(`^\s+handle (\S+)\s+password (\S+)$`)
	for lines.Scan() {
		line := lines.Text()
		if m := account.FindStringSubmatch(line); m != nil {
			accounts[m[1]] = m[2]
		}
		if origin, ok := strings.CutPrefix(line, "atauth demo listening on "); ok {
			go io.Copy(io.Discard, pr)
			return origin, accounts
		}
	}
	t.Fatal("the demo printed no ready line")
	return "", nil
}

func newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var hidden = regexp.MustCompile(`name="(request_uri|csrf)" value="([^"]*)"`)

// TestDemoSignIn signs in the way a person does: the page's form, the
// authorization server's sign-in page, the exchange, /auth/me.
func TestDemoSignIn(t *testing.T) {
	origin, accounts := startDemo(t)
	if !strings.HasPrefix(origin, "http://127.0.0.1:") {
		t.Fatalf("ready line origin %q, want http://127.0.0.1:PORT", origin)
	}
	password, ok := accounts["alice.test"]
	if !ok {
		t.Fatalf("printed accounts %v, want alice.test", accounts)
	}
	c := newClient()

	resp, page := get(t, c, origin+"/")
	if resp.StatusCode != 200 || !strings.Contains(page, `action="/auth/start"`) {
		t.Fatalf("home page: got %d, want 200 with the sign-in form", resp.StatusCode)
	}

	resp, _ = get(t, c, origin+"/auth/start?handle=alice.test")
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || authURL == "" {
		t.Fatalf("start: got %d, want 303", resp.StatusCode)
	}
	resp, page = get(t, c, authURL)
	if resp.StatusCode != 200 {
		t.Fatalf("authorization page: got %d", resp.StatusCode)
	}
	form := url.Values{"handle": {"alice.test"}, "password": {password}, "action": {"approve"}}
	for _, m := range hidden.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], m[2])
	}
	au, _ := url.Parse(authURL)
	resp, err := c.PostForm(au.Scheme+"://"+au.Host+au.Path, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, origin+"/auth/callback?") {
		t.Fatalf("consent redirected to %q, want the demo's callback", callback)
	}
	resp, _ = get(t, c, callback)
	landing, _ := url.Parse(resp.Header.Get("Location"))
	token := landing.Query().Get("exchange_token")
	if token == "" {
		t.Fatalf("callback landed on %v, want an exchange token", landing)
	}

	req, _ := http.NewRequest("POST", origin+"/auth/exchange", strings.NewReader(`{"exchange_token":"`+token+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", origin)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: got %d, want 200", resp.StatusCode)
	}

	resp, body := get(t, c, origin+"/auth/me")
	var me struct{ DID, Handle string }
	if err := json.Unmarshal([]byte(body), &me); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/auth/me: got %d %s", resp.StatusCode, body)
	}
	if me.Handle != "alice.test" || !strings.HasPrefix(me.DID, "did:plc:") {
		t.Errorf("/auth/me: got %+v, want alice.test and her DID", me)
	}
}

// TestDemoRedirectsLocalhost checks that localhost is sent to 127.0.0.1
// before any cookie is set.
func TestDemoRedirectsLocalhost(t *testing.T) {
	origin, _ := startDemo(t)
	port := strings.TrimPrefix(origin, "http://127.0.0.1:")
	resp, _ := get(t, newClient(), "http://localhost:"+port+"/auth/start?handle=alice.test")
	if got, want := resp.Header.Get("Location"), origin+"/auth/start?handle=alice.test"; got != want {
		t.Errorf("localhost redirect: got %q, want %q", got, want)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("localhost got cookies %v, want none", resp.Cookies())
	}
}
