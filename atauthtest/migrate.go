package atauthtest

import (
	"fmt"
	"net/http/httptest"
)

// extraPDS is a PDS started by AddPDS.
type extraPDS struct {
	srv   *httptest.Server
	nonce *nonceState
	inst  *pdsInstance
}

// AddPDS starts another PDS that shares the network's authorization server,
// as the PDSs behind Bluesky's entryway do, and returns its URL. Accounts
// move to it with MoveAccount. It stops with the network; a state file
// does not keep it.
func (n *Network) AddPDS() (string, error) {
	nonce := &nonceState{}
	inst := &pdsInstance{nonce: nonce}
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = n.serverMiddleware(nonce, &n.stats.PDSRequests, n.pdsHandler(inst))
	inst.url = serverURL(srv)
	srv.Start()
	n.mu.Lock()
	n.extraPDS = append(n.extraPDS, &extraPDS{srv: srv, nonce: nonce, inst: inst})
	n.mu.Unlock()
	return inst.url, nil
}

// MoveAccount migrates the account did to the PDS at pdsURL: the network's
// own (PDSURL) or one from AddPDS. Its DID document names the new PDS at
// once, tokens issued from then on are for it, and the old PDS answers the
// account's requests with 400 AccountDeactivated. Grants stay valid: the
// authorization server is shared.
func (n *Network) MoveAccount(did, pdsURL string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.byDID[did]
	if !ok {
		return fmt.Errorf("atauthtest: no account %s", did)
	}
	if pdsURL != n.pdsURL && n.extra(pdsURL) == nil {
		return fmt.Errorf("atauthtest: %s is not a PDS of this network", pdsURL)
	}
	a.pds = pdsURL
	if pdsURL == n.pdsURL {
		a.pds = ""
	}
	return nil
}

func (n *Network) extra(url string) *extraPDS {
	for _, p := range n.extraPDS {
		if p.inst.url == url {
			return p
		}
	}
	return nil
}

// accountPDS is the URL of the PDS hosting a. The caller holds n.mu, or
// knows a's PDS cannot change meanwhile.
func (n *Network) accountPDS(a *account) string {
	if a == nil || a.pds == "" {
		return n.pdsURL
	}
	return a.pds
}

// pdsURLs lists every PDS of the network. The caller holds n.mu.
func (n *Network) pdsURLs() []string {
	urls := []string{n.pdsURL}
	for _, p := range n.extraPDS {
		urls = append(urls, p.inst.url)
	}
	return urls
}
