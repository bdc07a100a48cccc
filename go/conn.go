// SPDX-License-Identifier: Apache-2.0

package coffer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// conn is one connection to cofferd after a successful HELLO. It runs one job at a time; once
// broken (an ERROR frame, a cancelled context, any I/O failure) it is closed, never reused.
type conn struct {
	uc     *net.UnixConn
	br     *bufio.Reader
	hdr    [headerLen]byte
	broken int32 // atomic: 1 once kill ran
}

// dialConn connects to path and exchanges HELLO. The daemon may answer HELLO with an ERROR
// (PERMISSION, BUSY, SHUTDOWN): that comes back as its *Error.
func dialConn(ctx context.Context, path string) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, newError(-48, err, "%s: %v", path, unwrapOp(err))
	}
	c := &conn{uc: nc.(*net.UnixConn)}
	c.br = bufio.NewReaderSize(c.uc, 2*(headerLen+maxFrame))
	stop := c.watch(ctx)
	err = c.hello()
	stop()
	if err != nil {
		c.kill()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return c, nil
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func (c *conn) hello() error {
	_, werr := c.uc.Write(helloFrame())
	// A refused peer gets one ERROR frame and a closed connection, which may already have
	// failed the write: read the daemon's reason either way.
	typ, p, err := c.readFrame(nil)
	if err != nil {
		if werr != nil {
			return newError(-49, werr, "sending HELLO: %v", unwrapOp(werr))
		}
		return err
	}
	switch typ {
	case frameHello:
		return checkHello(p)
	case frameError:
		return parseError(p)
	}
	return newError(-44, nil, "cofferd answered HELLO with a %s frame", frameName(typ))
}

// readFrame reads one frame. The payload goes into buf when it fits, else into a new slice.
// A connection that ends or fails is PEER_GONE.
func (c *conn) readFrame(buf []byte) (byte, []byte, error) {
	typ, n, err := readHeader(c.br, c.hdr[:])
	if err != nil {
		return 0, nil, c.ioError(err)
	}
	if n > cap(buf) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return 0, nil, c.ioError(err)
	}
	return typ, buf, nil
}

// ioError maps a local I/O failure to PEER_GONE (keeping *Error values as they are).
func (c *conn) ioError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return newError(-49, err, "cofferd closed the connection")
	}
	return newError(-49, err, "%v", unwrapOp(err))
}

// write sends bufs as one writev.
func (c *conn) write(bufs ...[]byte) error {
	nb := net.Buffers(bufs)
	if _, err := nb.WriteTo(c.uc); err != nil {
		return c.ioError(err)
	}
	return nil
}

// kill closes the connection; blocked reads and writes on it return at once.
func (c *conn) kill() {
	if atomic.CompareAndSwapInt32(&c.broken, 0, 1) {
		c.uc.Close()
	}
}

func (c *conn) isBroken() bool { return atomic.LoadInt32(&c.broken) != 0 }

// watch kills the connection when ctx is done before the returned stop function is called.
func (c *conn) watch(ctx context.Context) (stop func()) {
	if ctx.Done() == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			c.kill()
		case <-done:
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// alive reports whether an idle connection is still open and quiet: after a daemon restart or
// an --io-timeout the peer has closed it, which a non-blocking peek sees as end of file.
func (c *conn) alive() bool {
	if c.isBroken() || c.br.Buffered() > 0 {
		return false
	}
	rc, err := c.uc.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = rerr == syscall.EAGAIN
		return true
	})
	return err == nil && ok
}

// retryable reports whether err is a refusal that came before any byte of a job moved.
func retryable(err error) bool {
	return isCode(err, -46) || isCode(err, -47)
}

// backoff sleeps before retry attempt n (0-based): 20 ms doubling to 1 s, or returns ctx's error.
func backoff(ctx context.Context, n int) error {
	d := 20 * time.Millisecond << uint(n)
	if d > time.Second || d <= 0 {
		d = time.Second
	}
	// a little jitter so that many clients refused together do not come back together
	d += time.Duration(time.Now().UnixNano() % int64(d/4+1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
