// SPDX-License-Identifier: Apache-2.0

package coffer

import (
	"context"
	"io"
	"os"
	"syscall"
)

// EncryptFile runs a descriptor job: in and out are passed to cofferd (SCM_RIGHTS), which reads
// in from its current offset to its end and writes the ciphertext to out from its current
// offset, itself; no data crosses the socket. On success the offsets of seekable files are
// advanced past what was read and written, as io.Copy would leave them. The caller keeps its
// files and must not use them until the call returns. On failure out may hold partial output.
func (cl *Client) EncryptFile(ctx context.Context, in, out *os.File) (EncryptionStatus, error) {
	return cl.fileJob(ctx, opEncrypt, in, out, nil)
}

// DecryptFile runs a descriptor decrypt job, as EncryptFile does. status is the EncryptionStatus
// kept with the backup (nil for coffer-v1). A nil error means out holds the whole authentic
// plaintext; on any error out's content must be discarded.
func (cl *Client) DecryptFile(ctx context.Context, in, out *os.File, status *EncryptionStatus) error {
	_, err := cl.fileJob(ctx, opDecrypt, in, out, status)
	return err
}

func (cl *Client) fileJob(ctx context.Context, op byte, in, out *os.File, status *EncryptionStatus) (EncryptionStatus, error) {
	var st EncryptionStatus
	frame, err := cl.jobFrame(op, inputDescriptors, status)
	if err != nil {
		return st, err
	}
	c, err := cl.startJob(ctx, func(c *conn) error { return sendWithFiles(c, frame, in, out) })
	if err != nil {
		return st, ctxErr(ctx, err)
	}
	stop := c.watch(ctx)
	typ, p, err := c.readFrame(nil)
	stop()
	var res jobResult
	switch {
	case err != nil:
	case typ == frameResult:
		if res, err = parseResult(p); err == nil {
			st, err = finishStatus(res)
		}
	case typ == frameError:
		err = parseError(p)
	default:
		err = newError(-44, nil, "cofferd sent a %s frame during a descriptor job", frameName(typ))
	}
	if err != nil {
		c.kill()
		return EncryptionStatus{}, ctxErr(ctx, err)
	}
	cl.put(c)
	advance(in, res.bytesIn)
	advance(out, res.bytesOut)
	return st, nil
}

// advance moves a seekable file's offset by n (pipes and sockets have none: ESPIPE is ignored).
func advance(f *os.File, n uint64) {
	if n > 0 {
		f.Seek(int64(n), io.SeekCurrent)
	}
}

// sendWithFiles sends frame with in's and out's descriptors attached. The descriptors are
// borrowed through SyscallConn, which keeps them open and does not change their blocking mode
// (as File.Fd would).
func sendWithFiles(c *conn, frame []byte, in, out *os.File) error {
	rin, err := in.SyscallConn()
	if err != nil {
		return err
	}
	rout, err := out.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	cerr := rin.Control(func(ifd uintptr) {
		cerr := rout.Control(func(ofd uintptr) {
			rights := syscall.UnixRights(int(ifd), int(ofd))
			n, _, err := c.uc.WriteMsgUnix(frame, rights, nil)
			if err == nil && n != len(frame) {
				err = io.ErrShortWrite
			}
			if err != nil {
				werr = c.ioError(err)
			}
		})
		if cerr != nil {
			werr = cerr
		}
	})
	if cerr != nil {
		return cerr
	}
	return werr
}
