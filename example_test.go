package atauth_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
	"github.com/atauth/atauth/storeadapters/memstore"
)

// exampleNetwork starts an offline ATProto network with one account and a
// Manager configured for it as a loopback client.
func exampleNetwork(store atauth.Store) (*atauthtest.Network, atauthtest.Account, *atauth.Manager) {
	network, err := atauthtest.Start()
	if err != nil {
		log.Fatal(err)
	}
	alice, err := network.CreateAccount("alice.test", "hunter22")
	if err != nil {
		log.Fatal(err)
	}
	m, err := atauth.New(atauth.Config{
		RedirectURL:                "http://127.0.0.1:8080/auth/callback",
		Scopes:                     []string{"atproto", "transition:generic"},
		SealingKeys:                []atauth.SealingKey{{ID: "k1", Secret: []byte("an example key, 32 bytes long!!!")}},
		Store:                      store,
		PLCURL:                     network.PLCURL(),
		HandleResolverURL:          network.HandleResolverURL(),
		InsecureAllowLocalNetworks: true, // the network runs on 127.0.0.1
	})
	if err != nil {
		log.Fatal(err)
	}
	return network, alice, m
}

// exampleSignIn signs alice in through the Manager and returns her session
// and its id, the credential a cookie or bearer token carries.
func exampleSignIn(m *atauth.Manager, network *atauthtest.Network, alice atauthtest.Account) (*atauth.Session, string) {
	ctx := context.Background()
	start, err := m.StartLogin(ctx, alice.Handle)
	if err != nil {
		log.Fatal(err)
	}
	// A person would sign in and approve on the authorization server's page.
	callback, err := network.Approve(ctx, start.AuthURL, alice.Handle, alice.Password)
	if err != nil {
		log.Fatal(err)
	}
	u, _ := url.Parse(callback)
	res, err := m.HandleCallback(ctx, u.Query(), start.FlowCookie)
	if err != nil {
		log.Fatal(err)
	}
	// The frontend redeems the one-time exchange token for the session.
	ex, err := m.Exchange(ctx, atauth.ExchangeRequest{Token: res.ExchangeToken})
	if err != nil {
		log.Fatal(err)
	}
	return ex.Session, ex.SessionID
}

// Signing in with the Manager's methods, the way the handlers do.
func ExampleManager_HandleCallback() {
	network, alice, m := exampleNetwork(memstore.New())
	defer network.Close()
	s, _ := exampleSignIn(m, network, alice)
	fmt.Println(s.Handle, s.Kind, s.Scopes())
	// Output: alice.test browser [atproto transition:generic]
}

// Calling the signed-in user's PDS with their DPoP-bound tokens.
func ExampleManager_PDSClient() {
	network, alice, m := exampleNetwork(memstore.New())
	defer network.Close()
	s, _ := exampleSignIn(m, network, alice)

	var out struct {
		Handle string `json:"handle"`
	}
	err := m.PDSClient(s).Query(context.Background(), "com.atproto.server.getSession", nil, &out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Handle)
	// Output: alice.test
}

// Mounting the handlers on an app's mux.
func ExampleManager_Register() {
	network, _, m := exampleNetwork(memstore.New())
	defer network.Close()

	mux := http.NewServeMux()
	m.Register(mux) // /auth/…, /oauth-client-metadata.json, /.well-known/jwks.json
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/auth/pds-options")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output: {"enabled":false,"options":[]}
}

// Protecting a route: requests without a valid session get 401.
func ExampleManager_RequireAuth() {
	network, _, m := exampleNetwork(memstore.New())
	defer network.Close()

	hello := m.RequireAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := atauth.SessionFromContext(r.Context())
		fmt.Fprintln(w, "hello", s.Handle)
	}))
	w := httptest.NewRecorder()
	hello.ServeHTTP(w, httptest.NewRequest("GET", "/api/hello", nil))
	fmt.Println(w.Code, strings.TrimSpace(w.Body.String()))
	// Output: 401 {"detail":"not authenticated - login required"}
}

// countingStore is a custom Store: it wraps another one and counts the
// session reads. A Store written from scratch implements every method
// itself and passes storetest.Run (see examples/customstore).
type countingStore struct {
	atauth.Store
	reads atomic.Int64
}

func (s *countingStore) GetSession(ctx context.Context, id string) (atauth.SessionRecord, error) {
	s.reads.Add(1)
	return s.Store.GetSession(ctx, id)
}

// A custom Store: every authenticated request is one session read.
func ExampleStore() {
	store := &countingStore{Store: memstore.New()}
	network, alice, m := exampleNetwork(store)
	defer network.Close()
	_, id := exampleSignIn(m, network, alice)

	before := store.reads.Load()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+id)
	if _, err := m.Authenticate(req); err != nil {
		log.Fatal(err)
	}
	fmt.Println("reads per request:", store.reads.Load()-before)
	// Output: reads per request: 1
}
