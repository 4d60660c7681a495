package atauth_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/atauth/atauth"
)

// addAccount adds acct to b's group through the HTTP flow and redeems the
// exchange token, which makes acct the active account.
func (b *browser) addAccount(handle string, pw string) url.Values {
	b.t.Helper()
	authURL := b.startFlow("/auth/add-account/start", `{"handle":"`+handle+`"}`)
	cb, err := b.app.net.Approve(context.Background(), authURL, handle, pw)
	if err != nil {
		b.t.Fatalf("Approve: %v", err)
	}
	q := b.callback(cb)
	if q.Get("account_added") != "true" || q.Get("exchange_token") == "" {
		b.t.Fatalf("add-account landed on %v, want account_added=true and an exchange token", q)
	}
	if resp := b.exchange(q.Get("exchange_token")); resp.status != http.StatusOK {
		b.t.Fatalf("exchange: got %d %s", resp.status, resp.body)
	}
	return q
}

func TestAddAccountAndSwitch(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	aliceCookie := b.cookie("session_id")

	authURL := b.startFlow("/auth/add-account/start", `{"handle":"bob.test"}`)
	par := app.net.LastPAR()
	if par.Prompt != "login" || par.LoginHint != "bob.test" {
		t.Errorf("add-account PAR: got prompt %q hint %q, want login and bob.test", par.Prompt, par.LoginHint)
	}
	q := b.approveAndReturn(authURL, app.bob)
	if q.Get("account_added") != "true" {
		t.Fatalf("add-account landed on %v, want account_added=true", q)
	}
	if resp := b.exchange(q.Get("exchange_token")); resp.status != http.StatusOK {
		t.Fatalf("exchange: got %d", resp.status)
	}
	me := b.me()
	if me["did"] != app.bob.DID {
		t.Errorf("active account after add: got %v, want bob", me["did"])
	}
	if got := linked(me); !slices.Equal(got, []string{app.alice.DID, app.bob.DID}) {
		t.Errorf("linked_accounts: got %v, want [alice bob]", got)
	}

	// Adding an account already in the group, the current one included, is
	// refused and starts nothing.
	parsBefore := app.net.Stats().PAR
	for _, h := range []string{"bob.test", "alice.test", app.alice.DID} {
		if resp := b.fetch("POST", "/auth/add-account/start", `{"handle":"`+h+`"}`); resp.status != http.StatusBadRequest {
			t.Errorf("add %s again: got %d %s, want 400", h, resp.status, resp.body)
		}
	}
	if got := app.net.Stats().PAR; got != parsBefore {
		t.Errorf("PARs after refused add-accounts: got %d, want %d", got, parsBefore)
	}

	// Switch back to alice: the answer names the account, never the session.
	resp := b.fetch("POST", "/auth/switch-account", `{"target_did":"`+app.alice.DID+`"}`)
	if resp.status != http.StatusOK {
		t.Fatalf("switch: got %d %s", resp.status, resp.body)
	}
	body := resp.json(t)
	if body["did"] != app.alice.DID || body["handle"] != "alice.test" || len(body) != 2 {
		t.Errorf("switch body: got %s, want exactly did and handle", resp.body)
	}
	if got := b.me()["did"]; got != app.alice.DID {
		t.Errorf("active account after switch: got %v, want alice", got)
	}
	if got := b.cookie("session_id"); got == aliceCookie {
		t.Error("switching back reused alice's old session id; want a fresh one")
	}
	old := app.newBrowser()
	if resp := old.do("GET", "/auth/me", "", map[string]string{"Authorization": "Bearer " + aliceCookie}); resp.status != http.StatusUnauthorized {
		t.Errorf("alice's pre-switch id: got %d, want 401", resp.status)
	}

	for _, tc := range []struct {
		name, did string
		want      int
	}{
		{"already active", app.alice.DID, 400},
		{"not in the group", "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz", 404},
		{"missing target", "", 400},
	} {
		if resp := b.fetch("POST", "/auth/switch-account", `{"target_did":"`+tc.did+`"}`); resp.status != tc.want {
			t.Errorf("switch %s: got %d %s, want %d", tc.name, resp.status, resp.body, tc.want)
		}
	}
}

