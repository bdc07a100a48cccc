// SPDX-License-Identifier: Apache-2.0

package coffer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	coffer "github.com/coffer-project/coffer/go"
	"github.com/coffer-project/coffer/go/internal/testdaemon"
)

const chunk = 16384

// A restore of a damaged backup: the sentinel, and only authentic plaintext before it (a prefix
// of the original, ending on a chunk the daemon verified), both streamed and by descriptor.
type damage struct {
	name    string
	format  string // of the backup
	mutate  func(ct []byte) []byte
	status  func(st coffer.EncryptionStatus) *coffer.EncryptionStatus
	want    error
	maxGood int // the most plaintext bytes that may come out before the error
}

func flip(i int) func([]byte) []byte {
	return func(ct []byte) []byte {
		c := append([]byte(nil), ct...)
		if i < 0 {
			i += len(c)
		}
		c[i] ^= 0x40
		return c
	}
}

func cut(n int) func([]byte) []byte {
	return func(ct []byte) []byte {
		if n < 0 {
			n += len(ct)
		}
		return append([]byte(nil), ct[:n]...)
	}
}

func same(st coffer.EncryptionStatus) *coffer.EncryptionStatus { return &st }

func TestDamagedBackups(t *testing.T) {
	e := env(t)
	pt := randomBytes(5*chunk+100, 42)
	ct, st := encryptStream(t, e.mainC, pt)
	hdr := 12 + int(binary.BigEndian.Uint32(ct[8:12])) // the coffer-v1 header's length
	body := hdr + 24 + 32                              // salt and commitment
	onDisk := chunk + 16                               // a sealed chunk
	vct, vst := encryptStream(t, e.mainC.WithOptions(coffer.Options{Format: "velero-v1"}), pt)

	// A backup encrypted by another key under the same Secret name: WRONG_KEY from its key id.
	dir := tempDir(t)
	otherSecrets := filepath.Join(dir, "secrets")
	if _, err := testdaemon.Secrets(otherSecrets, map[string]int{"raw": 32}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "pt"), pt)
	runCLI(t, e, "encrypt", "--offline", "--secrets-dir", otherSecrets, "--namespace", "velero",
		"--secret", "raw", "--in", filepath.Join(dir, "pt"), "--out", filepath.Join(dir, "other.coffer"))
	otherCT := readFile(t, filepath.Join(dir, "other.coffer"))

	otherSecret := func(s coffer.EncryptionStatus) *coffer.EncryptionStatus {
		b, _ := json.Marshal(s)
		var c coffer.EncryptionStatus
		json.Unmarshal(bytes.Replace(b, []byte(`"secretName":"raw"`), []byte(`"secretName":"other"`), 1), &c)
		return &c
	}
	designOther := func(coffer.EncryptionStatus) *coffer.EncryptionStatus {
		return &coffer.EncryptionStatus{IsEncrypted: true, KeyRetrieverType: "secret", Format: "velero-v1",
			KeyRetrieverConfig: map[string]string{"namespace": "velero", "secretName": "other"}}
	}

	cases := []struct {
		damage
		ct []byte
		st coffer.EncryptionStatus
	}{
		{damage{"coffer-v1/chunk2-flipped", "coffer-v1", flip(body + 2*onDisk + 5), same, coffer.ErrTampered, 2 * chunk}, ct, st},
		{damage{"coffer-v1/last-tag-flipped", "coffer-v1", flip(-1), same, coffer.ErrTampered, 5 * chunk}, ct, st},
		{damage{"coffer-v1/salt-flipped", "coffer-v1", flip(hdr + 3), same, coffer.ErrTampered, 0}, ct, st},
		{damage{"coffer-v1/cut-at-chunk", "coffer-v1", cut(body + 3*onDisk), same, coffer.ErrTruncated, 3 * chunk}, ct, st},
		{damage{"coffer-v1/cut-in-header", "coffer-v1", cut(hdr - 10), same, coffer.ErrTruncated, 0}, ct, st},
		{damage{"coffer-v1/cut-in-chunk", "coffer-v1", cut(body + 3*onDisk + 100), same, coffer.ErrTampered, 3 * chunk}, ct, st},
		{damage{"coffer-v1/other-key", "coffer-v1", cut(len(otherCT)), same, coffer.ErrWrongKey, 0}, otherCT, coffer.EncryptionStatus{}},
		{damage{"velero-v1/flipped", "velero-v1", flip(len(pt) / 2), same, coffer.ErrTampered, 0}, vct, vst},
		{damage{"velero-v1/tag-flipped", "velero-v1", flip(-1), same, coffer.ErrTampered, 0}, vct, vst},
		{damage{"velero-v1/cut", "velero-v1", cut(-1), same, coffer.ErrTampered, 0}, vct, vst},
		{damage{"velero-v1/cut-short", "velero-v1", cut(20), same, coffer.ErrTruncated, 0}, vct, vst},
		{damage{"velero-v1/other-key-id", "velero-v1", cut(len(vct)), otherSecret, coffer.ErrWrongKey, 0}, vct, vst},
		{damage{"velero-v1/other-key-design-status", "velero-v1", cut(len(vct)), designOther, coffer.ErrTampered, 0}, vct, vst},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := c.mutate(c.ct)
			var stp *coffer.EncryptionStatus
			if c.format != "coffer-v1" {
				stp = c.status(c.st)
			}
			check := func(how string, got []byte, err error) {
				t.Helper()
				if !errors.Is(err, c.want) {
					t.Fatalf("%s: error %v, want %v", how, err, c.want)
				}
				if len(got) > c.maxGood || !bytes.Equal(got, pt[:len(got)]) || len(got)%chunk != 0 {
					t.Fatalf("%s: %d bytes came out (at most %d authentic ones may)", how, len(got), c.maxGood)
				}
			}
			got, err := decryptStream(e.mainC, bad, stp)
			check("streamed", got, err)

			d := tempDir(t)
			writeFile(t, filepath.Join(d, "bad"), bad)
			in, _ := os.Open(filepath.Join(d, "bad"))
			defer in.Close()
			out, _ := os.Create(filepath.Join(d, "out"))
			defer out.Close()
			err = e.mainC.DecryptFile(context.Background(), in, out, stp)
			check("by descriptor", readFile(t, filepath.Join(d, "out")), err)
		})
	}
}
