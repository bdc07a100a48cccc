// SPDX-License-Identifier: Apache-2.0

package coffer_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"testing"

	coffer "github.com/coffer-project/coffer/go"
)

func runCLI(t *testing.T, e *fixture, args ...string) {
	t.Helper()
	out, err := exec.Command(e.cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("coffer %v: %v\n%s", args, err, out)
	}
}

// What the Go client writes, the C CLI decrypts offline, and the other way round.
func TestInteropCLI(t *testing.T) {
	e := env(t)
	dir := tempDir(t)
	for _, n := range []int{0, 16385, 1<<20 + 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			pt := randomBytes(n, int64(n)+99)
			p := func(s string) string { return filepath.Join(dir, s) }
			writeFile(t, p("pt"), pt)

			// Go (through cofferd) -> CLI offline, coffer-v1: the header names velero/raw.
			ct, _ := encryptStream(t, e.mainC, pt)
			writeFile(t, p("go.coffer"), ct)
			runCLI(t, e, "decrypt", "--offline", "--secrets-dir", e.secrets, "--in", p("go.coffer"), "--out", p("out1"))
			if !bytes.Equal(readFile(t, p("out1")), pt) {
				t.Fatal("coffer-v1: the CLI's plaintext differs")
			}
			// velero-v1: the CLI is told the format and Secret.
			vct, _ := encryptStream(t, e.mainC.WithOptions(coffer.Options{Format: "velero-v1"}), pt)
			writeFile(t, p("go.velero"), vct)
			runCLI(t, e, "decrypt", "--offline", "--format", "velero-v1", "--secrets-dir", e.secrets,
				"--namespace", "velero", "--secret", "raw", "--in", p("go.velero"), "--out", p("out2"))
			if !bytes.Equal(readFile(t, p("out2")), pt) {
				t.Fatal("velero-v1: the CLI's plaintext differs")
			}

			// CLI offline -> Go: coffer-v1 needs no status; velero-v1 takes the CLI's status file.
			runCLI(t, e, "encrypt", "--offline", "--secrets-dir", e.secrets, "--namespace", "velero",
				"--secret", "raw", "--in", p("pt"), "--out", p("cli.coffer"))
			got, err := decryptStream(e.k16C, readFile(t, p("cli.coffer")), nil)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("coffer-v1 from the CLI: %v", err)
			}
			runCLI(t, e, "encrypt", "--offline", "--format", "velero-v1", "--secrets-dir", e.secrets,
				"--namespace", "velero", "--secret", "raw", "--in", p("pt"), "--out", p("cli.velero"),
				"--status-out", p("cli.status"))
			var st coffer.EncryptionStatus
			if err := json.Unmarshal(readFile(t, p("cli.status")), &st); err != nil {
				t.Fatal(err)
			}
			if st.Format != "velero-v1" || st.KeyRetrieverConfig["secretName"] != "raw" {
				t.Fatalf("the CLI's status: %+v", st)
			}
			got, err = decryptStream(e.k16C, readFile(t, p("cli.velero")), &st)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("velero-v1 from the CLI: %v", err)
			}
		})
	}
}

// designEncryptor is the Velero design's aesEncryptor, written here from the design's text
// with Go's crypto/cipher: nonce(12) || GCM seal, key = the raw Secret value. It is the
// independent implementation the velero-v1 format must match byte for byte.
type designEncryptor struct{ gcm cipher.AEAD }

func newDesignEncryptor(key []byte) designEncryptor {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return designEncryptor{gcm}
}

func (d designEncryptor) Encrypt(pt []byte) []byte {
	nonce := make([]byte, d.gcm.NonceSize())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		panic(err)
	}
	return d.gcm.Seal(nonce, nonce, pt, nil)
}

func (d designEncryptor) Decrypt(ct []byte) ([]byte, error) {
	ns := d.gcm.NonceSize()
	if len(ct) <= ns {
		return nil, errors.New("ciphertext too short")
	}
	return d.gcm.Open(nil, ct[:ns], ct[ns:], nil)
}

// velero-v1 written by the design's encryptor decrypts through the client, and the client's
// velero-v1 opens with it, for AES-256 and AES-128 Secrets. A Velero backup's status holds
// only the design's three fields: the format then comes from Options.
func TestVeleroV1Independent(t *testing.T) {
	e := env(t)
	for _, secret := range []string{"raw", "k16"} {
		for _, n := range []int{0, 1, 16384, 2<<20 + 5} {
			t.Run(fmt.Sprintf("%s/%d", secret, n), func(t *testing.T) {
				ind := newDesignEncryptor(e.keys[secret])
				pt := randomBytes(n, int64(n)+5)

				// The design's status, as the prototype stores it (no format, no keyId).
				var design coffer.EncryptionStatus
				js := fmt.Sprintf(`{"isEncrypted":true,"keyRetrieverType":"secret","keyRetrieverConfig":{"namespace":"velero","secretName":%q}}`, secret)
				if err := json.Unmarshal([]byte(js), &design); err != nil {
					t.Fatal(err)
				}
				vc := e.mainC.WithOptions(coffer.Options{Format: "velero-v1"})
				got, err := decryptStream(vc, ind.Encrypt(pt), &design)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("the design's ciphertext through the client: %v", err)
				}

				c := e.mainC
				if secret == "k16" {
					c = e.k16C
				}
				ct, st := encryptStream(t, c.WithOptions(coffer.Options{Format: "velero-v1"}), pt)
				if st.Format != "velero-v1" {
					t.Fatalf("status %+v", st)
				}
				opened, err := ind.Decrypt(ct)
				if err != nil || !bytes.Equal(opened, pt) {
					t.Fatalf("the client's velero-v1 with the design's decryptor: %v", err)
				}
			})
		}
	}
}
