package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/keys"
)

func (c *cli) keyringAdd(args []string) error {
	fs := c.flags("keyring add", "-f FILE [-id ID] [-standby]")
	file := fs.String("f", "", "the keyring `FILE`")
	id := fs.String("id", "", "the new key's `ID`, 1 to 16 visible ASCII characters (default: today's date)")
	standby := fs.Bool("standby", false, "add the key last: it opens but does not seal until 'keyring promote'")
	if err := parse(fs, args, false); err != nil {
		return err
	}
	path, ring, err := loadKeyring(fs, *file)
	if err != nil {
		return err
	}
	if *id == "" {
		*id = freeID(ring, c.now().UTC().Format("20060102"))
	} else if indexOf(ring, *id) >= 0 {
		return fmt.Errorf("atauth: keyring %s already has a key with id %q", *file, *id)
	}
	k, err := keys.NewSealingKey(*id, c.rand)
	if err != nil {
		return err
	}
	if *standby {
		ring = append(ring, k)
	} else {
		ring = append([]atauth.SealingKey{k}, ring...)
	}
	if err := writeKeyring(path, ring); err != nil {
		return err
	}
	if *standby {
		fmt.Fprintf(c.stderr, `Added sealing key %q to the end of %s: it opens but does not seal.
Once every instance of the app has loaded it, make it seal with:

	atauth keyring promote -f %s -id %s
`, k.ID, *file, shellQuote(*file), shellQuote(k.ID))
		return nil
	}
	fmt.Fprintf(c.stderr, `Added sealing key %q in front of %s: it seals once the app reloads the
keyring, and the older keys still open what they sealed. Remove an old
key (atauth keyring remove) only once nothing it sealed is still alive: after
the longest session lifetime. An app running several instances should add
the key with -standby first, so that no instance seals with a key another
cannot open yet.
`, k.ID, *file)
	return nil
}

func (c *cli) keyringPromote(args []string) error {
	fs := c.flags("keyring promote", "-f FILE -id ID")
	file := fs.String("f", "", "the keyring `FILE`")
	id := fs.String("id", "", "the `ID` of the key to move to the front")
	if err := parse(fs, args, false); err != nil {
		return err
	}
	if err := required(fs, "id", *id); err != nil {
		return err
	}
	path, ring, err := loadKeyring(fs, *file)
	if err != nil {
		return err
	}
	i := indexOf(ring, *id)
	if i < 0 {
		return fmt.Errorf("atauth: keyring %s has no key with id %q", *file, *id)
	}
	k := ring[i]
	ring = append([]atauth.SealingKey{k}, slices.Delete(ring, i, i+1)...)
	if err := writeKeyring(path, ring); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Sealing key %q now seals in %s; the other keys still open.\n", k.ID, *file)
	return nil
}

func (c *cli) keyringRemove(args []string) error {
	fs := c.flags("keyring remove", "-f FILE -id ID")
	file := fs.String("f", "", "the keyring `FILE`")
	id := fs.String("id", "", "the `ID` of the key to remove")
	if err := parse(fs, args, false); err != nil {
		return err
	}
	if err := required(fs, "id", *id); err != nil {
		return err
	}
	path, ring, err := loadKeyring(fs, *file)
	if err != nil {
		return err
	}
	switch i := indexOf(ring, *id); {
	case i < 0:
		return fmt.Errorf("atauth: keyring %s has no key with id %q", *file, *id)
	case i == 0:
		return fmt.Errorf("atauth: key %q seals in %s: add or promote another key first", *id, *file)
	default:
		ring = slices.Delete(ring, i, i+1)
	}
	if err := writeKeyring(path, ring); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Removed sealing key %q from %s. Values it sealed can no longer be opened.\n", *id, *file)
	return nil
}

func (c *cli) keyringShow(args []string) error {
	fs := c.flags("keyring show", "-f FILE")
	file := fs.String("f", "", "the keyring `FILE`")
	if err := parse(fs, args, false); err != nil {
		return err
	}
	_, ring, err := loadKeyring(fs, *file)
	if err != nil {
		return err
	}
	for i, k := range ring {
		role := "opens"
		if i == 0 {
			role = "seals and opens"
		}
		fmt.Fprintf(c.stdout, "%-16s  %s\n", k.ID, role)
	}
	return nil
}

// loadKeyring loads the keyring named by -f. It returns the path with
// symbolic links resolved, so that replacing the file keeps the links.
func loadKeyring(fs *flag.FlagSet, file string) (string, []atauth.SealingKey, error) {
	if err := required(fs, "f", file); err != nil {
		return "", nil, err
	}
	ring, err := keys.LoadKeyring(file)
	if err != nil {
		return "", nil, err
	}
	path, err := filepath.EvalSymlinks(file)
	if err != nil {
		return "", nil, fmt.Errorf("atauth: %w", err)
	}
	return path, ring, nil
}

// writeKeyring checks ring as an app would load it, then replaces the file
// at path with it.
func writeKeyring(path string, ring []atauth.SealingKey) error {
	b := keys.FormatKeyring(ring)
	if _, err := keys.ParseKeyring(b); err != nil {
		return err
	}
	return replaceFile(path, b)
}

func indexOf(ring []atauth.SealingKey, id string) int {
	return slices.IndexFunc(ring, func(k atauth.SealingKey) bool { return k.ID == id })
}

// freeID returns base, or base-2, base-3, … if ring already has that id.
func freeID(ring []atauth.SealingKey, base string) string {
	id := base
	for n := 2; indexOf(ring, id) >= 0; n++ {
		id = fmt.Sprintf("%s-%d", base, n)
	}
	return id
}
