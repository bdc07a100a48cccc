// SPDX-License-Identifier: Apache-2.0

package coffer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	coffer "github.com/coffer-project/coffer/go"
	"github.com/coffer-project/coffer/go/internal/testdaemon"
)

// The shared fixture: one secrets directory (velero/raw: 32 raw bytes; velero/k16: 16 raw
// bytes; velero/other: 32 raw bytes) and two daemons started once for the package: "main"
// encrypts with velero/raw, "k16" with velero/k16 (for cobblestone-128 and AES-128 velero-v1).
// Tests that stop or reconfigure a daemon start their own.
type fixture struct {
	dir, secrets string
	cofferd, cli string
	keys         map[string][]byte
	main, k16    *testdaemon.Daemon
	mainC, k16C  *coffer.Client
}

var (
	fxOnce sync.Once
	fx     *fixture
	fxErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fx != nil {
		for _, c := range []*coffer.Client{fx.mainC, fx.k16C} {
			if c != nil {
				c.Close()
			}
		}
		for _, d := range []*testdaemon.Daemon{fx.main, fx.k16} {
			if err := d.Stop(); err != nil {
				os.Stderr.WriteString("stopping cofferd: " + err.Error() + "\n")
				code = 1
			}
		}
		os.RemoveAll(fx.dir)
	}
	os.Exit(code)
}

// env starts the shared daemons on first use; it skips (fails under CI=true) without binaries.
func env(t testing.TB) *fixture {
	t.Helper()
	cofferd, cli := testdaemon.Require(t)
	fxOnce.Do(func() {
		f := &fixture{cofferd: cofferd, cli: cli}
		if f.dir, fxErr = os.MkdirTemp("", "coffer-go-test-"); fxErr != nil {
			return
		}
		f.secrets = filepath.Join(f.dir, "secrets")
		if f.keys, fxErr = testdaemon.Secrets(f.secrets, map[string]int{"raw": 32, "k16": 16, "other": 32}); fxErr != nil {
			return
		}
		common := []string{"--secrets-dir", f.secrets, "--namespace", "velero", "--workers", "2", "--io-timeout", "120", "--spool-dir", f.dir}
		// --allow-plaintext-restore: the round trips restore format none through this daemon
		// (a daemon with encryption on refuses that by default: no plaintext downgrade)
		f.main = testdaemon.New(cofferd, f.dir, "main", append(common, "--encryption-secret", "raw", "--allow-plaintext-restore")...)
		f.k16 = testdaemon.New(cofferd, f.dir, "k16", append(common, "--encryption-secret", "k16", "--format", "velero-v1")...)
		fx = f
		for _, d := range []*testdaemon.Daemon{f.main, f.k16} {
			if fxErr = d.Start(); fxErr != nil {
				return
			}
		}
		ctx := context.Background()
		if f.mainC, fxErr = coffer.Dial(ctx, f.main.Sock); fxErr != nil {
			return
		}
		f.k16C, fxErr = coffer.Dial(ctx, f.k16.Sock)
	})
	if fxErr != nil {
		t.Fatalf("starting the shared cofferd: %v", fxErr)
	}
	return fx
}

// tempDir is a fresh directory for one test.
func tempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "coffer-go-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encryptStream encrypts pt through a writer in uneven writes; returns ciphertext and status.
func encryptStream(t testing.TB, c *coffer.Client, pt []byte) ([]byte, coffer.EncryptionStatus) {
	t.Helper()
	var out bytes.Buffer
	w, err := c.NewEncryptionWriter(context.Background(), &out)
	if err != nil {
		t.Fatalf("NewEncryptionWriter: %v", err)
	}
	for rest, step := pt, 1; len(rest) > 0; step = (step*7 + 1) % 1000003 {
		n := step % 300000
		if n > len(rest) {
			n = len(rest)
		}
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return out.Bytes(), w.Status()
}

// decryptStream decrypts ct through a reader; returns what Read gave before the error.
func decryptStream(c *coffer.Client, ct []byte, st *coffer.EncryptionStatus) ([]byte, error) {
	r, err := c.NewDecryptionReader(context.Background(), bytes.NewReader(ct), st)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var got bytes.Buffer
	_, err = io.Copy(&got, r)
	return got.Bytes(), err
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

// eventually polls cond for up to 20 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("not within 20 s: %s", what)
}
