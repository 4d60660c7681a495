package atauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
)

func creationApp(t *testing.T, opts ...appOption) *testApp {
	t.Helper()
	return newTestApp(t, append([]appOption{func(c *atauth.Config) {
		c.AccountCreation = true
	}}, opts...)...)
}

func TestPDSOptions(t *testing.T) {
	off := newTestApp(t)
	resp := off.newBrowser().do("GET", "/auth/pds-options", "", nil)
	if resp.status != 200 || string(resp.body) != "{\"enabled\":false,\"options\":[]}\n" {
		t.Errorf("pds-options, creation off: got %d %s", resp.status, resp.body)
	}
	on := newTestApp(t, func(c *atauth.Config) {
		c.AccountCreation = true
		c.PDSOptions = []atauth.PDSOption{{Name: "Test PDS", URL: "https://pds.example.com", Recommended: true, Description: "d", InfoURL: "https://example.com/about"}}
	})
	got := on.newBrowser().do("GET", "/auth/pds-options", "", nil).json(t)
	opts, _ := got["options"].([]any)
	if got["enabled"] != true || len(opts) != 1 {
		t.Fatalf("pds-options: got %v", got)
	}
	o := opts[0].(map[string]any)
	for k, want := range map[string]any{"name": "Test PDS", "url": "https://pds.example.com", "recommended": true, "description": "d", "info_url": "https://example.com/about"} {
		if o[k] != want {
			t.Errorf("option %s: got %v, want %v", k, o[k], want)
		}
	}
}

func TestCreateAccount(t *testing.T) {
	app := creationApp(t)
	// The offered PDS is known only once the network runs.
	cfg := app.cfg
	cfg.PDSOptions = []atauth.PDSOption{{Name: "local", URL: app.net.PDSURL()}}
	m, err := atauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	app.use(m)

	b := app.newBrowser()
	resp := b.do("GET", "/auth/start?pds_url="+url.QueryEscape(app.net.PDSURL()), "", nil)
	if resp.status != http.StatusSeeOther {
		t.Fatalf("start creation: got %d %s", resp.status, resp.body)
	}
	par := app.net.LastPAR()
	if par.Prompt != "create" || par.LoginHint != "" {
		t.Errorf("creation PAR: got prompt %q hint %q, want create and no hint", par.Prompt, par.LoginHint)
	}
	q := b.approveAndReturn(resp.location.String(), atauthtest.Account{Handle: "carol.test", Password: "carol-pw"})
	if resp := b.exchange(q.Get("exchange_token")); resp.status != http.StatusOK {
		t.Fatalf("exchange after creation: got %d (landing %v)", resp.status, q)
	}
	me := b.me()
	if me["handle"] != "carol.test" || !strings.HasPrefix(me["did"].(string), "did:plc:") {
		t.Errorf("new account: got %v, want carol.test", me)
	}
}

func TestCreateAccountRefusals(t *testing.T) {
	app := creationApp(t)
	b := app.newBrowser()
	pds := url.QueryEscape(app.net.PDSURL())
	if resp := b.do("GET", "/auth/start?pds_url="+pds, "", nil); resp.status != http.StatusBadRequest {
		t.Errorf("a PDS not offered: got %d %s, want 400", resp.status, resp.body)
	}
	off := newTestApp(t)
	if resp := off.newBrowser().do("GET", "/auth/start?pds_url="+pds, "", nil); resp.status != http.StatusForbidden {
		t.Errorf("creation disabled: got %d %s, want 403", resp.status, resp.body)
	}
	any := creationApp(t, func(c *atauth.Config) { c.AllowAnyPDS = true })
	any.net.SetPromptValues([]string{"login", "consent"})
	resp := any.newBrowser().do("GET", "/auth/start?pds_url="+url.QueryEscape(any.net.PDSURL()), "", nil)
	if resp.status != http.StatusBadRequest || !strings.Contains(string(resp.body), "create") {
		t.Errorf("an AS without prompt=create: got %d %s, want 400 naming create", resp.status, resp.body)
	}
	if got := any.net.Stats().PAR + app.net.Stats().PAR + off.net.Stats().PAR; got != 0 {
		t.Errorf("PARs: got %d, want 0", got)
	}
}

