package main

import (
	"bytes"
	"log"
	"os"
	"path/filepath"
	"time"
)

// This example rotates the sealing key of a keyring and lists it: the new
// key seals, the old one still opens.
func Example_keyringRotation() {
	dir, err := os.MkdirTemp("", "atauth-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "keyring")

	c := &cli{
		stdout: os.Stdout,
		stderr: new(bytes.Buffer), // advice for humans, not shown here
		now:    func() time.Time { return time.Date(2026, 6, 12, 0, 0, 0, 0, time.UTC) },
		rand:   bytes.NewReader(make([]byte, 64)),
	}
	c.run([]string{"keygen", "sealing", "-id", "2025-12", "-o", path})
	c.run([]string{"keyring", "add", "-f", path})
	c.run([]string{"keyring", "show", "-f", path})
	// Output:
	// 20260612          seals and opens
	// 2025-12           opens
}