func TestSwitchWithoutGroup(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	if resp := b.fetch("POST", "/auth/switch-account", `{"target_did":"`+app.bob.DID+`"}`); resp.status != http.StatusBadRequest {
		t.Errorf("switch without a group: got %d %s, want 400", resp.status, resp.body)
	}
	if resp := b.fetch("POST", "/auth/logout?switch_to="+app.bob.DID, ""); resp.status != http.StatusBadRequest {
		t.Errorf("logout?switch_to without a group: got %d, want 400", resp.status)
	}
	if got := app.sessionsOf(app.alice.DID); got != 1 {
		t.Errorf("a refused switch changed sessions: got %d, want 1", got)
	}
}

func TestLogoutWithSwitch(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	b.addAccount("bob.test", "bob-pw") // bob is active

	if resp := b.fetch("POST", "/auth/logout?switch_to="+app.bob.DID, ""); resp.status != http.StatusBadRequest {
		t.Errorf("logout switching to the current account: got %d, want 400", resp.status)
	}
	resp := b.fetch("POST", "/auth/logout?switch_to="+app.alice.DID, "")
	if resp.status != http.StatusOK {
		t.Fatalf("logout?switch_to: got %d %s", resp.status, resp.body)
	}
	if sw, _ := resp.json(t)["switched_to"].(map[string]any); sw["did"] != app.alice.DID {
		t.Errorf("switched_to: got %s, want alice", resp.body)
	}
	if got := b.me()["did"]; got != app.alice.DID {
		t.Errorf("active account: got %v, want alice", got)
	}
	if app.sessionsOf(app.bob.DID) != 0 || app.net.ActiveGrants(app.bob.DID) != 0 {
		t.Errorf("bob after logout: %d sessions, %d grants; want 0 and 0", app.sessionsOf(app.bob.DID), app.net.ActiveGrants(app.bob.DID))
	}
}

func TestLogoutAll(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	token := b.mintDeveloperToken(app.alice, `{"name":"ci"}`)
	b.addAccount("bob.test", "bob-pw")

	resp := b.fetch("POST", "/auth/logout-all", "")
	if resp.status != http.StatusOK {
		t.Fatalf("logout-all: got %d %s", resp.status, resp.body)
	}
	if b.cookie("session_id") != "" {
		t.Error("logout-all left the cookie")
	}
	for _, acct := range []struct{ name, did string }{{"alice", app.alice.DID}, {"bob", app.bob.DID}} {
		if got := app.sessionsOf(acct.did); got != 0 {
			t.Errorf("%s's browser sessions: got %d, want 0", acct.name, got)
		}
	}
	if got := app.net.ActiveGrants(app.bob.DID); got != 0 {
		t.Errorf("bob's grants: got %d, want 0", got)
	}
	// The developer token keeps its own grant.
	if got := app.net.ActiveGrants(app.alice.DID); got != 1 {
		t.Errorf("alice's grants: got %d, want 1 (the developer token's)", got)
	}
	cli := app.newBrowser()
	if resp := cli.do("GET", "/auth/me", "", map[string]string{"Authorization": "Bearer " + token}); resp.status != http.StatusOK {
		t.Errorf("developer token after logout-all: got %d, want 200", resp.status)
	}
}

// TestAddAccountGroupInjection is the attack of plyr's W1(b): the attacker
// starts add-account for the victim's handle from the attacker's own session
// and sends the victim the authorization URL. The victim's approval must not
// put the victim's session in the attacker's group.
func TestAddAccountGroupInjection(t *testing.T) {
	app := newTestApp(t)
	attacker := app.newBrowser()
	attacker.login(app.alice)
	authURL := attacker.startFlow("/auth/add-account/start", `{"handle":"bob.test"}`)

	victim := app.newBrowser()
	q := victim.approveAndReturn(authURL, app.bob)
	if got := q.Get("auth_error"); got != "browser_mismatch" {
		t.Errorf("victim's callback: got %v, want auth_error=browser_mismatch", q)
	}
	if got := app.sessionsOf(app.bob.DID); got != 0 {
		t.Errorf("victim sessions: got %d, want 0", got)
	}
	if got := linked(attacker.me()); len(got) != 0 {
		t.Errorf("attacker's group: got %v, want none", got)
	}
	if resp := attacker.fetch("POST", "/auth/switch-account", `{"target_did":"`+app.bob.DID+`"}`); resp.status == http.StatusOK {
		t.Errorf("attacker switched to the victim: %s", resp.body)
	}
}

