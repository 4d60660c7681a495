package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/keys"
)

var testNow = time.Date(2026, 6, 12, 9, 30, 0, 0, time.UTC)

// fill returns a reader of n copies of each byte in bs, in order: the
// secrets of successive sealing keys.
func fill(bs ...byte) *bytes.Reader {
	var b []byte
	for _, c := range bs {
		b = append(b, bytes.Repeat([]byte{c}, keys.SecretSize)...)
	}
	return bytes.NewReader(b)
}

// runCLI runs args with a fixed clock and randomness and returns the exit
// code and outputs.
func runCLI(t *testing.T, rand io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{stdout: &out, stderr: &errOut, now: func() time.Time { return testNow }, rand: rand}
	code = c.run(args)
	return code, out.String(), errOut.String()
}

func mustRun(t *testing.T, rand io.Reader, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := runCLI(t, rand, args...)
	if code != 0 {
		t.Fatalf("atauth %s: exit code %d, want 0; stderr:\n%s", strings.Join(args, " "), code, stderr)
	}
	return stdout, stderr
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, got)
	}
}

func writeKeyringFile(t *testing.T, ring ...atauth.SealingKey) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyring")
	if err := os.WriteFile(path, keys.FormatKeyring(ring), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func readKeyring(t *testing.T, path string) []atauth.SealingKey {
	t.Helper()
	ring, err := keys.LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

func ids(ring []atauth.SealingKey) []string {
	var s []string
	for _, k := range ring {
		s = append(s, k.ID)
	}
	return s
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"nope"}, 2},
		{[]string{"keygen"}, 2},
		{[]string{"keygen", "rsa"}, 2},
		{[]string{"keygen", "client", "-bogus"}, 2},
		{[]string{"keygen", "client", "stray"}, 2},
		{[]string{"keyring", "show"}, 2},
		{[]string{"keyring", "remove", "-f", "x"}, 2},
		{[]string{"jwks"}, 2},
		{[]string{"help"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"keygen", "client", "-h"}, 0},
		{[]string{"keyring", "show", "-f", filepath.Join(t.TempDir(), "missing")}, 1},
		{[]string{"keygen", "client", "-not-before", "tomorrow"}, 1},
		{[]string{"keygen", "client", "-not-before", "-1h"}, 1},
		{[]string{"keygen", "sealing", "-id", "seventeen-chars-x"}, 1},
	} {
		var out, errOut bytes.Buffer
		if got := run(tc.args, &out, &errOut); got != tc.want {
			t.Errorf("run(%q): got exit code %d, want %d; stderr:\n%s", tc.args, got, tc.want, errOut.String())
		}
	}
}

func TestHelpShowsLoading(t *testing.T) {
	stdout, _ := mustRun(t, nil, "help")
	for _, want := range []string{"keys.LoadClientKey(", "keys.LoadKeyring(", "keygen client", "keyring add", "jwks"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help output lacks %q", want)
		}
	}
}

func TestKeygenClient(t *testing.T) {
	stdout, stderr := mustRun(t, nil, "keygen", "client")
	k, err := keys.ParseClientKeyJWK([]byte(stdout))
	if err != nil {
		t.Fatalf("keygen client output does not parse: %v\n%s", err, stdout)
	}
	if !regexp.MustCompile(`^20260612-[0-9a-f]{8}$`).MatchString(k.ID) {
		t.Errorf("default kid: got %q, want 20260612- and 8 hex digits", k.ID)
	}
	if !k.NotBefore.IsZero() {
		t.Errorf("NotBefore: got %v, want zero", k.NotBefore)
	}
	if !strings.Contains(stderr, "keys.LoadClientKey(") {
		t.Errorf("stderr does not say how to load the key:\n%s", stderr)
	}
	if strings.Contains(stderr, `"d"`) {
		t.Errorf("stderr contains the private key:\n%s", stderr)
	}
}

