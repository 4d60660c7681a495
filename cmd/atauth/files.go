package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// writeNewFile creates the file at path with mode 0600 and writes b to it.
// It refuses to overwrite an existing file: that file may be a key still in
// use.
func writeNewFile(path string, b []byte) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("atauth: %s already exists; keys are never overwritten", path)
		}
		return fmt.Errorf("atauth: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("atauth: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atauth: %w", err)
	}
	return nil
}

// replaceFile replaces the file at path with b, mode 0600, atomically: it
// writes a temporary file in the same directory and renames it over path,
// so a crash leaves either the old keyring or the new one, never half of
// one.
func replaceFile(path string, b []byte) (err error) {
	// CreateTemp creates the file with mode 0600.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("atauth: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("atauth: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("atauth: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atauth: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("atauth: %w", err)
	}
	return nil
}