func TestAddAccountAfterInitiatorLoggedOut(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	authURL := b.startFlow("/auth/add-account/start", `{"handle":"bob.test"}`)
	if resp := b.fetch("POST", "/auth/logout", ""); resp.status != http.StatusOK {
		t.Fatal(resp.status)
	}
	q := b.approveAndReturn(authURL, app.bob)
	if got := q.Get("auth_error"); got != "expired" {
		t.Errorf("add-account after logout: got %v, want auth_error=expired", q)
	}
	if app.sessionsOf(app.bob.DID) != 0 || app.net.ActiveGrants(app.bob.DID) != 0 {
		t.Errorf("bob: %d sessions, %d grants; want none (the new grant is revoked)", app.sessionsOf(app.bob.DID), app.net.ActiveGrants(app.bob.DID))
	}
}

// TestConcurrentAddAccounts starts two add-accounts from one ungrouped
// session and finishes them at once: they agree on one group (W31), and an
// account added twice appears once.
func TestConcurrentAddAccounts(t *testing.T) {
	// The first two group listings answer together, so both callbacks of
	// bob see a group without bob: the race the dedupe must settle.
	barrier := &listBarrier{n: 2, release: make(chan struct{})}
	app := newTestApp(t, func(c *atauth.Config) {
		barrier.Store = c.Store
		c.Store = barrier
	})
	carol, err := app.net.CreateAccount("carol.test", "carol-pw")
	if err != nil {
		t.Fatal(err)
	}
	b := app.newBrowser()
	b.login(app.alice)
	ctx := context.Background()
	req, _ := http.NewRequest("GET", app.srv.URL, nil)
	req.AddCookie(&http.Cookie{Name: "session_id", Value: b.cookie("session_id")})
	alice, err := app.m.Authenticate(req)
	if err != nil {
		t.Fatal(err)
	}

	type pending struct {
		start    *atauth.FlowStart
		callback url.Values
	}
	var flows []pending
	for _, acct := range []struct{ handle, pw string }{{"bob.test", "bob-pw"}, {"bob.test", "bob-pw"}, {"carol.test", "carol-pw"}} {
		start, err := app.m.StartAddAccount(ctx, alice, acct.handle)
		if err != nil {
			t.Fatalf("StartAddAccount(%s): %v", acct.handle, err)
		}
		cb, err := app.net.Approve(ctx, start.AuthURL, acct.handle, acct.pw)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(cb)
		flows = append(flows, pending{start, u.Query()})
	}
	// Both of bob's callbacks at once, each creating the group; then carol's.
	var wg sync.WaitGroup
	errs := make([]error, len(flows))
	for i, f := range flows[:2] {
		wg.Go(func() {
			_, errs[i] = app.m.HandleCallback(ctx, f.callback, f.start.FlowCookie)
		})
	}
	wg.Wait()
	_, errs[2] = app.m.HandleCallback(ctx, flows[2].callback, flows[2].start.FlowCookie)
	for i, err := range errs {
		if err != nil {
			t.Errorf("callback %d: %v", i, err)
		}
	}
	groups := map[string]bool{}
	count := map[string]int{}
	for _, did := range []string{app.alice.DID, app.bob.DID, carol.DID} {
		recs, _ := app.store.ListSessionsByDID(ctx, did, atauth.KindBrowser)
		for _, r := range recs {
			groups[r.GroupID] = true
			count[did]++
		}
	}
	if len(groups) != 1 || groups[""] {
		t.Errorf("groups: got %v, want exactly one non-empty group", groups)
	}
	if count[app.bob.DID] != 1 || count[carol.DID] != 1 || count[app.alice.DID] != 1 {
		t.Errorf("sessions per account: got %v, want one each", count)
	}
}

// listBarrier holds the answers of the first n group listings until all n
// have been read from the store, so each reflects the group before any of
// their callers acts on it.
type listBarrier struct {
	atauth.Store
	mu      sync.Mutex
	n       int
	release chan struct{}
}

func (b *listBarrier) ListSessionsByGroup(ctx context.Context, groupID string) ([]atauth.SessionRecord, error) {
	recs, err := b.Store.ListSessionsByGroup(ctx, groupID)
	b.mu.Lock()
	wait := b.n > 0
	if wait {
		b.n--
		if b.n == 0 {
			close(b.release)
		}
	}
	b.mu.Unlock()
	if wait {
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return recs, err
}