func TestKeygenClientFlags(t *testing.T) {
	for _, tc := range []struct {
		notBefore string
		want      time.Time
	}{
		{"24h", testNow.Add(24 * time.Hour)},
		{"2026-07-01T12:00:00+02:00", time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)},
	} {
		stdout, _ := mustRun(t, nil, "keygen", "client", "-kid", "next", "-not-before", tc.notBefore)
		k, err := keys.ParseClientKeyJWK([]byte(stdout))
		if err != nil {
			t.Fatal(err)
		}
		if k.ID != "next" || !k.NotBefore.Equal(tc.want) {
			t.Errorf("-not-before %s: got kid %q, NotBefore %v; want next, %v", tc.notBefore, k.ID, k.NotBefore, tc.want)
		}
	}
}

func TestKeygenClientFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client-key.json")
	stdout, _ := mustRun(t, nil, "keygen", "client", "-o", path)
	if stdout != "" {
		t.Errorf("stdout: got %q, want nothing when -o is set", stdout)
	}
	checkMode(t, path)
	first, err := keys.LoadClientKey(path)
	if err != nil {
		t.Fatal(err)
	}

	code, _, stderr := runCLI(t, nil, "keygen", "client", "-o", path)
	if code != 1 {
		t.Errorf("keygen client over an existing file: exit code %d, want 1", code)
	}
	if !strings.Contains(stderr, "already exists") {
		t.Errorf("stderr: got %q, want it to say the file exists", stderr)
	}
	again, err := keys.LoadClientKey(path)
	if err != nil || !again.Key.Equal(first.Key) {
		t.Errorf("the existing key file was changed (err %v)", err)
	}
}

func TestKeygenSealing(t *testing.T) {
	stdout, stderr := mustRun(t, fill(1), "keygen", "sealing")
	want := "20260612:" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)) + "\n"
	if stdout != want {
		t.Errorf("stdout: got %q, want %q", stdout, want)
	}
	if strings.Contains(stderr, want[9:20]) {
		t.Errorf("stderr repeats the secret:\n%s", stderr)
	}

	path := filepath.Join(t.TempDir(), "keyring")
	mustRun(t, fill(2), "keygen", "sealing", "-id", "first", "-o", path)
	checkMode(t, path)
	if diff := cmp.Diff([]string{"first"}, ids(readKeyring(t, path))); diff != "" {
		t.Errorf("new keyring ids (-want +got):\n%s", diff)
	}
	if code, _, _ := runCLI(t, fill(3), "keygen", "sealing", "-o", path); code != 1 {
		t.Errorf("keygen sealing over an existing file: exit code %d, want 1", code)
	}
}

func TestKeyringAdd(t *testing.T) {
	old := atauth.SealingKey{ID: "old", Secret: bytes.Repeat([]byte{1}, 32)}
	path := writeKeyringFile(t, old)

	mustRun(t, fill(2), "keyring", "add", "-f", path)
	mustRun(t, fill(3), "keyring", "add", "-f", path)
	mustRun(t, fill(4), "keyring", "add", "-f", path, "-id", "standby", "-standby")

	want := []atauth.SealingKey{
		{ID: "20260612-2", Secret: bytes.Repeat([]byte{3}, 32)},
		{ID: "20260612", Secret: bytes.Repeat([]byte{2}, 32)},
		old,
		{ID: "standby", Secret: bytes.Repeat([]byte{4}, 32)},
	}
	if diff := cmp.Diff(want, readKeyring(t, path)); diff != "" {
		t.Errorf("keyring after adds (-want +got):\n%s", diff)
	}
	checkMode(t, path)

	code, _, stderr := runCLI(t, fill(5), "keyring", "add", "-f", path, "-id", "old")
	if code != 1 || !strings.Contains(stderr, "already has") {
		t.Errorf("adding a duplicate id: got exit code %d, stderr %q; want 1 and an explanation", code, stderr)
	}
	if diff := cmp.Diff(want, readKeyring(t, path)); diff != "" {
		t.Errorf("a refused add changed the keyring (-want +got):\n%s", diff)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only the keyring (no temporary files left)", len(entries))
	}
}

func TestKeyringAddThroughSymlink(t *testing.T) {
	target := writeKeyringFile(t, atauth.SealingKey{ID: "old", Secret: bytes.Repeat([]byte{1}, 32)})
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	mustRun(t, fill(2), "keyring", "add", "-f", link, "-id", "new")
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a symbolic link (err %v)", link, err)
	}
	if diff := cmp.Diff([]string{"new", "old"}, ids(readKeyring(t, target))); diff != "" {
		t.Errorf("target keyring ids (-want +got):\n%s", diff)
	}
}

