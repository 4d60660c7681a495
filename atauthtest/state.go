package atauthtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// stateVersion is the format of the state file. A file of another version
// is refused rather than half understood.
const stateVersion = 1

// WithStateFile keeps the network's lasting state in the JSON file at path,
// so that a program such as a demo can stop and start again without
// breaking the sessions its users had. The directory must exist.
//
// If the file exists, Start restores from it: the accounts (DID, handle,
// password, the public key of their DID document), the authorization
// server's signing key, the live grants with their current and spent
// refresh tokens, and the ports of the three servers. Start listens on the
// old ports again, because DID documents name the PDS's URL and sessions
// name the issuer's; when a port is taken it logs a warning (see
// [WithLogger]) and takes a free one, and sessions made before the restart
// stop working. A file that cannot be read or parsed fails Start, and is
// left as it is.
//
// The file is rewritten, atomically (a temporary file renamed over it),
// before every change is answered: a new account or handle, a new grant, a
// refresh-token rotation, a revocation. A crash therefore loses nothing a
// client has seen. A failed save is logged, and the next change or Close
// tries again.
//
// Some state is deliberately not kept: pending authorization requests and
// codes (a sign-in in progress must start again), DPoP nonces and replay
// caches, the fault knobs and [Stats], and access tokens. The PDS answers an
// access token issued before the restart with 401 invalid_token, so clients
// refresh, as they must when a real PDS rotates its keys.
//
// The file holds passwords and private keys in clear; it is written with
// mode 0600. One network at a time may use a file.
func WithStateFile(path string) Option {
	return func(c *config) { c.stateFile = path }
}

// savedState is the content of the state file.
type savedState struct {
	Version    int             `json:"version"`
	Ports      savedPorts      `json:"ports"`
	SigningKey json.RawMessage `json:"signing_key"` // private JWK
	Accounts   []savedAccount  `json:"accounts"`
	Grants     []savedGrant    `json:"grants"`
}

// savedPorts are the 127.0.0.1 ports of the servers.
type savedPorts struct {
	PLC int `json:"plc"`
	PDS int `json:"pds"`
	AS  int `json:"as"`
}

type savedAccount struct {
	DID         string `json:"did"`
	Handle      string `json:"handle"`
	Password    string `json:"password"`
	Multikey    string `json:"multikey"`
	RelativeIDs bool   `json:"relative_ids"`
}

type savedGrant struct {
	ID         string               `json:"id"`
	DID        string               `json:"did"`
	ClientID   string               `json:"client_id"`
	AuthMethod string               `json:"auth_method"`
	AuthKID    string               `json:"auth_kid,omitempty"`
	JKT        string               `json:"jkt"`
	Scope      string               `json:"scope"`
	Expires    time.Time            `json:"expires"`
	Refresh    string               `json:"refresh,omitempty"`
	Spent      map[string]time.Time `json:"spent,omitempty"`
	CanRenew   bool                 `json:"can_renew"`
}

// loadState reads the state file at path. It returns nil, nil when path is
// empty or no file exists yet.
func loadState(path string) (*savedState, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("atauthtest: reading the state file: %w", err)
	}
	var s savedState
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("atauthtest: state file %s: %w", path, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("atauthtest: state file %s: version %d, want %d", path, s.Version, stateVersion)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("atauthtest: state file %s: %w", path, err)
	}
	return &s, nil
}

// check refuses a state that restore could only half apply.
func (s *savedState) check() error {
	for _, p := range []int{s.Ports.PLC, s.Ports.PDS, s.Ports.AS} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("port %d out of range", p)
		}
	}
	dids := make(map[string]bool)
	handles := make(map[string]bool)
	for _, a := range s.Accounts {
		if !strings.HasPrefix(a.DID, "did:") || a.Handle == "" || a.Password == "" || a.Multikey == "" {
			return fmt.Errorf("incomplete account %q", a.DID)
		}
		if dids[a.DID] || handles[a.Handle] {
			return fmt.Errorf("account %s (%s) appears twice", a.DID, a.Handle)
		}
		dids[a.DID], handles[a.Handle] = true, true
	}
	for _, g := range s.Grants {
		if g.ID == "" || g.DID == "" || g.ClientID == "" || g.JKT == "" {
			return fmt.Errorf("incomplete grant %q", g.ID)
		}
	}
	return nil
}