func TestAddAccountWithoutPromptSupport(t *testing.T) {
	app := newTestApp(t)
	app.net.SetPromptValues(nil)
	b := app.newBrowser()
	b.login(app.alice)
	b.addAccount("bob.test", "bob-pw")
	if got := app.net.LastPAR().Prompt; got != "" {
		t.Errorf("add-account prompt without server support: got %q, want none", got)
	}
}

func TestFlowHook(t *testing.T) {
	var events []atauth.FlowEvent
	fail := false
	app := newTestApp(t, func(c *atauth.Config) {
		c.OnFlowComplete = func(ctx context.Context, e atauth.FlowEvent) error {
			if fail {
				return errors.New("profile table is down")
			}
			events = append(events, e)
			return nil
		}
	})
	b := app.newBrowser()
	b.login(app.alice)
	b.addAccount("bob.test", "bob-pw")
	if len(events) != 2 || events[0].Kind != atauth.FlowLogin || events[0].DID != app.alice.DID || events[0].Handle != "alice.test" ||
		events[1].Kind != atauth.FlowAddAccount || events[1].DID != app.bob.DID || events[1].Session == nil {
		t.Errorf("events: got %+v", events)
	}

	fail = true
	b2 := app.newBrowser()
	q := b2.callback(b2.approve("alice.test", "alice-pw"))
	if got := q.Get("auth_error"); got != "server_error" {
		t.Errorf("failing hook: got %v, want auth_error=server_error", q)
	}
	if got := app.sessionsOf(app.alice.DID); got != 1 {
		t.Errorf("alice's sessions after a failed hook: got %d, want 1 (the first login's)", got)
	}
}

func TestSessionsPerAccount(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	b.mintDeveloperToken(app.alice, `{"name":"ci"}`)
	other := app.newBrowser()
	other.login(app.alice)
	ctx := context.Background()

	infos, err := app.m.ListSessions(ctx, app.alice.DID)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[atauth.SessionKind]int{}
	for _, in := range infos {
		kinds[in.Kind]++
		if in.LastUsedAt.IsZero() || in.CreatedAt.IsZero() {
			t.Errorf("session %+v lacks times", in)
		}
	}
	if kinds[atauth.KindBrowser] != 2 || kinds[atauth.KindDeveloper] != 1 {
		t.Errorf("sessions: got %v, want 2 browser and 1 developer", kinds)
	}
	if err := app.m.EndSession(ctx, app.bob.DID, infos[0].Key); !errors.Is(err, atauth.ErrNotFound) {
		t.Errorf("ending alice's session as bob: got %v, want ErrNotFound", err)
	}
	if err := app.m.EndSession(ctx, app.alice.DID, infos[0].Key); err != nil {
		t.Fatal(err)
	}
	if resp := b.fetch("GET", "/auth/me", ""); resp.status != http.StatusUnauthorized {
		t.Errorf("ended session: got %d, want 401", resp.status)
	}
	n, err := app.m.EndAllSessions(ctx, app.alice.DID)
	if err != nil || n != 2 {
		t.Errorf("EndAllSessions: got %d, %v; want 2", n, err)
	}
	if got := app.net.ActiveGrants(app.alice.DID); got != 0 {
		t.Errorf("grants after ending everything: got %d, want 0", got)
	}
}

func TestMeFollowsHandleChanges(t *testing.T) {
	app := newTestApp(t)
	b := app.newBrowser()
	b.login(app.alice)
	if err := app.net.ChangeHandle(app.alice.DID, "alice2.test"); err != nil {
		t.Fatal(err)
	}
	if got := b.me()["handle"]; got != "alice.test" {
		t.Errorf("handle right after the change: got %v, want the cached alice.test", got)
	}
	app.clock.Advance(11 * time.Minute)
	if got := b.me()["handle"]; got != "alice2.test" {
		t.Errorf("handle after the refresh interval: got %v, want alice2.test", got)
	}
	recs, _ := app.store.ListSessionsByDID(context.Background(), app.alice.DID, atauth.KindBrowser)
	if len(recs) != 1 || recs[0].Handle != "alice2.test" {
		t.Errorf("stored handle: got %+v, want alice2.test", recs)
	}
}
