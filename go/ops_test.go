// SPDX-License-Identifier: Apache-2.0

package coffer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coffer "github.com/coffer-project/coffer/go"
	"github.com/coffer-project/coffer/go/internal/testdaemon"
)

// ownDaemon starts a cofferd of this test's own on the shared secrets, with extra flags.
func ownDaemon(t *testing.T, e *fixture, name string, flags ...string) *testdaemon.Daemon {
	t.Helper()
	args := append([]string{"--secrets-dir", e.secrets, "--namespace", "velero", "--workers", "2",
		"--encryption-secret", "raw"}, flags...)
	d := testdaemon.New(e.cofferd, tempDir(t), name, args...)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	return d
}

func dial(t *testing.T, sock string) *coffer.Client {
	t.Helper()
	c, err := coffer.Dial(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func stat(t *testing.T, c *coffer.Client, name string) float64 {
	t.Helper()
	s, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v, ok := s[name].(float64)
	if !ok {
		t.Fatalf("stats has no number %q: %v", name, s)
	}
	return v
}

func roundTrip(t *testing.T, c *coffer.Client, n int) {
	t.Helper()
	pt := randomBytes(n, int64(n))
	ct, st := encryptStream(t, c, pt)
	got, err := decryptStream(c, ct, &st)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("round trip of %d bytes: %v", n, err)
	}
}

func TestHealthStats(t *testing.T) {
	e := env(t)
	h, err := e.mainC.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h["status"] != "ok" || h["secretName"] != "raw" || h["protocol"] != float64(1) || h["keyId"] == "" {
		t.Fatalf("health %v", h)
	}
	before := stat(t, e.mainC, "jobsOk")
	roundTrip(t, e.mainC, 1000)
	if after := stat(t, e.mainC, "jobsOk"); after != before+2 {
		t.Fatalf("jobsOk %v -> %v after two jobs", before, after)
	}
}

// 32 goroutines share one Client: streamed and descriptor jobs, coffer-v1 and velero-v1.
func TestConcurrent32(t *testing.T) {
	e := env(t)
	dir := tempDir(t)
	okBefore, failBefore := stat(t, e.mainC, "jobsOk"), stat(t, e.mainC, "jobsFailed")
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := e.mainC
			if i%3 == 0 {
				c = c.WithOptions(coffer.Options{Format: "velero-v1"})
			}
			pt := randomBytes((i*977777)%(3<<20), int64(i))
			if i%2 == 0 {
				r, err := streamTrip(c, pt)
				if err != nil || !bytes.Equal(r, pt) {
					errs <- fmt.Errorf("goroutine %d (streamed): %v", i, err)
				}
				return
			}
			p := filepath.Join(dir, fmt.Sprint(i))
			if err := os.WriteFile(p, pt, 0o600); err != nil {
				errs <- err
				return
			}
			in, _ := os.Open(p)
			out, _ := os.Create(p + ".ct")
			st, err := c.EncryptFile(context.Background(), in, out)
			in.Close()
			out.Close()
			if err != nil {
				errs <- fmt.Errorf("goroutine %d: EncryptFile: %v", i, err)
				return
			}
			in, _ = os.Open(p + ".ct")
			out, _ = os.Create(p + ".out")
			err = c.DecryptFile(context.Background(), in, out, &st)
			in.Close()
			out.Close()
			got, _ := os.ReadFile(p + ".out")
			if err != nil || !bytes.Equal(got, pt) {
				errs <- fmt.Errorf("goroutine %d: DecryptFile: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok, fail := stat(t, e.mainC, "jobsOk"), stat(t, e.mainC, "jobsFailed"); ok != okBefore+64 || fail != failBefore {
		t.Fatalf("jobsOk %v -> %v, jobsFailed %v -> %v", okBefore, ok, failBefore, fail)
	}
}

// streamTrip encrypts and decrypts pt without a testing.T (for goroutines).
func streamTrip(c *coffer.Client, pt []byte) ([]byte, error) {
	var ct bytes.Buffer
	w, err := c.NewEncryptionWriter(context.Background(), &ct)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(pt); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	st := w.Status()
	return decryptStream(c, ct.Bytes(), &st)
}

// endless is an input that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

// Cancelling a job's context aborts it (the connection is dropped) and leaves the daemon
// healthy: no connection left behind, the next jobs work.
func TestCancelMidJob(t *testing.T) {
	e := env(t)
	d := ownDaemon(t, e, "cancel", "--allow-plaintext-restore") // its reader restores format none
	c := dial(t, d.Sock)
	ctx, cancel := context.WithCancel(context.Background())

	// A writer cancelled after 4 MiB.
	w, err := c.NewEncryptionWriter(ctx, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	buf := randomBytes(1<<20, 1)
	for i := 0; i < 4; i++ {
		if _, err := w.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	for i := 0; err == nil && i < 1000; i++ {
		_, err = w.Write(buf)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(w.Close(), context.Canceled) {
		t.Fatalf("after cancel: Write %v, Close %v", err, w.Close())
	}

	// A reader of an endless input, cancelled after 1 MiB of output.
	ctx, cancel = context.WithCancel(context.Background())
	r, err := c.WithOptions(coffer.Options{Format: "none"}).NewDecryptionReader(ctx, endless{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.Copy(io.Discard, r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("reader after cancel: %v", err)
	}
	r.Close()

	// A descriptor job of 256 MiB with a 20 ms deadline: cancelled, or (fast machine) done.
	p := filepath.Join(tempDir(t), "big")
	f, _ := os.Create(p)
	f.Truncate(256 << 20)
	f.Close()
	in, _ := os.Open(p)
	defer in.Close()
	out, _ := os.Create(p + ".ct")
	defer out.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err = c.EncryptFile(ctx, in, out)
	cancel()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("descriptor job after its deadline: %v", err)
	}
	t.Logf("descriptor job with a 20 ms deadline: %v", err)

	// The daemon: healthy, every aborted connection gone, the next jobs work.
	c.Close()
	fresh := dial(t, d.Sock)
	eventually(t, "the aborted connections are closed", func() bool {
		return stat(t, fresh, "connectionsActive") == 1
	})
	if h, err := fresh.Health(context.Background()); err != nil || h["status"] != "ok" {
		t.Fatalf("health after cancellations: %v %v", h, err)
	}
	roundTrip(t, fresh, 100000)
}

// The daemon restarted between jobs: the pooled connections are found dead before use and the
// same Client carries on. While it is down, jobs fail with ErrConnect.
func TestDaemonRestart(t *testing.T) {
	e := env(t)
	d := ownDaemon(t, e, "restart")
	c := dial(t, d.Sock)
	roundTrip(t, c, 50000)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewEncryptionWriter(context.Background(), io.Discard); !errors.Is(err, coffer.ErrConnect) {
		t.Fatalf("with the daemon down: %v", err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, 50000)
	if _, err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// SHUTDOWN in the middle of a job is the job's error, never retried: data had moved.
func TestShutdownMidJob(t *testing.T) {
	e := env(t)
	d := ownDaemon(t, e, "shutdown", "--shutdown-grace", "1")
	c := dial(t, d.Sock)
	w, err := c.NewEncryptionWriter(context.Background(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(1<<20, 2)); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop() }()
	buf := randomBytes(64<<10, 3)
	for deadline := time.Now().Add(30 * time.Second); err == nil && time.Now().Before(deadline); {
		_, err = w.Write(buf)
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		err = w.Close()
	}
	if !errors.Is(err, coffer.ErrShutdown) && !errors.Is(err, coffer.ErrPeerGone) {
		t.Fatalf("job during shutdown: %v", err)
	}
	t.Logf("job during shutdown: %v", err)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	d.Start() // for the cleanup's Stop
}

// BUSY before any byte was sent is retried: a second job waits for the daemon's only slot.
func TestBusyRetried(t *testing.T) {
	e := env(t)
	d := ownDaemon(t, e, "busy", "--max-connections", "1")
	holder := dial(t, d.Sock)
	w, err := holder.NewEncryptionWriter(context.Background(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		c, err := coffer.Dial(context.Background(), d.Sock)
		if err == nil {
			_, err = c.Health(context.Background())
			c.Close()
		}
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the second client got through while the only slot was taken: %v", err)
	default:
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	holder.Close() // frees the slot
	if err := <-done; err != nil {
		t.Fatalf("the retried client: %v", err)
	}
	// Refused for longer than the retries last: ErrBusy.
	holder2 := dial(t, d.Sock)
	w, _ = holder2.NewEncryptionWriter(context.Background(), io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := coffer.Dial(ctx, d.Sock); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, coffer.ErrBusy) {
		t.Fatalf("dial against a full daemon: %v", err)
	}
	w.Close()
}

func TestPermissionDenied(t *testing.T) {
	e := env(t)
	uid := os.Getuid() + 4242
	d := ownDaemon(t, e, "perm", "--allow-uid", fmt.Sprint(uid))
	_, err := coffer.Dial(context.Background(), d.Sock)
	if !errors.Is(err, coffer.ErrPermission) {
		t.Fatalf("dial by a uid not allowed: %v", err)
	}
}

// The protocol's limits are checked before anything is sent; the daemon's refusals arrive as
// its codes.
func TestLimits(t *testing.T) {
	e := env(t)
	ctx := context.Background()
	for _, o := range []coffer.Options{{Format: strings.Repeat("a", 33)}, {Format: "Coffer"}} {
		if _, err := e.mainC.WithOptions(o).NewEncryptionWriter(ctx, io.Discard); !isCode(err, -27) {
			t.Errorf("format %q: %v", o.Format, err)
		}
	}
	if _, err := e.mainC.WithOptions(coffer.Options{Format: "cobblestone", Context: make([]byte, 32001)}).NewEncryptionWriter(ctx, io.Discard); !isCode(err, -3) {
		t.Errorf("context of 32001 bytes: %v", err)
	}
	big := coffer.EncryptionStatus{}
	if err := big.UnmarshalJSON([]byte(`{"isEncrypted":true,"pad":"` + strings.Repeat("x", 70000) + `"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mainC.NewDecryptionReader(ctx, bytes.NewReader(nil), &big); !isCode(err, -25) {
		t.Errorf("metadata of 70000 bytes: %v", err)
	}
	// Refused by the daemon: an unknown format, a context for coffer-v1.
	_, err := encryptErr(e.mainC.WithOptions(coffer.Options{Format: "nope"}))
	if !isCode(err, -27) {
		t.Errorf("unknown format: %v", err)
	}
	_, err = encryptErr(e.mainC.WithOptions(coffer.Options{Format: "coffer-v1", Context: []byte("x")}))
	if !isCode(err, -3) {
		t.Errorf("context for coffer-v1: %v", err)
	}
	// A bare cobblestone context must match.
	cc := e.mainC.WithOptions(coffer.Options{Format: "cobblestone", Context: []byte("ctx-1")})
	pt := randomBytes(20000, 9)
	ct, st := encryptStream(t, cc, pt)
	if got, err := decryptStream(cc, ct, &st); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("cobblestone with its context: %v", err)
	}
	wrong := e.mainC.WithOptions(coffer.Options{Format: "cobblestone", Context: []byte("ctx-2")})
	if got, err := decryptStream(wrong, ct, &st); !errors.Is(err, coffer.ErrWrongKey) || len(got) != 0 {
		t.Fatalf("cobblestone with another context: %d bytes, %v", len(got), err)
	}
}

func encryptErr(c *coffer.Client) ([]byte, error) {
	var out bytes.Buffer
	w, err := c.NewEncryptionWriter(context.Background(), &out)
	if err != nil {
		return nil, err
	}
	w.Write([]byte("data"))
	return out.Bytes(), w.Close()
}

func isCode(err error, code int) bool {
	var ce *coffer.Error
	return errors.As(err, &ce) && ce.Code == code
}
