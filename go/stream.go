// SPDX-License-Identifier: Apache-2.0

package coffer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// jobFrame builds the JOB frame of a job with this client's options; status is the metadata
// (decrypt). Limits are checked here, before anything is sent.
func (cl *Client) jobFrame(op, input byte, status *EncryptionStatus) ([]byte, error) {
	j := jobSpec{op: op, input: input, format: cl.opts.Format, context: cl.opts.Context,
		fsync: input == inputDescriptors && cl.opts.Fsync}
	if status != nil {
		md, err := status.wireJSON()
		if err != nil {
			return nil, err
		}
		j.metadata = md
	}
	return jobFrame(j)
}

// startStream starts a streamed job: its JOB frame on a connection of the pool.
func (cl *Client) startStream(ctx context.Context, op byte, status *EncryptionStatus) (*conn, error) {
	frame, err := cl.jobFrame(op, inputStream, status)
	if err != nil {
		return nil, err
	}
	c, err := cl.startJob(ctx, func(c *conn) error { return c.write(frame) })
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	return c, nil
}

// finishStatus decodes a RESULT's metadata.
func finishStatus(r jobResult) (EncryptionStatus, error) {
	var st EncryptionStatus
	if err := json.Unmarshal(r.metadata, &st); err != nil {
		return st, newError(-26, err, "cofferd's result metadata: %v", err)
	}
	return st, nil
}

// EncryptionWriter encrypts what is written to it through cofferd and writes the ciphertext to
// the io.Writer it was made with, as it comes back. Memory stays bounded (two 128 KiB frames)
// whatever the archive's size. It is for one goroutine: Write and Close must not be called
// concurrently. The output writer is called from a goroutine of the writer's own, never after
// Close or a failed Write returned.
type EncryptionWriter struct {
	cl        *Client
	ctx       context.Context
	c         *conn
	stopWatch func()
	buf       []byte // frame header + up to maxFrame payload bytes
	n         int    // payload bytes buffered in buf
	err       error  // sticky: the first failure
	closed    bool
	status    EncryptionStatus
	bytesIn   uint64
	bytesOut  uint64

	out      io.Writer
	moved    bool // a DATA frame went out: from then on the job is never started again
	attempts int  // starts refused with BUSY or SHUTDOWN

	// The current connection's output goroutine.
	endSent int32         // atomic: 1 once Close starts sending END
	done    chan struct{} // closed when the output goroutine ended
	outErr  error         // its failure (valid after done)
	outRes  jobResult     // its RESULT (valid after done, when outErr is nil)
	gotData bool          // whether it received output (valid after done)
}

// NewEncryptionWriter starts an encrypt job: bytes written are encrypted by cofferd (in its
// configured format unless Options.Format says otherwise) and written to out as they come.
// Close finishes the job; Status is valid after a successful Close. Cancelling ctx aborts
// the job (its connection is dropped) and makes Write and Close fail.
func (cl *Client) NewEncryptionWriter(ctx context.Context, out io.Writer) (*EncryptionWriter, error) {
	c, err := cl.startStream(ctx, opEncrypt, nil)
	if err != nil {
		return nil, err
	}
	w := &EncryptionWriter{cl: cl, ctx: ctx, out: out, buf: make([]byte, headerLen+maxFrame)}
	w.begin(c)
	return w, nil
}

// begin runs the job's output side on c.
func (w *EncryptionWriter) begin(c *conn) {
	w.c, w.done = c, make(chan struct{})
	w.outErr, w.outRes, w.gotData = nil, jobResult{}, false
	atomic.StoreInt32(&w.endSent, 0)
	w.stopWatch = c.watch(w.ctx)
	go w.receive(w.out)
}

// receive copies the daemon's DATA frames to out until RESULT or ERROR.
func (w *EncryptionWriter) receive(out io.Writer) {
	defer close(w.done)
	buf := make([]byte, maxFrame)
	for {
		typ, p, err := w.c.readFrame(buf)
		if err != nil {
			w.outErr = err
			w.c.kill()
			return
		}
		switch typ {
		case frameData:
			w.gotData = true
			if _, err := out.Write(p); err != nil {
				w.outErr = err
				w.c.kill()
				return
			}
		case frameResult:
			if atomic.LoadInt32(&w.endSent) == 0 {
				// A result before the input ended would pass a partial backup as complete.
				w.outErr = newError(-44, nil, "cofferd sent RESULT before the input ended")
				w.c.kill()
				return
			}
			w.outRes, w.outErr = parseResult(p)
			return
		case frameError:
			w.outErr = parseError(p)
			w.c.kill()
			return
		default:
			w.outErr = newError(-44, nil, "cofferd sent a %s frame during an encrypt job", frameName(typ))
			w.c.kill()
			return
		}
	}
}

