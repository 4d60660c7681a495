package atauthtest

import (
	"crypto/ecdh"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// ErrHandleTaken is returned by [Network.CreateAccount] when the handle
// already belongs to an account.
var ErrHandleTaken = errors.New("atauthtest: handle already taken")

// Account is an account of the network.
type Account struct {
	DID      string
	Handle   string
	Password string
}

type account struct {
	Account
	multikey string // publicKeyMultibase of the #atproto verification method
	// pds is the URL of the PDS hosting the account; "" is the main one.
	pds string
	// relativeIDs makes the DID document use "#atproto_pds" rather than
	// "did:plc:…#atproto_pds"; accounts alternate so clients meet both.
	relativeIDs bool
}

// CreateAccount creates an account with a new did:plc. The handle must be a
// valid ATProto handle such as "alice.test"; it is stored in lower case.
func (n *Network) CreateAccount(handle, password string) (Account, error) {
	h, err := syntax.ParseHandle(handle)
	if err != nil {
		return Account{}, fmt.Errorf("atauthtest: invalid handle %q: %w", handle, err)
	}
	if password == "" {
		return Account{}, errors.New("atauthtest: password must not be empty")
	}
	key, err := ecdh.P256().GenerateKey(n.cfg.rand)
	if err != nil {
		return Account{}, fmt.Errorf("atauthtest: generating account key: %w", err)
	}
	did := n.newDID()

	n.mu.Lock()
	defer n.mu.Unlock()
	normalized := h.Normalize().String()
	if _, taken := n.byHandle[normalized]; taken {
		return Account{}, fmt.Errorf("%w: %s", ErrHandleTaken, normalized)
	}
	a := &account{
		Account:     Account{DID: did, Handle: normalized, Password: password},
		multikey:    p256Multikey(key.PublicKey().Bytes()),
		relativeIDs: len(n.accounts)%2 == 0,
	}
	n.accounts = append(n.accounts, a)
	n.byDID[did] = a
	n.byHandle[normalized] = a
	n.persistLocked()
	return a.Account, nil
}

// ChangeHandle gives the account did a new handle, as a user does in their
// PDS's settings: its DID document and handle resolution follow at once.
func (n *Network) ChangeHandle(did, handle string) error {
	h, err := syntax.ParseHandle(handle)
	if err != nil {
		return fmt.Errorf("atauthtest: invalid handle %q: %w", handle, err)
	}
	normalized := h.Normalize().String()
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.byDID[did]
	if !ok {
		return fmt.Errorf("atauthtest: no account %s", did)
	}
	if other, taken := n.byHandle[normalized]; taken && other != a {
		return fmt.Errorf("%w: %s", ErrHandleTaken, normalized)
	}
	delete(n.byHandle, a.Handle)
	a.Handle = normalized
	n.byHandle[normalized] = a
	n.persistLocked()
	return nil
}

// Accounts returns every account, in creation order.
func (n *Network) Accounts() []Account {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Account, len(n.accounts))
	for i, a := range n.accounts {
		out[i] = a.Account
	}
	return out
}

// lookupAccount finds an account by handle or DID. The caller holds n.mu.
func (n *Network) lookupAccount(identifier string) *account {
	id := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(identifier), "@"))
	if strings.HasPrefix(id, "did:") {
		return n.byDID[strings.TrimSpace(identifier)]
	}
	return n.byHandle[id]
}

// checkPassword reports whether password opens the account, in constant time.
func (a *account) checkPassword(password string) bool {
	return subtle.ConstantTimeCompare([]byte(a.Password), []byte(password)) == 1
}

func (n *Network) plcHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": "method not allowed"})
			return
		}
		did := strings.TrimPrefix(r.URL.Path, "/")
		n.mu.Lock()
		a := n.byDID[did]
		var doc map[string]any
		if a != nil {
			doc = n.didDocument(a)
		}
		n.mu.Unlock()
		if doc == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"message": "DID not registered: " + did})
			return
		}
		writeJSON(w, http.StatusOK, doc)
	})
}

// didDocument renders the DID document of a, as plc.directory does. The
// caller holds n.mu.
func (n *Network) didDocument(a *account) map[string]any {
	prefix := a.DID
	if a.relativeIDs {
		prefix = ""
	}
	return map[string]any{
		"@context": []string{
			"https://www.w3.org/ns/did/v1",
			"https://w3id.org/security/multikey/v1",
		},
		"id":          a.DID,
		"alsoKnownAs": []string{"at://" + a.Handle},
		"verificationMethod": []map[string]string{{
			"id":                 prefix + "#atproto",
			"type":               "Multikey",
			"controller":         a.DID,
			"publicKeyMultibase": a.multikey,
		}},
		"service": []map[string]string{{
			"id":              prefix + "#atproto_pds",
			"type":            "AtprotoPersonalDataServer",
			"serviceEndpoint": n.accountPDS(a),
		}},
	}
}

// p256Multikey encodes an uncompressed P-256 public key as a did:key style
// multibase string: base58btc of the p256-pub multicodec and the compressed
// point.
func p256Multikey(uncompressed []byte) string {
	if len(uncompressed) != 65 {
		return ""
	}
	x, y := uncompressed[1:33], uncompressed[33:]
	compressed := make([]byte, 0, 35)
	compressed = append(compressed, 0x80, 0x24, 0x02|(y[31]&1))
	compressed = append(compressed, x...)
	return "z" + base58(compressed)
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

func base58(b []byte) string {
	x := new(big.Int).SetBytes(b)
	radix := big.NewInt(58)
	mod := new(big.Int)
	var out []byte
	for x.Sign() > 0 {
		x.DivMod(x, radix, mod)
		out = append(out, base58Alphabet[mod.Int64()])
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, base58Alphabet[0])
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}