// signingKey parses the saved private key of the AS.
func (s *savedState) signingKey() (jwk.Key, error) {
	key, err := jwk.ParseKey(s.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("atauthtest: state file signing key: %w", err)
	}
	if _, ok := key.(jwk.ECDSAPrivateKey); !ok || key.KeyID() == "" {
		return nil, errors.New("atauthtest: state file signing key: want a private EC key with a kid")
	}
	return key, nil
}

// restore loads the accounts and grants of s into a network that has not
// started.
func (n *Network) restore(s *savedState) {
	for _, sa := range s.Accounts {
		a := &account{
			Account:     Account{DID: sa.DID, Handle: sa.Handle, Password: sa.Password},
			multikey:    sa.Multikey,
			relativeIDs: sa.RelativeIDs,
		}
		n.accounts = append(n.accounts, a)
		n.byDID[a.DID] = a
		n.byHandle[a.Handle] = a
	}
	for _, sg := range s.Grants {
		g := &grant{
			id:  sg.ID,
			did: sg.DID,
			// A grant only compares its client's id: the token endpoint
			// resolves the client afresh on every request.
			client:   &client{id: sg.ClientID},
			auth:     clientAuth{method: sg.AuthMethod, kid: sg.AuthKID},
			jkt:      sg.JKT,
			scope:    sg.Scope,
			expires:  sg.Expires,
			refresh:  sg.Refresh,
			spent:    maps.Clone(sg.Spent),
			canRenew: sg.CanRenew,
		}
		if g.spent == nil {
			g.spent = make(map[string]time.Time)
		}
		n.grants[g.id] = g
		if g.refresh != "" {
			n.refreshIndex[g.refresh] = g
		}
		for t := range g.spent {
			n.refreshIndex[t] = g
		}
	}
}

// persistLocked saves the state if the network has a state file, and logs
// a failure: the change it follows has happened in memory, and the next
// save writes it again. The caller holds n.mu.
func (n *Network) persistLocked() {
	if n.cfg.stateFile == "" {
		return
	}
	if err := n.saveLocked(); err != nil {
		n.cfg.logger.Error("atauthtest: saving the network state failed", "file", n.cfg.stateFile, "err", err)
	}
}

// saveLocked writes the state file. The caller holds n.mu.
func (n *Network) saveLocked() error {
	key, err := json.Marshal(n.signingKey)
	if err != nil {
		return fmt.Errorf("atauthtest: encoding the signing key: %w", err)
	}
	s := savedState{
		Version: stateVersion,
		Ports: savedPorts{
			PLC: listenPort(n.plcURL),
			PDS: listenPort(n.pdsURL),
			AS:  listenPort(n.asURL),
		},
		SigningKey: key,
		Accounts:   make([]savedAccount, 0, len(n.accounts)),
		Grants:     []savedGrant{},
	}
	for _, a := range n.accounts {
		s.Accounts = append(s.Accounts, savedAccount{
			DID:         a.DID,
			Handle:      a.Handle,
			Password:    a.Password,
			Multikey:    a.multikey,
			RelativeIDs: a.relativeIDs,
		})
	}
	now := n.cfg.now()
	for _, id := range slices.Sorted(maps.Keys(n.grants)) {
		g := n.grants[id]
		if !g.alive(now) {
			continue
		}
		s.Grants = append(s.Grants, savedGrant{
			ID:         g.id,
			DID:        g.did,
			ClientID:   g.client.id,
			AuthMethod: g.auth.method,
			AuthKID:    g.auth.kid,
			JKT:        g.jkt,
			Scope:      g.scope,
			Expires:    g.expires,
			Refresh:    g.refresh,
			Spent:      g.spent,
			CanRenew:   g.canRenew,
		})
	}
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("atauthtest: encoding the state: %w", err)
	}
	return writeFileAtomic(n.cfg.stateFile, append(data, '\n'))
}

// listenPort returns the port of a server URL such as http://127.0.0.1:4321,
// or 0 before the servers listen.
func listenPort(serverURL string) int {
	_, port, err := net.SplitHostPort(strings.TrimPrefix(serverURL, "http://"))
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(port)
	return p
}

// writeFileAtomic replaces the file at path with data, mode 0600, so that
// a reader or a crash sees the old content or the new, never a mix.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("atauthtest: saving the state: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("atauthtest: saving the state: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("atauthtest: saving the state: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("atauthtest: saving the state: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("atauthtest: saving the state: %w", err)
	}
	// Make the rename itself durable; a directory that cannot be synced
	// (some filesystems refuse) still holds the new file.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