func TestKeyringPromoteAndRemove(t *testing.T) {
	k := func(id string, b byte) atauth.SealingKey {
		return atauth.SealingKey{ID: id, Secret: bytes.Repeat([]byte{b}, 32)}
	}
	path := writeKeyringFile(t, k("a", 1), k("b", 2), k("c", 3))

	mustRun(t, nil, "keyring", "promote", "-f", path, "-id", "c")
	if diff := cmp.Diff([]atauth.SealingKey{k("c", 3), k("a", 1), k("b", 2)}, readKeyring(t, path)); diff != "" {
		t.Errorf("after promote (-want +got):\n%s", diff)
	}
	mustRun(t, nil, "keyring", "remove", "-f", path, "-id", "b")
	if diff := cmp.Diff([]atauth.SealingKey{k("c", 3), k("a", 1)}, readKeyring(t, path)); diff != "" {
		t.Errorf("after remove (-want +got):\n%s", diff)
	}
	for _, args := range [][]string{
		{"keyring", "remove", "-f", path, "-id", "c"}, // seals
		{"keyring", "remove", "-f", path, "-id", "zz"},
		{"keyring", "promote", "-f", path, "-id", "zz"},
	} {
		if code, _, _ := runCLI(t, nil, args...); code != 1 {
			t.Errorf("atauth %s: exit code %d, want 1", strings.Join(args, " "), code)
		}
	}
	if diff := cmp.Diff([]string{"c", "a"}, ids(readKeyring(t, path))); diff != "" {
		t.Errorf("refused commands changed the keyring (-want +got):\n%s", diff)
	}
}

func TestKeyringShowHidesSecrets(t *testing.T) {
	ring := []atauth.SealingKey{
		{ID: "new", Secret: bytes.Repeat([]byte{0xaa}, 32)},
		{ID: "old", Secret: bytes.Repeat([]byte{0xbb}, 32)},
	}
	path := writeKeyringFile(t, ring...)
	stdout, stderr := mustRun(t, nil, "keyring", "show", "-f", path)
	want := "new               seals and opens\nold               opens\n"
	if stdout != want {
		t.Errorf("stdout: got %q, want %q", stdout, want)
	}
	for _, k := range ring {
		for _, s := range []string{base64.RawURLEncoding.EncodeToString(k.Secret)[:10], base64.StdEncoding.EncodeToString(k.Secret)[:10]} {
			if strings.Contains(stdout+stderr, s) {
				t.Errorf("output contains the secret of %q", k.ID)
			}
		}
	}
}

func TestJWKS(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for _, id := range []string{"k1", "k2", "k3"} {
		p := filepath.Join(dir, id+".json")
		mustRun(t, nil, "keygen", "client", "-kid", id, "-o", p)
		paths = append(paths, p)
	}
	stdout, _ := mustRun(t, nil, "jwks", "-f", paths[0], "-f", paths[1], paths[2])
	if strings.Contains(stdout, `"d"`) {
		t.Errorf("jwks output has a private member:\n%s", stdout)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(stdout), &set); err != nil {
		t.Fatalf("jwks output is not JSON: %v\n%s", err, stdout)
	}
	var got []string
	for _, k := range set.Keys {
		got = append(got, k["kid"].(string))
		if _, ok := k["d"]; ok {
			t.Errorf("key %v has d", k["kid"])
		}
	}
	if diff := cmp.Diff([]string{"k1", "k2", "k3"}, got); diff != "" {
		t.Errorf("jwks kids (-want +got):\n%s", diff)
	}
	ks, err := keys.LoadClientKeys(paths...)
	if err != nil {
		t.Fatal(err)
	}
	want, err := keys.MarshalPublicJWKS(ks)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(want)+"\n" {
		t.Errorf("jwks output: got %s, want %s", stdout, want)
	}

	if code, _, _ := runCLI(t, nil, "jwks", paths[0], paths[0]); code != 1 {
		t.Errorf("jwks with a duplicate kid: exit code %d, want 1", code)
	}
}
