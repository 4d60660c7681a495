package keys_test

import (
	"bytes"
	"fmt"
	"log"
	"os"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/keys"
)

func ExampleNewSealingKey() {
	// Pass nil, or crypto/rand.Reader, outside tests.
	k, err := keys.NewSealingKey("2026-06", bytes.NewReader(bytes.Repeat([]byte{0xfb}, 32)))
	if err != nil {
		log.Fatal(err)
	}
	os.Stdout.Write(keys.FormatKeyring([]atauth.SealingKey{k}))
	// Output:
	// 2026-06:-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s
}

func ExampleParseKeyring() {
	// The first key seals; both open. In production the keyring comes from
	// a file (LoadKeyring) or a secret in the environment.
	ring, err := keys.ParseKeyring([]byte(
		"2026-06:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\n" +
			"2025-12:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI\n"))
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range ring {
		fmt.Println(k.ID, len(k.Secret))
	}
	// Output:
	// 2026-06 32
	// 2025-12 32
}

func ExampleMarshalClientKeyJWK() {
	k, err := keys.NewClientKey("2026-06")
	if err != nil {
		log.Fatal(err)
	}
	jwk, err := keys.MarshalClientKeyJWK(k)
	if err != nil {
		log.Fatal(err)
	}
	// Store jwk as a secret; the app reads it back with LoadClientKey or
	// ParseClientKeyJWK.
	back, err := keys.ParseClientKeyJWK(jwk)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(back.ID, back.Key.Equal(k.Key))
	// Output:
	// 2026-06 true
}
