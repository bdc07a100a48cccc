// SPDX-License-Identifier: Apache-2.0

package coffer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	coffer "github.com/coffer-project/coffer/go"
)

var sizes = []int{0, 1, 16383, 16384, 16385, 3<<20 + 12345}

// format is one of the daemon's formats with the daemon that can encrypt it and the size of
// its ciphertext for n plaintext bytes (-1: larger than n, not fixed here).
type format struct {
	name     string
	k16      bool
	overhead func(n int) int
}

var formats = []format{
	{"coffer-v1", false, func(int) int { return -1 }},
	{"velero-v1", false, func(n int) int { return n + 28 }},
	{"velero-v1", true, func(n int) int { return n + 28 }},
	{"cobblestone", false, func(n int) int { return n + 24 + 32 + 16*(n/16384+1) }},
	{"cobblestone-128", true, func(n int) int { return n + 24 + 32 + 16*(n/16384+1) }},
	{"none", false, func(n int) int { return n }},
}

func (f format) client(e *fixture) *coffer.Client {
	c := e.mainC
	if f.k16 {
		c = e.k16C
	}
	return c.WithOptions(coffer.Options{Format: f.name})
}

func (f format) String() string {
	if f.k16 {
		return f.name + "-aes128key"
	}
	return f.name
}

func checkStatus(t *testing.T, f format, st coffer.EncryptionStatus) {
	t.Helper()
	if st.Format != f.name {
		t.Fatalf("status format %q, want %q", st.Format, f.name)
	}
	if f.name == "none" {
		if st.IsEncrypted {
			t.Fatalf("format none reports isEncrypted")
		}
		return
	}
	secret := "raw"
	if f.k16 {
		secret = "k16"
	}
	if !st.IsEncrypted || st.KeyRetrieverType != "secret" || st.KeyRetrieverConfig["secretName"] != secret ||
		st.KeyRetrieverConfig["namespace"] != "velero" || st.KeyID == "" {
		t.Fatalf("status %+v", st)
	}
}

func checkCiphertext(t *testing.T, f format, pt, ct []byte) {
	t.Helper()
	want := f.overhead(len(pt))
	if want >= 0 && len(ct) != want {
		t.Fatalf("%s: %d plaintext bytes gave %d ciphertext bytes, want %d", f, len(pt), len(ct), want)
	}
	if want < 0 && len(ct) <= len(pt)+56 {
		t.Fatalf("%s: ciphertext of %d bytes for %d", f, len(ct), len(pt))
	}
	if f.name != "none" && len(pt) >= 64 && bytes.Contains(ct, pt[:64]) {
		t.Fatalf("%s: the ciphertext contains the plaintext", f)
	}
	if f.name == "none" && !bytes.Equal(ct, pt) {
		t.Fatalf("format none changed the bytes")
	}
}

// Every format, streamed, at the chunk-boundary sizes and a few MiB; the status survives a
// JSON round trip as Velero would store it.
func TestRoundTripStreamed(t *testing.T) {
	e := env(t)
	for _, f := range formats {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/%d", f, n), func(t *testing.T) {
				c := f.client(e)
				pt := randomBytes(n, int64(n))
				ct, st := encryptStream(t, c, pt)
				checkStatus(t, f, st)
				checkCiphertext(t, f, pt, ct)

				stored, err := json.Marshal(st)
				if err != nil {
					t.Fatal(err)
				}
				var loaded coffer.EncryptionStatus
				if err := json.Unmarshal(stored, &loaded); err != nil {
					t.Fatal(err)
				}
				// Decrypt with the default options: the status names format and key.
				got, err := decryptStream(e.mainC, ct, &loaded)
				if err != nil {
					t.Fatalf("decrypt: %v", err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatalf("decrypted %d bytes differ from the %d encrypted", len(got), len(pt))
				}
				if f.name == "coffer-v1" { // self-describing: no status needed
					got, err := decryptStream(e.mainC, ct, nil)
					if err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("decrypt without status: %v", err)
					}
				}
			})
		}
	}
}

// Every format by descriptor (cofferd does the I/O), with the file offsets left as io.Copy would.
func TestRoundTripFile(t *testing.T) {
	e := env(t)
	dir := tempDir(t)
	for _, f := range formats {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/%d", f, n), func(t *testing.T) {
				c := f.client(e)
				pt := randomBytes(n, int64(n)+7)
				ptPath, ctPath, outPath := filepath.Join(dir, "pt"), filepath.Join(dir, "ct"), filepath.Join(dir, "out")
				writeFile(t, ptPath, pt)
				in, _ := os.Open(ptPath)
				defer in.Close()
				out, _ := os.Create(ctPath)
				defer out.Close()
				st, err := c.EncryptFile(context.Background(), in, out)
				if err != nil {
					t.Fatalf("EncryptFile: %v", err)
				}
				checkStatus(t, f, st)
				ct := readFile(t, ctPath)
				checkCiphertext(t, f, pt, ct)
				if off, _ := in.Seek(0, io.SeekCurrent); off != int64(n) {
					t.Fatalf("input offset %d after the job, want %d", off, n)
				}
				if off, _ := out.Seek(0, io.SeekCurrent); off != int64(len(ct)) {
					t.Fatalf("output offset %d after the job, want %d", off, len(ct))
				}

				cin, _ := os.Open(ctPath)
				defer cin.Close()
				pout, _ := os.Create(outPath)
				defer pout.Close()
				if err := e.mainC.DecryptFile(context.Background(), cin, pout, &st); err != nil {
					t.Fatalf("DecryptFile: %v", err)
				}
				if got := readFile(t, outPath); !bytes.Equal(got, pt) {
					t.Fatalf("decrypted %d bytes differ from the %d encrypted", len(got), n)
				}
			})
		}
	}
}

// A descriptor job reads and writes from the files' current offsets (here with FSYNC).
func TestFileOffsets(t *testing.T) {
	e := env(t)
	dir := tempDir(t)
	pt := randomBytes(100000, 3)
	writeFile(t, filepath.Join(dir, "pt"), append([]byte("SKIPME"), pt...))
	in, _ := os.Open(filepath.Join(dir, "pt"))
	defer in.Close()
	in.Seek(6, io.SeekStart)
	out, _ := os.Create(filepath.Join(dir, "ct"))
	defer out.Close()
	out.Write([]byte("prefix"))
	fsync := e.mainC.WithOptions(coffer.Options{Fsync: true})
	if _, err := fsync.EncryptFile(context.Background(), in, out); err != nil {
		t.Fatal(err)
	}
	ct := readFile(t, filepath.Join(dir, "ct"))
	if string(ct[:6]) != "prefix" {
		t.Fatalf("the output's first bytes were overwritten")
	}
	got, err := decryptStream(e.mainC, ct[6:], nil)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("decrypt: %v", err)
	}
}
