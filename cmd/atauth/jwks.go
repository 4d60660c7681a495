package main

import (
	"fmt"
	"strings"

	"github.com/atauth/atauth/keys"
)

// fileList is a flag that may be repeated.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

func (c *cli) jwks(args []string) error {
	fs := c.flags("jwks", "[-f] CLIENTKEY.json...")
	var files fileList
	fs.Var(&files, "f", "a client key `FILE` (private JWK); may be repeated, or the files given as arguments")
	if err := parse(fs, args, true); err != nil {
		return err
	}
	files = append(files, fs.Args()...)
	if err := required(fs, "f", strings.Join(files, ",")); err != nil {
		return err
	}
	ks, err := keys.LoadClientKeys(files...)
	if err != nil {
		return err
	}
	b, err := keys.MarshalPublicJWKS(ks)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(c.stdout, "%s\n", b); err != nil {
		return fmt.Errorf("atauth: %w", err)
	}
	return nil
}
