package main

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/keys"
)

func (c *cli) keygenClient(args []string) error {
	fs := c.flags("keygen client", "[-kid ID] [-not-before TIME] [-o FILE]")
	kid := fs.String("kid", "", "the key's `ID` (default: today's date and the start of the key's thumbprint)")
	notBefore := fs.String("not-before", "", "when the key starts signing: an RFC 3339 `TIME` or a duration from now such as 24h (default: at once)")
	out := fs.String("o", "", "write the key to `FILE`, created with mode 0600 (never overwritten), instead of stdout")
	if err := parse(fs, args, false); err != nil {
		return err
	}
	nbf, err := c.parseNotBefore(*notBefore)
	if err != nil {
		return err
	}

	id := *kid
	if id == "" {
		id = "pending" // replaced below, once the thumbprint is known
	}
	k, err := keys.NewClientKey(id)
	if err != nil {
		return err
	}
	if *kid == "" {
		tp, err := keys.Thumbprint(k.Key)
		if err != nil {
			return err
		}
		k.ID = c.now().UTC().Format("20060102") + "-" + hex.EncodeToString(tp[:4])
	}
	k.NotBefore = nbf
	jwk, err := keys.MarshalClientKeyJWK(k)
	if err != nil {
		return err
	}
	jwk = append(jwk, '\n')

	if *out == "" {
		if _, err := c.stdout.Write(jwk); err != nil {
			return fmt.Errorf("atauth: %w", err)
		}
		fmt.Fprintf(c.stderr, "\nClient key %q printed above. It is a private key: store it as a secret, for example in client-key.json.\n", k.ID)
	} else {
		if err := writeNewFile(*out, jwk); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "Client key %q written to %s. It is a private key: keep it secret.\n", k.ID, *out)
	}
	path := *out
	if path == "" {
		path = "client-key.json"
	}
	when := "It signs at once."
	if !nbf.IsZero() {
		when = fmt.Sprintf("It is published at once and signs from %s on; keep the current key configured next to it until then.", nbf.Format(time.RFC3339))
	}
	fmt.Fprintf(c.stderr, `%s

Load it in the app (package github.com/atauth/atauth/keys):

	ck, err := keys.LoadClientKey(%q)
	cfg.ClientKeys = append(cfg.ClientKeys, ck)

The Manager publishes every configured key at /.well-known/jwks.json
(see it with: atauth jwks %s).
`, when, path, shellQuote(path))
	return nil
}

// parseNotBefore parses -not-before: empty, an RFC 3339 time, or a
// non-negative duration from now.
func (c *cli) parseNotBefore(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("atauth: -not-before %q is in the past", s)
		}
		return c.now().Add(d).UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("atauth: -not-before %q is neither an RFC 3339 time nor a duration such as 24h", s)
	}
	return t.UTC(), nil
}

func (c *cli) keygenSealing(args []string) error {
	fs := c.flags("keygen sealing", "[-id ID] [-o FILE]")
	id := fs.String("id", "", "the key's `ID`, 1 to 16 visible ASCII characters (default: today's date)")
	out := fs.String("o", "", "start a keyring `FILE` with the key, created with mode 0600 (never overwritten), instead of printing it")
	if err := parse(fs, args, false); err != nil {
		return err
	}
	if *id == "" {
		*id = c.now().UTC().Format("20060102")
	}
	k, err := keys.NewSealingKey(*id, c.rand)
	if err != nil {
		return err
	}
	line := keys.FormatKeyring([]atauth.SealingKey{k})
	if *out == "" {
		if _, err := c.stdout.Write(line); err != nil {
			return fmt.Errorf("atauth: %w", err)
		}
		fmt.Fprintf(c.stderr, `
Sealing key %q printed above as ID:SECRET. Keep it secret. Put it in a
keyring file (one key per line; the first seals, all open) or in an
environment variable, and load it in the app (package
github.com/atauth/atauth/keys):

	ring, err := keys.LoadKeyring("keyring")
	// or: ring, err := keys.ParseKeyring([]byte(os.Getenv("ATAUTH_KEYRING")))
	cfg.SealingKeys = ring

Rotate later with: atauth keyring add -f keyring
`, k.ID)
		return nil
	}
	if err := writeNewFile(*out, line); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, `Keyring %s started with sealing key %q. Keep it secret. Load it in the
app (package github.com/atauth/atauth/keys):

	ring, err := keys.LoadKeyring(%q)
	cfg.SealingKeys = ring

Rotate later with: atauth keyring add -f %s
`, *out, k.ID, *out, shellQuote(*out))
	return nil
}

// shellQuote quotes s for the command lines printed as advice.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
