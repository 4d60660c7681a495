// Atauth creates and rotates the keys an atauth.Config needs: the ES256
// client key of a confidential client and the sealing keyring that
// encrypts secrets at rest.
//
// Usage:
//
//	atauth keygen client  [-kid ID] [-not-before TIME] [-o FILE]
//	atauth keygen sealing [-id ID] [-o FILE]
//	atauth keyring add     -f FILE [-id ID] [-standby]
//	atauth keyring promote -f FILE -id ID
//	atauth keyring remove  -f FILE -id ID
//	atauth keyring show    -f FILE
//	atauth jwks [-f] CLIENTKEY.json...
//
// Run it with go run github.com/atauth/atauth/cmd/atauth@latest.
//
// "keygen client" prints a private JWK (or writes it to FILE, mode 0600,
// never overwriting). "keygen sealing" prints a new keyring line ID:SECRET
// (or starts a keyring FILE). "keyring add" puts a new key in front of a
// keyring file, so that it seals while the older keys still open what they
// sealed; with -standby it goes last and only opens until "keyring promote"
// moves it to the front, which is how an app running several instances
// rotates without one instance sealing what another cannot yet open.
// "keyring remove" drops an old key once nothing it sealed is still alive.
// "keyring show" lists the ids, never the secrets. "jwks" prints the public
// JWK Set of client keys, the document the app publishes at
// /.well-known/jwks.json.
//
// An app loads the files with package github.com/atauth/atauth/keys:
//
//	ck, err := keys.LoadClientKey("client-key.json")
//	...
//	ring, err := keys.LoadKeyring("keyring")
//	...
//	m, err := atauth.New(atauth.Config{
//		ClientKeys:  []atauth.ClientKey{ck},
//		SealingKeys: ring,
//		// ClientID, RedirectURL, Store, …
//	})
//
// To rotate the client key, generate the next one with -not-before 24h and
// configure both keys: both are published at once, and the new one signs
// from its NotBefore on, when authorization servers that cache the JWKS
// know it. Remove the old key after that.
package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

const usage = `atauth creates and rotates the keys of an atauth.Config.

Usage:

  atauth keygen client  [-kid ID] [-not-before TIME] [-o FILE]
        a new ES256 client key (private JWK) for Config.ClientKeys
  atauth keygen sealing [-id ID] [-o FILE]
        a new sealing key ID:SECRET, or a new keyring FILE, for Config.SealingKeys
  atauth keyring add     -f FILE [-id ID] [-standby]
        add a new sealing key in front of a keyring (-standby: at the end)
  atauth keyring promote -f FILE -id ID
        move a key to the front of a keyring: it seals from then on
  atauth keyring remove  -f FILE -id ID
        remove a key that no longer seals
  atauth keyring show    -f FILE
        list a keyring's key ids (never the secrets)
  atauth jwks [-f] CLIENTKEY.json...
        print the public JWK Set of client keys (/.well-known/jwks.json)

Run "atauth COMMAND -h" for a command's flags.

An app loads the files with github.com/atauth/atauth/keys:

  ck, err := keys.LoadClientKey("client-key.json")
  ring, err := keys.LoadKeyring("keyring")
  m, err := atauth.New(atauth.Config{
          ClientKeys:  []atauth.ClientKey{ck},
          SealingKeys: ring,
          // ClientID, RedirectURL, Store, ...
  })

A keyring is one ID:SECRET line per key; the first key seals, every key
opens. keys.ParseKeyring also reads it from an environment variable, with
the keys separated by spaces.
`

// errUsage reports a command line that names no command or has stray
// arguments; run has already explained it.
var errUsage = errors.New("usage")

// cli runs the commands. now and rand are fields so that tests can fix them.
type cli struct {
	stdout, stderr io.Writer
	now            func() time.Time
	rand           io.Reader
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command named by args and returns the process exit code: 0
// on success, 1 when the command fails, 2 for a bad command line.
func run(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr, now: time.Now, rand: rand.Reader}
	return c.run(args)
}

func (c *cli) run(args []string) int {
	err := c.dispatch(args)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintln(c.stderr, err)
		return 1
	}
}

func (c *cli) dispatch(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return errUsage
	}
	sub := func() string {
		if len(args) < 2 {
			return ""
		}
		return args[1]
	}
	switch cmd := args[0]; cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, usage)
		return nil
	case "keygen":
		switch sub() {
		case "client":
			return c.keygenClient(args[2:])
		case "sealing":
			return c.keygenSealing(args[2:])
		}
	case "keyring":
		switch sub() {
		case "add":
			return c.keyringAdd(args[2:])
		case "promote":
			return c.keyringPromote(args[2:])
		case "remove":
			return c.keyringRemove(args[2:])
		case "show":
			return c.keyringShow(args[2:])
		}
	case "jwks":
		return c.jwks(args[1:])
	}
	fmt.Fprintf(c.stderr, "atauth: unknown command %q\n\n%s", strings.Join(args[:min(len(args), 2)], " "), usage)
	return errUsage
}

// flags returns a flag set for the command name whose -h output shows
// synopsis.
func (c *cli) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: atauth %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args into fs. It returns errUsage for bad flags, for
// positional arguments unless positional is set, and flag.ErrHelp for -h.
func parse(fs *flag.FlagSet, args []string, positional bool) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if !positional && fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "atauth %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		fs.Usage()
		return errUsage
	}
	return nil
}

// required reports a missing required flag as a usage error.
func required(fs *flag.FlagSet, name, value string) error {
	if value != "" {
		return nil
	}
	fmt.Fprintf(fs.Output(), "atauth %s: -%s is required\n", fs.Name(), name)
	fs.Usage()
	return errUsage
}
