package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
)

// The browser tests drive the demo page in Debian's chromium, the way a
// person uses it: they type, click and read what the page shows. They need a
// chromium binary; without one they skip, except in CI, which must run them.

const (
	// browserTestTimeout bounds all the steps of one test.
	browserTestTimeout = 90 * time.Second
	// stepTimeout bounds one step: an action, or a wait for the page.
	stepTimeout = 20 * time.Second
)

// chromiumPath returns the chromium binary to drive. Without one it skips
// the test, or fails it when CI=true.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && !fi.IsDir() {
		return "/usr/bin/chromium"
	}
	if path, err := exec.LookPath("chromium"); err == nil {
		return path
	}
	const msg = "no chromium binary: looked at /usr/bin/chromium and for chromium in $PATH (install it with apt-get install chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true, so the browser test must run")
	}
	t.Skip(msg)
	return ""
}

// browser is one headless chromium tab on the demo at origin.
type browser struct {
	t      *testing.T
	origin string
	// tab lives until the test ends; artifacts are taken with it.
	tab context.Context
	// ctx is tab bounded by browserTestTimeout; every step runs with it.
	ctx context.Context

	mu sync.Mutex
	// log lists the tab's requests, responses and JavaScript errors, for
	// the failure report.
	log []string
}

// newBrowser starts the chromium at path with a fresh profile and opens one
// tab. On failure the test saves a screenshot and logs the page's text
// before the browser stops.
func newBrowser(t *testing.T, path, origin string) *browser {
	t.Helper()
	profile := t.TempDir()
	// The hard limit on the browser's life leaves time for the artifacts
	// after browserTestTimeout has passed.
	root, cancelRoot := context.WithTimeout(context.Background(), browserTestTimeout+30*time.Second)
	alloc, cancelAlloc := chromedp.NewExecAllocator(root,
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// CI containers have a small /dev/shm, and no keyring to ask
		// about the password typed on the sign-in page.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 1000),
	)
	tab, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelCtx := context.WithTimeout(tab, browserTestTimeout)
	b := &browser{t: t, origin: origin, tab: tab, ctx: ctx}
	// Cleanups run last first: the artifacts, then the browser stops, then
	// the profile directory goes.
	t.Cleanup(func() {
		cancelCtx()
		cancelTab()
		cancelAlloc()
		cancelRoot()
	})
	t.Cleanup(func() {
		if t.Failed() {
			b.saveArtifacts()
		}
	})
	// The first action starts the browser, and the browser lives as long
	// as the context of that action, so it runs with tab and not ctx.
	if err := chromedp.Do(tab, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	if err := chromedp.Listen(tab, b.record); err != nil {
		t.Fatalf("listening to the tab: %v", err)
	}
	return b
}

// record adds the events a failure report needs to b.log. chromedp calls it
// for every event of the tab, so it must not block.
func (b *browser) record(ev any) {
	var line string
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if r := ev.RedirectResponse; r != nil {
			line = fmt.Sprintf("<- %d %s\n", r.Status, r.URL)
		}
		line += fmt.Sprintf("-> %s %s", ev.Request.Method, ev.Request.URL)
	case *network.EventResponseReceived:
		line = fmt.Sprintf("<- %d %s", ev.Response.Status, ev.Response.URL)
	case *network.EventLoadingFailed:
		line = fmt.Sprintf("<- failed %s: %s", ev.RequestID, ev.ErrorText)
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg = d.Exception.Description
		}
		line = fmt.Sprintf("JavaScript exception at %s:%d: %s", d.URL, d.LineNumber+1, msg)
	default:
		return
	}
	b.mu.Lock()
	b.log = append(b.log, line)
	b.mu.Unlock()
}

// saveArtifacts saves a full-page screenshot and logs its path, the address
// and the page's visible text.
func (b *browser) saveArtifacts() {
	t := b.t
	b.mu.Lock()
	t.Logf("the tab's requests and errors:\n%s", strings.Join(b.log, "\n"))
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.tab, 10*time.Second)
	defer cancel()
	type page struct {
		URL  string `json:"url"`
		Text string `json:"text"`
	}
	p, err := chromedp.Run(ctx, chromedp.Evaluate[page](`({url: location.href, text: document.body ? document.body.innerText : ""})`))
	if err != nil {
		t.Logf("reading the page: %v", err)
	} else {
		t.Logf("page %s shows:\n%s", p.URL, p.Text)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("taking a screenshot: %v", err)
		return
	}
	dir := os.Getenv("ATAUTH_ARTIFACTS")
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("saving the screenshot: %v", err)
		return
	}
	f, err := os.CreateTemp(dir, "atauth-"+strings.ReplaceAll(t.Name(), "/", "_")+"-*.png")
	if err != nil {
		t.Logf("saving the screenshot: %v", err)
		return
	}
	_, werr := f.Write(png)
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		t.Logf("saving the screenshot: %v", werr)
		return
	}
	t.Logf("screenshot: %s", f.Name())
}