// settle waits for the output goroutine to end, then closes the connection. A write fails when
// the daemon closed the connection after its ERROR frame: the goroutine reads that frame first
// (it ends at the connection's end; after 5 s it is cut off).
func (w *EncryptionWriter) settle() {
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
	}
	w.c.kill()
	<-w.done
}

// fail records the job's failure: the daemon's or output's error rather than the broken pipe
// it caused, and the context's error when it was cancelled.
func (w *EncryptionWriter) fail(err error) error {
	if w.err != nil {
		return w.err
	}
	w.settle()
	w.stopWatch()
	if w.outErr != nil && !isCode(w.outErr, -49) {
		err = w.outErr
	}
	w.err = ctxErr(w.ctx, err)
	return w.err
}

// recover handles a job that stopped before its end (err is what the caller saw). When the
// daemon refused it with BUSY or SHUTDOWN before any byte moved (nothing sent, nothing
// received), it starts the job again on a new connection, after a backoff, and returns true.
// Otherwise the job fails with the error returned.
func (w *EncryptionWriter) recover(err error) (bool, error) {
	if w.err != nil {
		return false, w.err
	}
	w.settle()
	if !w.moved && !w.gotData && retryable(w.outErr) && w.attempts+1 < maxAttempts {
		w.attempts++
		w.stopWatch()
		rerr := backoff(w.ctx, w.attempts-1)
		var c *conn
		if rerr == nil {
			c, rerr = w.cl.startStream(w.ctx, opEncrypt, nil)
		}
		if rerr == nil {
			w.begin(c)
			return true, nil
		}
		w.outErr, err = rerr, rerr
	}
	return false, w.fail(err)
}

// outputFailed reports the output goroutine's failure if it already ended.
func (w *EncryptionWriter) outputFailed() error {
	select {
	case <-w.done:
		if w.outErr != nil {
			return w.outErr
		}
		return newError(-44, nil, "cofferd finished the job before its input ended")
	default:
		return nil
	}
}

// Write sends p to be encrypted. It returns len(p), or an error once the job failed.
func (w *EncryptionWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("coffer: write to a closed EncryptionWriter")
	}
	if err := w.outputFailed(); err != nil {
		if again, ferr := w.recover(err); !again {
			return 0, ferr
		}
	}
	total := len(p)
	for len(p) > 0 {
		if w.n == 0 && len(p) >= maxFrame {
			// A whole frame straight from p: header and payload in one writev, no copy.
			var h [headerLen]byte
			putHeader(h[:], frameData, maxFrame)
			w.moved = true
			if err := w.c.write(h[:], p[:maxFrame]); err != nil {
				return 0, w.fail(err)
			}
			p = p[maxFrame:]
			continue
		}
		k := copy(w.buf[headerLen+w.n:], p)
		w.n += k
		p = p[k:]
		if w.n == maxFrame {
			if err := w.flush(); err != nil {
				return 0, w.fail(err)
			}
		}
	}
	return total, nil
}

func (w *EncryptionWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	putHeader(w.buf, frameData, w.n)
	w.moved = true
	err := w.c.write(w.buf[:headerLen+w.n])
	w.n = 0
	return err
}

// Close sends the end of the input and waits for the daemon's result: nil means every
// ciphertext byte was written to out and Status is valid. A failed job's output is incomplete.
func (w *EncryptionWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	end := make([]byte, headerLen)
	putHeader(end, frameEnd, 0)
	for {
		if err := w.outputFailed(); err != nil { // refused before the rest went out?
			if again, ferr := w.recover(err); !again {
				return ferr
			}
		}
		err := w.flush()
		if err == nil {
			atomic.StoreInt32(&w.endSent, 1)
			err = w.c.write(end)
		}
		if err == nil {
			<-w.done
			err = w.outErr
		}
		if err == nil {
			break
		}
		if again, ferr := w.recover(err); !again {
			return ferr
		}
	}
	w.stopWatch()
	st, err := finishStatus(w.outRes)
	if err != nil {
		return w.fail(err)
	}
	w.status, w.bytesIn, w.bytesOut = st, w.outRes.bytesIn, w.outRes.bytesOut
	w.cl.put(w.c)
	return nil
}

// Status is the status metadata to keep with the backup; valid after a successful Close.
func (w *EncryptionWriter) Status() EncryptionStatus { return w.status }

// Counts are the bytes the daemon read and wrote; valid after a successful Close.
func (w *EncryptionWriter) Counts() (in, out uint64) { return w.bytesIn, w.bytesOut }

