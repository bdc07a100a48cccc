// SPDX-License-Identifier: Apache-2.0

package coffer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	coffer "github.com/coffer-project/coffer/go"
)

// fakeDaemon answers HELLO as docs/protocol.md says, reads the JOB frame, then runs script on
// the connection: a daemon that breaks the protocol, which the real one never does.
func fakeDaemon(t *testing.T, script func(c net.Conn)) string {
	t.Helper()
	sock := filepath.Join(tempDir(t), "fake.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				hdr := make([]byte, 8)
				for first := true; ; first = false {
					if _, err := io.ReadFull(c, hdr); err != nil {
						return
					}
					p := make([]byte, binary.BigEndian.Uint32(hdr[4:]))
					if _, err := io.ReadFull(c, p); err != nil {
						return
					}
					if first { // HELLO
						c.Write([]byte{1, 0, 0, 0, 0, 0, 0, 12, 'C', 'O', 'F', 'R', 0, 1, 0, 1, 0, 2, 0, 0})
						continue
					}
					script(c)
					return
				}
			}(c)
		}
	}()
	return sock
}

func frame(typ byte, payload []byte) []byte {
	f := []byte{typ, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(f[4:], uint32(len(payload)))
	return append(f, payload...)
}

var earlyResult = frame(5, append(make([]byte, 16), 0, 0, 0, 2, '{', '}'))

// A RESULT before the input ended would make a partial job look complete: refused.
func TestHostileEarlyResult(t *testing.T) {
	sock := fakeDaemon(t, func(c net.Conn) {
		c.Write(frame(3, []byte("junk")))
		c.Write(earlyResult)
		io.Copy(io.Discard, c)
	})
	c, err := coffer.Dial(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.NewDecryptionReader(context.Background(), endless{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, coffer.ErrProtocol) || string(got) != "junk" {
		t.Fatalf("reader: %q %v", got, err)
	}
	var out bytes.Buffer
	w, err := c.NewEncryptionWriter(context.Background(), &out)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; err == nil && i < 10000; i++ {
		_, err = w.Write(make([]byte, 4096))
	}
	if err == nil {
		err = w.Close()
	}
	if !errors.Is(err, coffer.ErrProtocol) {
		t.Fatalf("writer: %v", err)
	}
}

// Frames over the protocol's limits, unknown types and malformed RESULTs are protocol errors.
func TestHostileFrames(t *testing.T) {
	for name, bad := range map[string][]byte{
		"too big":        {3, 0, 0, 0, 0, 2, 0, 1},
		"unknown type":   frame(42, nil),
		"flags":          {3, 1, 0, 0, 0, 0, 0, 0},
		"short RESULT":   frame(5, []byte{1, 2, 3}),
		"HELLO mid-job":  frame(1, make([]byte, 12)),
		"health mid-job": frame(7, []byte("{}")),
	} {
		t.Run(name, func(t *testing.T) {
			sock := fakeDaemon(t, func(c net.Conn) {
				c.Write(bad)
				io.Copy(io.Discard, c)
			})
			c, err := coffer.Dial(context.Background(), sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r, err := c.NewDecryptionReader(context.Background(), bytes.NewReader([]byte("x")), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(r); !errors.Is(err, coffer.ErrProtocol) || len(got) != 0 {
				t.Fatalf("%q %v", got, err)
			}
		})
	}
}

func errFrame(code int32, msg string) []byte {
	p := make([]byte, 6, 6+len(msg))
	binary.BigEndian.PutUint32(p, uint32(code))
	binary.BigEndian.PutUint16(p[4:], uint16(len(msg)))
	return frame(6, append(p, msg...))
}

// echoJob is a stand-in daemon's job: DATA echoed until END, then a RESULT.
func echoJob(c net.Conn) {
	hdr := make([]byte, 8)
	var total uint64
	for {
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		p := make([]byte, binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.ReadFull(c, p); err != nil {
			return
		}
		if hdr[0] == 4 {
			break
		}
		total += uint64(len(p))
		c.Write(frame(3, p))
	}
	md := []byte(`{"isEncrypted":true,"keyRetrieverType":"secret","keyRetrieverConfig":{"namespace":"velero","secretName":"k"},"format":"coffer-v1"}`)
	res := make([]byte, 20, 20+len(md))
	binary.BigEndian.PutUint64(res, total)
	binary.BigEndian.PutUint64(res[8:], total)
	binary.BigEndian.PutUint32(res[16:], uint32(len(md)))
	c.Write(frame(5, append(res, md...)))
	io.Copy(io.Discard, c)
}

// A job refused with SHUTDOWN before any byte moved starts again on a new connection; one
// refused after its data began to move fails with ErrShutdown, never silently retried.
func TestShutdownRetryBeforeData(t *testing.T) {
	var jobs int32
	refuseFirst := func(c net.Conn) {
		if atomic.AddInt32(&jobs, 1) == 1 {
			c.Write(errFrame(-47, "server is shutting down"))
			return
		}
		echoJob(c)
	}
	sock := fakeDaemon(t, refuseFirst)
	for _, n := range []int{0, 1000, 300000} {
		for _, before := range []string{"Write", "Close"} { // where the refusal is first seen
			atomic.StoreInt32(&jobs, 0)
			// A new client each time: the stand-in serves one job per connection.
			c, err := coffer.Dial(context.Background(), sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var out bytes.Buffer
			w, err := c.NewEncryptionWriter(context.Background(), &out)
			if err != nil {
				t.Fatal(err)
			}
			data := randomBytes(n, 1)
			if before == "Write" {
				time.Sleep(100 * time.Millisecond) // the refusal arrives before the first byte
			}
			moved := before == "Close" && n >= 131072 // a whole frame goes out in Write
			if _, err = w.Write(data); err != nil && !moved {
				t.Fatalf("%d bytes: Write %v", n, err)
			}
			if before == "Close" {
				time.Sleep(100 * time.Millisecond)
			}
			if err == nil {
				err = w.Close()
			}
			if moved && err != nil { // the refusal came after the first frame went out (a race)
				if !errors.Is(err, coffer.ErrShutdown) || atomic.LoadInt32(&jobs) != 1 {
					t.Fatalf("%d bytes, refused after data moved: %v, %d jobs", n, err, jobs)
				}
				continue
			}
			if err != nil || !bytes.Equal(out.Bytes(), data) || atomic.LoadInt32(&jobs) != 2 {
				t.Fatalf("%d bytes, refusal seen in %s: Close %v, %d bytes out, %d jobs", n, before, err, out.Len(), jobs)
			}
			if w.Status().Format != "coffer-v1" {
				t.Fatalf("status %+v", w.Status())
			}
		}
	}

	// Refused after the first DATA frame: the job's error.
	atomic.StoreInt32(&jobs, 0)
	sock = fakeDaemon(t, func(c net.Conn) {
		atomic.AddInt32(&jobs, 1)
		hdr := make([]byte, 8)
		io.ReadFull(c, hdr)
		io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(hdr[4:])))
		c.Write(errFrame(-47, "server is shutting down: the job did not finish"))
	})
	c2, err := coffer.Dial(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	w, err := c2.NewEncryptionWriter(context.Background(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; err == nil && i < 100; i++ {
		_, err = w.Write(make([]byte, 200000))
	}
	if err == nil {
		err = w.Close()
	}
	if !errors.Is(err, coffer.ErrShutdown) || atomic.LoadInt32(&jobs) != 1 {
		t.Fatalf("after data moved: %v, %d jobs", err, jobs)
	}
}
