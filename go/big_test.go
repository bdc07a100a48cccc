// SPDX-License-Identifier: Apache-2.0

package coffer_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coffer "github.com/coffer-project/coffer/go"
)

const gib = 1 << 30

// The 1 GiB cases run unless COFFER_TEST_BIG=0 (the ASan step of scripts/test.sh sets it for
// the C tests; go test runs once, after the release build).
func big(t *testing.T) {
	if os.Getenv("COFFER_TEST_BIG") == "0" || testing.Short() {
		t.Skip("SKIPPED: COFFER_TEST_BIG=0 or -short: the 1 GiB cases do not run")
	}
}

// source yields n deterministic bytes (a counter pattern, cheap to make) and hashes them.
type source struct {
	left, pos int64
	h         hashWriter
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func newSource(n int64) *source { return &source{left: n, h: sha256.New()} }

func (s *source) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	p = p[:len(p)&^7]
	if len(p) == 0 {
		return 0, io.ErrShortBuffer // reads here are large; the GiB is a multiple of 8
	}
	for i := 0; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], uint64(s.pos+int64(i))*0x9e3779b97f4a7c15)
	}
	s.pos += int64(len(p))
	s.left -= int64(len(p))
	s.h.Write(p)
	return len(p), nil
}

// heapWatch samples the Go heap until stopped and returns the largest HeapInuse seen.
func heapWatch() (stop func() uint64) {
	var max uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > atomic.LoadUint64(&max) {
				atomic.StoreUint64(&max, ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return atomic.LoadUint64(&max) }
}

// heapLimit: a streamed job holds two 128 KiB frames and a 64 KiB read buffer; allow the
// test's own buffers and the runtime room, far below the 1 GiB that moves.
const heapLimit = 16 << 20

// 1 GiB streamed: encrypt into a pipe that a decrypting reader drains at the same time. Two
// jobs run at once; the Go heap stays bounded; the plaintext comes back (SHA-256).
func TestBigStreamed(t *testing.T) {
	big(t)
	e := env(t)
	for _, f := range []string{"coffer-v1", "velero-v1"} {
		t.Run(f, func(t *testing.T) {
			c := e.mainC.WithOptions(coffer.Options{Format: f})
			runtime.GC()
			stop := heapWatch()
			src := newSource(gib)
			pr, pw := io.Pipe()
			var st coffer.EncryptionStatus
			encErr := make(chan error, 1)
			go func() {
				w, err := c.NewEncryptionWriter(context.Background(), pw)
				if err == nil {
					buf := make([]byte, 256<<10)
					_, err = io.CopyBuffer(w, src, buf)
					if cerr := w.Close(); err == nil {
						err = cerr
					}
					st = w.Status()
				}
				pw.CloseWithError(err)
				encErr <- err
			}()
			// velero-v1 needs the status before the restore starts; coffer-v1 does not.
			var stp *coffer.EncryptionStatus
			if f == "velero-v1" {
				stp = &coffer.EncryptionStatus{IsEncrypted: true, KeyRetrieverType: "secret", Format: f,
					KeyRetrieverConfig: map[string]string{"namespace": "velero", "secretName": "raw"}}
			}
			r, err := e.mainC.NewDecryptionReader(context.Background(), pr, stp)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.CopyBuffer(h, r, make([]byte, 256<<10))
			r.Close()
			if err != nil || n != gib {
				t.Fatalf("restored %d bytes: %v", n, err)
			}
			if err := <-encErr; err != nil {
				t.Fatal(err)
			}
			maxHeap := stop()
			if string(h.Sum(nil)) != string(src.h.Sum(nil)) {
				t.Fatal("the restored GiB differs")
			}
			if st.Format != f {
				t.Fatalf("status %+v", st)
			}
			t.Logf("%s: 1 GiB streamed both ways; largest Go HeapInuse %.1f MiB", f, float64(maxHeap)/(1<<20))
			if maxHeap > heapLimit {
				t.Fatalf("the Go heap reached %d bytes", maxHeap)
			}
		})
	}
}

// 1 GiB by descriptor: the daemon reads and writes the files itself.
func TestBigFile(t *testing.T) {
	big(t)
	e := env(t)
	dir := tempDir(t)
	p := func(s string) string { return filepath.Join(dir, s) }
	src := newSource(gib)
	f, _ := os.Create(p("pt"))
	if _, err := io.CopyBuffer(f, src, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	runtime.GC()
	stop := heapWatch()
	in, _ := os.Open(p("pt"))
	out, _ := os.Create(p("ct"))
	st, err := e.mainC.EncryptFile(context.Background(), in, out)
	in.Close()
	out.Close()
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p("pt"))
	in, _ = os.Open(p("ct"))
	out, _ = os.Create(p("out"))
	err = e.mainC.DecryptFile(context.Background(), in, out, &st)
	in.Close()
	out.Close()
	maxHeap := stop()
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p("ct"))
	h := sha256.New()
	f, _ = os.Open(p("out"))
	n, _ := io.Copy(h, f)
	f.Close()
	if n != gib || string(h.Sum(nil)) != string(src.h.Sum(nil)) {
		t.Fatalf("restored %d bytes, or they differ", n)
	}
	t.Logf("1 GiB by descriptor both ways; largest Go HeapInuse %.1f MiB", float64(maxHeap)/(1<<20))
	if maxHeap > heapLimit {
		t.Fatalf("the Go heap reached %d bytes", maxHeap)
	}
}