// do runs actions as one step.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitFor waits until the JavaScript expression cond is true. Unlike
// chromedp.Poll it keeps waiting across navigations, so it can wait for the
// page a redirect chain ends on.
func (b *browser) waitFor(what, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	var last error
	for {
		try, cancelTry := context.WithTimeout(ctx, 2*time.Second)
		ok, err := chromedp.Run(try, chromedp.Evaluate[bool](cond))
		cancelTry()
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				b.t.Fatalf("waiting for %s: %v (last evaluation error: %v)", what, ctx.Err(), last)
			}
			b.t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// evaluate returns the value of the JavaScript expression js.
func evaluate[T any](b *browser, js string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// text returns the text content of the element that the CSS selector sel
// matches, or "" when none does.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return evaluate[string](b, fmt.Sprintf(`document.querySelector(%q)?.textContent ?? ""`, sel))
}

// visible returns a JavaScript expression that is true when the element
// that the CSS selector sel matches is rendered.
func visible(sel string) string {
	return fmt.Sprintf(`(document.querySelector(%q)?.checkVisibility() ?? false)`, sel)
}

// onDemo returns a JavaScript expression that is true when the tab shows the
// demo page and cond holds.
func (b *browser) onDemo(cond string) string {
	return fmt.Sprintf(`location.origin === %q && document.readyState === "complete" && %s`, b.origin, cond)
}

// checkCleanAddress checks that the address is the landing path without a
// query, and that no history entry holds an exchange token.
func (b *browser) checkCleanAddress(after string) {
	b.t.Helper()
	if got, want := evaluate[string](b, `location.href`), b.origin+"/"; got != want {
		b.t.Errorf("after %s the address is %q, want %q", after, got, want)
	}
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	history, err := chromedp.Run(ctx, chromedp.NavigationEntries())
	if err != nil {
		b.t.Fatalf("reading the history: %v", err)
	}
	for _, e := range history.Entries {
		if strings.Contains(e.URL, "exchange_token") {
			b.t.Errorf("after %s the history holds %q, want no exchange_token in it", after, e.URL)
		}
	}
}

// approve signs in as handle at the authorization server's page and
// approves.
func (b *browser) approve(handle, password string) {
	b.t.Helper()
	b.waitFor("the authorization server's sign-in page",
		fmt.Sprintf(`location.origin !== %q && document.readyState === "complete" && !!document.querySelector("#password")`, b.origin))
	b.do("signing in at the authorization server as "+handle,
		// The page may fill in the handle from the login hint.
		chromedp.Clear(chromedp.ID("handle")),
		chromedp.SendKeys(chromedp.ID("handle"), handle),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`button[name="action"][value="approve"]`)),
	)
}

// linkedAccount is one row of the page's list of accounts in this browser.
type linkedAccount struct {
	Handle string `json:"handle"`
	Active bool   `json:"active"`
}

func (b *browser) linkedAccounts() []linkedAccount {
	b.t.Helper()
	list := evaluate[[]linkedAccount](b, `[...document.querySelectorAll("#linked li")].map((li) => ({
		handle: li.querySelector(".grow")?.textContent ?? "",
		active: !!li.querySelector(".tag"),
	}))`)
	slices.SortFunc(list, func(a, b linkedAccount) int { return strings.Compare(a.Handle, b.Handle) })
	return list
}

// whoAmI is what the signed-in section shows about the current account.
type whoAmI struct {
	Handle string `json:"handle"`
	DID    string `json:"did"`
	Kind   string `json:"kind"`
}

func (b *browser) whoAmI() whoAmI {
	b.t.Helper()
	return evaluate[whoAmI](b, `({
		handle: document.querySelector("#who-handle").textContent,
		did: document.querySelector("#who-did").textContent,
		kind: document.querySelector("#who-kind").textContent,
	})`)
}

// signedInAs returns a JavaScript expression that is true when the page
// shows handle as the current account.
func (b *browser) signedInAs(handle string) string {
	return b.onDemo(fmt.Sprintf(`%s && document.querySelector("#who-handle").textContent === %q`, visible("#signed-in"), handle))
}

