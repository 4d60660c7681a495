package atauthtest_test

import (
	"context"
	"fmt"
	"log"
	"net/url"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
	"github.com/atauth/atauth/storeadapters/memstore"
)

// A host app signs a user in against the in-process network, calling the
// Manager directly. Tests do the same with NewNetwork(t).
func Example() {
	network, err := atauthtest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer network.Close()
	alice, err := network.CreateAccount("alice.test", "hunter22")
	if err != nil {
		log.Fatal(err)
	}

	m, err := atauth.New(atauth.Config{
		RedirectURL:                "http://127.0.0.1:8080/auth/callback", // a loopback client
		SealingKeys:                []atauth.SealingKey{{ID: "k1", Secret: make([]byte, 32)}},
		Store:                      memstore.New(),
		PLCURL:                     network.PLCURL(),
		HandleResolverURL:          network.HandleResolverURL(),
		InsecureAllowLocalNetworks: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	start, err := m.StartLogin(ctx, "alice.test")
	if err != nil {
		log.Fatal(err)
	}
	callback, err := network.Approve(ctx, start.AuthURL, alice.Handle, alice.Password)
	if err != nil {
		log.Fatal(err)
	}
	u, err := url.Parse(callback)
	if err != nil {
		log.Fatal(err)
	}
	res, err := m.HandleCallback(ctx, u.Query(), start.FlowCookie)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Session.Handle, res.Session.DID == alice.DID, network.ActiveGrants(alice.DID))
	// Output: alice.test true 1
}
