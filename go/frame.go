// SPDX-License-Identifier: Apache-2.0

package coffer

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Protocol v1 (docs/protocol.md): frame types, limits and the codec. Every length a peer
// controls is checked against its limit before anything is allocated or read.

const (
	frameHello  = 1
	frameJob    = 2
	frameData   = 3
	frameEnd    = 4
	frameResult = 5
	frameError  = 6
	frameHealth = 7
	frameStats  = 8

	headerLen        = 8
	maxFrame         = 131072 // COFFER_MAX_FRAME
	maxFormatName    = 32     // COFFER_MAX_FORMAT_NAME
	maxContext       = 32000  // COFFER_MAX_CONTEXT
	maxMessage       = 2048   // COFFER_MAX_MESSAGE
	maxJSON          = 65536  // COFFER_MAX_JSON
	protocolVersion  = 1
	opEncrypt        = 1
	opDecrypt        = 2
	inputStream      = 0
	inputDescriptors = 1
)

var helloMagic = [4]byte{'C', 'O', 'F', 'R'}

// putHeader writes a frame header for typ and n payload bytes into h[:8].
func putHeader(h []byte, typ byte, n int) {
	h[0], h[1], h[2], h[3] = typ, 0, 0, 0
	binary.BigEndian.PutUint32(h[4:8], uint32(n))
}

// readHeader reads a frame header and checks flags, reserved bytes and the length limit.
func readHeader(r io.Reader, h []byte) (typ byte, n int, err error) {
	if _, err = io.ReadFull(r, h[:headerLen]); err != nil {
		return 0, 0, err
	}
	if h[1] != 0 || h[2] != 0 || h[3] != 0 {
		return 0, 0, newError(-41, nil, "cofferd sent a frame with flags or reserved bytes set")
	}
	n64 := binary.BigEndian.Uint32(h[4:8])
	if n64 > maxFrame {
		return 0, 0, newError(-42, nil, "cofferd sent a frame of %d bytes", n64)
	}
	if h[0] < frameHello || h[0] > frameStats {
		return 0, 0, newError(-41, nil, "cofferd sent a frame of unknown type %d", h[0])
	}
	return h[0], int(n64), nil
}

func helloFrame() []byte {
	f := make([]byte, headerLen+12)
	putHeader(f, frameHello, 12)
	copy(f[8:12], helloMagic[:])
	binary.BigEndian.PutUint16(f[12:14], protocolVersion)
	binary.BigEndian.PutUint16(f[14:16], protocolVersion)
	binary.BigEndian.PutUint32(f[16:20], maxFrame)
	return f
}

func checkHello(p []byte) error {
	if len(p) != 12 || [4]byte{p[0], p[1], p[2], p[3]} != helloMagic {
		return newError(-40, nil, "cofferd's HELLO reply is malformed")
	}
	lo, hi := binary.BigEndian.Uint16(p[4:6]), binary.BigEndian.Uint16(p[6:8])
	if lo != protocolVersion || hi != protocolVersion {
		return newError(-40, nil, "cofferd chose protocol versions %d..%d; this client speaks 1", lo, hi)
	}
	return nil
}

// jobSpec is what a JOB frame carries.
type jobSpec struct {
	op       byte
	input    byte
	format   string
	context  []byte
	metadata []byte
	fsync    bool // descriptor jobs: fsync the output before RESULT
}

func validFormatName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// jobFrame encodes j, refusing what the daemon would refuse before anything is sent.
func jobFrame(j jobSpec) ([]byte, error) {
	if len(j.format) > maxFormatName || !validFormatName(j.format) {
		return nil, newError(-27, nil, "format name %q: at most %d characters of [a-z0-9-]", j.format, maxFormatName)
	}
	if len(j.context) > maxContext {
		return nil, newError(-3, nil, "context of %d bytes exceeds the protocol's %d", len(j.context), maxContext)
	}
	if len(j.metadata) > maxMetadata {
		return nil, newError(-25, nil, "status metadata of %d bytes exceeds the protocol's %d", len(j.metadata), maxMetadata)
	}
	n := 1 + 1 + 2 + 1 + len(j.format) + 2 + len(j.context) + 4 + len(j.metadata)
	f := make([]byte, headerLen, headerLen+n)
	putHeader(f, frameJob, n)
	var flags byte
	if j.fsync {
		flags = 1 // FSYNC, bit 0 of the big-endian u16 flags
	}
	f = append(f, j.op, j.input, 0, flags, byte(len(j.format)))
	f = append(f, j.format...)
	f = binary.BigEndian.AppendUint16(f, uint16(len(j.context)))
	f = append(f, j.context...)
	f = binary.BigEndian.AppendUint32(f, uint32(len(j.metadata)))
	f = append(f, j.metadata...)
	return f, nil
}

// jobResult is a decoded RESULT frame.
type jobResult struct {
	bytesIn, bytesOut uint64
	metadata          []byte
}

func parseResult(p []byte) (jobResult, error) {
	var r jobResult
	if len(p) < 20 {
		return r, newError(-41, nil, "cofferd's RESULT frame is %d bytes, shorter than 20", len(p))
	}
	r.bytesIn = binary.BigEndian.Uint64(p[0:8])
	r.bytesOut = binary.BigEndian.Uint64(p[8:16])
	n := binary.BigEndian.Uint32(p[16:20])
	if n > maxMetadata || int(n) != len(p)-20 {
		return r, newError(-41, nil, "cofferd's RESULT frame declares %d metadata bytes and carries %d", n, len(p)-20)
	}
	r.metadata = append([]byte(nil), p[20:]...)
	return r, nil
}

// parseError turns an ERROR frame's payload into an *Error.
func parseError(p []byte) *Error {
	if len(p) < 6 {
		return newError(-41, nil, "cofferd's ERROR frame is %d bytes, shorter than 6", len(p))
	}
	code := int(int32(binary.BigEndian.Uint32(p[0:4])))
	n := int(binary.BigEndian.Uint16(p[4:6]))
	if n > maxMessage || n != len(p)-6 || code >= 0 {
		return newError(-41, nil, "cofferd's ERROR frame is malformed (code %d, message %d of %d bytes)", code, n, len(p)-6)
	}
	return &Error{Code: code, Name: ErrorName(code), Message: string(p[6:])}
}

func frameName(t byte) string {
	names := [...]string{"?", "HELLO", "JOB", "DATA", "END", "RESULT", "ERROR", "HEALTH", "STATS"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("type %d", t)
}