// decryptionReader is NewDecryptionReader's io.ReadCloser.
type decryptionReader struct {
	cl        *Client
	ctx       context.Context
	c         *conn
	stopWatch func()
	buf       []byte // a frame's payload that did not fit the caller's slice
	pending   []byte // what of buf is still to be returned
	err       error  // sticky: io.EOF after RESULT, else the failure
	status    EncryptionStatus

	mu       sync.Mutex
	inErr    error         // the input's read failure
	endSent  int32         // atomic: 1 once the input goroutine starts sending END
	sendDone chan struct{} // closed when the input goroutine ended
}

// NewDecryptionReader starts a decrypt job reading the ciphertext from in. Read returns only
// plaintext the daemon authenticated: coffer-v1 chunk by chunk (16 KiB), velero-v1 only once
// the whole archive's tag verified. A backup that fails authentication makes Read return the
// error (ErrTampered, ErrWrongKey, ErrTruncated, ...), never unauthenticated bytes; plaintext
// already returned from earlier, authentic chunks stays valid but the restore is incomplete
// unless Read reached io.EOF.
//
// status is the EncryptionStatus kept with the backup; it may be nil for coffer-v1 (the
// authenticated header names its key); velero-v1 and the other header-less formats need it.
// Close before io.EOF aborts the job. Cancelling ctx aborts it too. in is read from a
// goroutine of the reader's own; after an aborted job that goroutine may make one more Read
// call on in before it notices.
func (cl *Client) NewDecryptionReader(ctx context.Context, in io.Reader, status *EncryptionStatus) (io.ReadCloser, error) {
	c, err := cl.startStream(ctx, opDecrypt, status)
	if err != nil {
		return nil, err
	}
	r := &decryptionReader{cl: cl, ctx: ctx, c: c, buf: make([]byte, maxFrame),
		sendDone: make(chan struct{})}
	r.stopWatch = c.watch(ctx)
	go r.send(in)
	return r, nil
}

// send copies in to the daemon in DATA frames, then END. A failing in aborts the job: END is
// never sent for input that did not end, so a partial archive cannot look complete.
func (r *decryptionReader) send(in io.Reader) {
	defer close(r.sendDone)
	frame := make([]byte, headerLen+maxFrame)
	for {
		n, err := io.ReadFull(in, frame[headerLen:])
		if n > 0 {
			putHeader(frame, frameData, n)
			if werr := r.c.write(frame[:headerLen+n]); werr != nil {
				return // the reading side reports what broke the connection
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			r.mu.Lock()
			r.inErr = err
			r.mu.Unlock()
			r.c.kill()
			return
		}
	}
	putHeader(frame, frameEnd, 0)
	atomic.StoreInt32(&r.endSent, 1)
	r.c.write(frame[:headerLen]) // a failure shows on the reading side
}

func (r *decryptionReader) fail(err error) error {
	r.c.kill()
	r.stopWatch()
	r.mu.Lock()
	if r.inErr != nil {
		err = r.inErr
	}
	r.mu.Unlock()
	r.err = ctxErr(r.ctx, err)
	return r.err
}

// Read returns authenticated plaintext; io.EOF only after the daemon's RESULT said the whole
// backup was authentic.
func (r *decryptionReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		into := r.buf
		if len(p) >= maxFrame {
			into = p // a whole frame fits: no copy
		}
		typ, f, err := r.c.readFrame(into)
		if err != nil {
			return 0, r.fail(err)
		}
		switch typ {
		case frameData:
			if len(f) == 0 {
				continue
			}
			if len(p) >= maxFrame {
				return len(f), nil
			}
			r.pending = f
		case frameResult:
			if atomic.LoadInt32(&r.endSent) == 0 {
				return 0, r.fail(newError(-44, nil, "cofferd sent RESULT before the input ended"))
			}
			res, err := parseResult(f)
			if err == nil {
				r.status, err = finishStatus(res)
			}
			if err != nil {
				return 0, r.fail(err)
			}
			<-r.sendDone // END went out before RESULT could come
			r.stopWatch()
			r.err = io.EOF
			r.cl.put(r.c)
		case frameError:
			return 0, r.fail(parseError(f))
		default:
			return 0, r.fail(newError(-44, nil, "cofferd sent a %s frame during a decrypt job", frameName(typ)))
		}
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// Close ends the reader; before io.EOF it aborts the job and drops its connection.
func (r *decryptionReader) Close() error {
	if r.err == nil {
		r.fail(errors.New("coffer: decryption reader closed before the end"))
	}
	r.pending = nil
	return nil
}