var developerToken = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// TestBrowserPersonPath clicks through the demo as a person does: sign in,
// who am I, add an account, switch, create and revoke a developer token, log
// out of all accounts.
func TestBrowserPersonPath(t *testing.T) {
	chromium := chromiumPath(t)
	origin, accounts := startDemo(t)
	b := newBrowser(t, chromium, origin)
	for _, h := range []string{"alice.test", "bob.test"} {
		if accounts[h] == "" {
			t.Fatalf("the demo printed accounts %v, want %s among them", accounts, h)
		}
	}

	// Sign in with the form.
	b.do("opening the demo", chromedp.Navigate(origin+"/"))
	b.waitFor("the sign-in form", b.onDemo(visible("#login")))
	b.do("submitting the sign-in form",
		chromedp.SendKeys(chromedp.ID("handle"), "alice.test"),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
	)
	b.approve("alice.test", accounts["alice.test"])
	b.waitFor("alice.test signed in", b.signedInAs("alice.test"))
	b.checkCleanAddress("signing in")

	// Who am I.
	alice := b.whoAmI()
	if !strings.HasPrefix(alice.DID, "did:plc:") || alice.Kind != "browser" {
		t.Errorf("signed in as alice.test, the page shows %+v, want her did:plc: DID and kind browser", alice)
	}
	if diff := cmp.Diff([]linkedAccount{{"alice.test", true}}, b.linkedAccounts()); diff != "" {
		t.Errorf("accounts in this browser after sign-in (-want +got):\n%s", diff)
	}
	if shown := evaluate[bool](b, visible("#error")); shown {
		t.Errorf("after sign-in the page shows the error %q, want none", b.text("#error"))
	}

	// A real call to the PDS, with alice's DPoP-bound token.
	b.do("calling the PDS", chromedp.Click(chromedp.ID("pds-call")))
	b.waitFor("the PDS's answer", b.onDemo(visible("#pds-result")))
	if got := b.text("#pds-result"); !strings.Contains(got, alice.DID) || !strings.Contains(got, "alice.test") {
		t.Errorf("the PDS call shows %q, want alice's DID and handle", got)
	}

	// Add bob.test.
	b.do("submitting the add-account form",
		chromedp.SendKeys(chromedp.ID("add-handle"), "bob.test"),
		chromedp.Click(chromedp.CSS(`#add-account button[type="submit"]`)),
	)
	b.approve("bob.test", accounts["bob.test"])
	b.waitFor("bob.test added and active", b.signedInAs("bob.test"))
	b.checkCleanAddress("adding an account")
	bob := b.whoAmI()
	if !strings.HasPrefix(bob.DID, "did:plc:") || bob.DID == alice.DID || bob.Kind != "browser" {
		t.Errorf("after adding bob.test the page shows %+v, want his own did:plc: DID (alice's is %s) and kind browser", bob, alice.DID)
	}
	if diff := cmp.Diff([]linkedAccount{{"alice.test", false}, {"bob.test", true}}, b.linkedAccounts()); diff != "" {
		t.Errorf("accounts in this browser after adding bob.test (-want +got):\n%s", diff)
	}
	if got := b.text("#notice"); got != "Account added." {
		t.Errorf("after adding an account the notice is %q, want %q", got, "Account added.")
	}

	// Switch back to alice.test.
	b.do("clicking Switch next to alice.test", chromedp.Click(chromedp.JSPath(`[...document.querySelectorAll("#linked li")]
		.filter((li) => li.querySelector(".grow")?.textContent === "alice.test")
		.flatMap((li) => [...li.querySelectorAll("button")])
		.find((b) => b.textContent === "Switch")`)))
	b.waitFor("alice.test active again", b.signedInAs("alice.test"))
	if got := b.whoAmI(); got != alice {
		t.Errorf("after switching to alice.test the page shows %+v, want %+v", got, alice)
	}
	if diff := cmp.Diff([]linkedAccount{{"alice.test", true}, {"bob.test", false}}, b.linkedAccounts()); diff != "" {
		t.Errorf("accounts in this browser after switching (-want +got):\n%s", diff)
	}

	// Create a developer token.
	b.do("submitting the developer-token form",
		chromedp.SendKeys(chromedp.ID("token-name"), "ci"),
		chromedp.SendKeys(chromedp.ID("token-days"), "3"),
		chromedp.Click(chromedp.CSS(`#dev-token button[type="submit"]`)),
	)
	b.approve("alice.test", accounts["alice.test"])
	b.waitFor("the new developer token", b.onDemo(visible("#new-token")+` && document.querySelectorAll("#tokens li").length > 0`))
	if path := os.Getenv("ATAUTH_SCREENSHOT"); path != "" {
		// The README's screenshot: ATAUTH_SCREENSHOT=docs/demo.png go test -run TestBrowserPersonPath ./examples/demo
		ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err == nil {
			err = os.WriteFile(path, png, 0o644)
		}
		if err != nil {
			t.Errorf("saving the README's screenshot: %v", err)
		}
	}
	b.checkCleanAddress("creating a developer token")
	token := b.text("#new-token-value")
	if !developerToken.MatchString(token) {
		t.Fatalf("the page shows the new token %q, want 43 base64url characters", token)
	}
	if got := b.whoAmI(); got != alice {
		t.Errorf("after creating a developer token the page shows %+v, want alice.test still signed in: %+v", got, alice)
	}
	rows := evaluate[[]string](b, `[...document.querySelectorAll("#tokens li .grow")].map((e) => e.textContent)`)
	if len(rows) != 1 || !strings.HasPrefix(rows[0], "ci ") || !strings.Contains(rows[0], " "+token[:8]+"…") || strings.Contains(rows[0], token[8:]) {
		t.Errorf("developer tokens listed: %q, want one named ci with the prefix %s… and not the rest of the token", rows, token[:8])
	}
	type listed struct {
		Tokens []struct {
			CreatedAt time.Time `json:"created_at"`
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"tokens"`
	}
	raw := evaluate[string](b, `fetch("/auth/developer-tokens").then((r) => r.text())`, chromedp.EvalAwaitPromise)
	var list listed
	if err := json.Unmarshal([]byte(raw), &list); err != nil || len(list.Tokens) != 1 {
		t.Fatalf("GET /auth/developer-tokens: got %s, want one token", raw)
	}
	if d := list.Tokens[0].ExpiresAt.Sub(list.Tokens[0].CreatedAt); d < 72*time.Hour-time.Minute || d > 72*time.Hour+time.Minute {
		t.Errorf("the token lives %v, want the 3 days typed in the form", d)
	}

	// Shown once: a reload shows the list and not the token.
	b.do("reloading", chromedp.Reload())
	b.waitFor("the page after the reload", b.signedInAs("alice.test")+
		` && performance.getEntriesByType("navigation")[0]?.type === "reload" && document.querySelectorAll("#tokens li").length > 0`)
	if evaluate[bool](b, visible("#new-token")) || strings.Contains(evaluate[string](b, `document.body.innerText`), token) {
		t.Errorf("after a reload the page still shows the developer token, want it shown once")
	}
	if evaluate[bool](b, visible("#error")) {
		t.Errorf("after a reload the page shows the error %q, want none", b.text("#error"))
	}

	// Revoke it.
	b.do("clicking Revoke", chromedp.Click(chromedp.CSS(`#tokens li button`)))
	b.waitFor("the token list to empty", b.onDemo(`document.querySelectorAll("#tokens li").length === 0`))
	if evaluate[bool](b, visible("#error")) {
		t.Errorf("after revoking the page shows the error %q, want none", b.text("#error"))
	}

	// Log out of all accounts.
	b.do("clicking Log out of all accounts", chromedp.Click(chromedp.ID("logout-all")))
	b.waitFor("the signed-out page", b.onDemo(visible("#signed-out")+` && !`+visible("#signed-in")))
	if status := evaluate[int](b, `fetch("/auth/me").then((r) => r.status)`, chromedp.EvalAwaitPromise); status != 401 {
		t.Errorf("after logging out of all accounts /auth/me answers %d, want 401", status)
	}
	if evaluate[bool](b, visible("#error")) {
		t.Errorf("after logging out the page shows the error %q, want none", b.text("#error"))
	}
}

// TestBrowserAuthErrors checks that the page explains every auth_error code
// the callback can land with, and takes the code out of the address.
func TestBrowserAuthErrors(t *testing.T) {
	chromium := chromiumPath(t)
	origin, _ := startDemo(t)
	b := newBrowser(t, chromium, origin)

	shown := func(code string) string {
		t.Helper()
		b.do("opening the landing page with auth_error="+code, chromedp.Navigate(origin+"/?auth_error="+code))
		b.waitFor("the error for "+code, b.onDemo(visible("#error")+` && `+visible("#signed-out")))
		b.checkCleanAddress("landing with auth_error=" + code)
		return strings.TrimSpace(b.text("#error"))
	}
	fallback := shown("not_a_code")
	if fallback == "" {
		t.Errorf("for an unknown code the page shows an empty error, want a general one")
	}

	codes := []string{"access_denied", "expired", "browser_mismatch", "issuer_mismatch", "account_mismatch", "server_error"}
	seen := map[string]string{}
	for _, code := range codes {
		msg := shown(code)
		switch {
		case msg == "" || strings.Contains(msg, code):
			t.Errorf("auth_error=%s: the page shows %q, want readable text", code, msg)
		case msg == fallback:
			t.Errorf("auth_error=%s: the page shows the general %q, want a message for this code", code, msg)
		case seen[msg] != "":
			t.Errorf("auth_error=%s: the page shows %q, the same as for %s", code, msg, seen[msg])
		}
		seen[msg] = code
	}
}
