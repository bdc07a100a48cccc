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
	"testing"

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
