// SPDX-License-Identifier: Apache-2.0

package coffer

import (
	"errors"
	"fmt"
)

// Error is a failure with a code of coffer's error table (engine/coffer_error.h): a job the
// daemon refused (the code and message of its ERROR frame), or a failure on this side (a
// connection that broke: PEER_GONE; no daemon: CONNECT; a malformed frame: PROTO_FRAME).
//
// Compare with the sentinels through errors.Is: errors.Is(err, coffer.ErrWrongKey).
type Error struct {
	Code    int    // a negative code of the table, e.g. -20
	Name    string // its stable name, e.g. "WRONG_KEY"
	Message string // the daemon's message (the table's sentence, ": ", a detail), or ours
	err     error  // the underlying cause on this side, if any (errors.Unwrap)
}

func (e *Error) Error() string {
	return fmt.Sprintf("coffer: %s (%s %d)", e.Message, e.Name, e.Code)
}

// Unwrap returns the local cause (a network error, say), or nil.
func (e *Error) Unwrap() error { return e.err }

// Is reports whether target is a sentinel (or any *Error) of the same code. ErrProtocol
// matches every PROTO_* code (-40 to -44), ErrHSMUnavailable every HSM code (-60 to -66).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	switch t {
	case ErrProtocol:
		return e.Code <= -40 && e.Code >= -44
	case ErrHSMUnavailable:
		return e.Code <= -60 && e.Code >= -66
	}
	return t.Code == e.Code
}

// The sentinels, for errors.Is.
var (
	ErrWrongKey       = sentinel(-20) // the key does not match the backup's (nothing was decrypted)
	ErrTampered       = sentinel(-21) // authentication failed: the ciphertext or header was modified
	ErrTruncated      = sentinel(-22) // the ciphertext's end is missing
	ErrKeyMissing     = sentinel(-12) // the Secret or key file does not exist or is empty
	ErrHSMUnavailable = sentinel(-66) // the HSM the backup needs cannot serve it (any HSM_* code)
	ErrBusy           = sentinel(-46) // too many connections (retried before any byte was sent)
	ErrShutdown       = sentinel(-47) // the daemon is stopping (retried before any byte was sent)
	ErrPermission     = sentinel(-45) // the daemon does not admit this uid/gid
	ErrProtocol       = sentinel(-41) // a malformed or unexpected frame (any PROTO_* code)
	ErrConnect        = sentinel(-48) // no daemon listens at the socket
	ErrPeerGone       = sentinel(-49) // the connection broke before the job finished
)

func sentinel(code int) *Error {
	return &Error{Code: code, Name: ErrorName(code), Message: ErrorMessage(code)}
}

// newError makes an *Error of code with a message of the table's sentence and a detail.
func newError(code int, cause error, format string, args ...interface{}) *Error {
	msg := ErrorMessage(code)
	if format != "" {
		msg += ": " + fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Name: ErrorName(code), Message: msg, err: cause}
}

// errorCodes is engine/coffer_error.h's table, in its order. TestErrorTable parses the header
// and compares: never edit one without the other.
var errorCodes = []struct {
	code    int
	name    string
	message string
}{
	{-1, "INTERNAL", "internal error (a bug in coffer; please report it)"},
	{-2, "NOMEM", "out of memory"},
	{-3, "INVALID_ARG", "invalid argument"},
	{-4, "CPU", "the requested AES-GCM backend cannot run on this CPU"},
	{-10, "KEY_SIZE", "key has the wrong size for its format"},
	{-11, "KEY_FORM", "key is a passphrase or text, not 32 random bytes; create one with 'coffer keygen'"},
	{-12, "KEY_MISSING", "key not found: the Secret or key file does not exist or is empty"},
	{-13, "KEY_READ", "key could not be read (permissions or I/O error)"},
	{-14, "SECRET_NAME", "invalid Kubernetes namespace or Secret name"},
	{-20, "WRONG_KEY", "wrong key: the key commitment does not match (wrong key, wrong context, or the salt/commitment was altered); nothing was decrypted"},
	{-21, "TAMPERED", "authentication failed: the ciphertext or its header was modified"},
	{-22, "TRUNCATED", "the ciphertext is truncated: its end is missing"},
	{-23, "TRAILING", "the ciphertext has trailing data after its final chunk"},
	{-24, "BAD_HEADER", "not a coffer-v1 file or its header is malformed"},
	{-25, "TOO_LARGE", "message or metadata exceeds the format's limit"},
	{-26, "METADATA", "status metadata is malformed or missing a required field"},
	{-27, "FORMAT", "unknown or unsupported format"},
	{-28, "STATE", "operation not allowed in this stream state (the stream already failed or finished)"},
	{-30, "IO", "I/O error"},
	{-31, "NOSPACE", "no space left on the output device"},
	{-32, "SPOOL", "could not use the temporary spool file"},
	{-40, "PROTO_VERSION", "protocol version not supported"},
	{-41, "PROTO_FRAME", "malformed protocol frame"},
	{-42, "PROTO_TOO_BIG", "protocol frame exceeds the maximum size"},
	{-43, "PROTO_OP", "unknown protocol operation"},
	{-44, "PROTO_SEQUENCE", "protocol frame not allowed at this point"},
	{-45, "PERMISSION", "permission denied: peer uid/gid not allowed"},
	{-46, "BUSY", "server busy: too many connections"},
	{-47, "SHUTDOWN", "server is shutting down"},
	{-48, "CONNECT", "cannot connect to cofferd (is it running? check --socket)"},
	{-49, "PEER_GONE", "the peer closed the connection before the job finished"},
	{-50, "CONFIG", "invalid configuration"},
	{-60, "HSM_MODULE", "PKCS#11 module could not be loaded"},
	{-61, "HSM_TOKEN", "HSM token not found"},
	{-62, "HSM_KEY", "HSM key not found"},
	{-63, "HSM_LOGIN", "HSM login failed (check the PIN)"},
	{-64, "HSM_CALL", "HSM operation failed"},
	{-65, "HSM_TIMEOUT", "HSM did not answer in time"},
	{-66, "HSM_UNAVAILABLE", "HSM needed to restore this backup is unavailable"},
	{-70, "KUBE_API", "the Kubernetes API request failed"},
	{-71, "KUBE_UNAUTHORIZED", "the Kubernetes API refused cofferd's credential (401)"},
	{-72, "KUBE_FORBIDDEN", "RBAC does not let cofferd read this Secret (403)"},
	{-73, "KUBE_TIMEOUT", "the Kubernetes API did not answer in time"},
	{-74, "KUBE_TLS", "the Kubernetes API server's certificate could not be verified"},
	{-75, "SECRET_NAMESPACE", "this namespace is not one cofferd may read Secrets from (--allow-secret-namespace)"},
}

// ErrorName is the stable name of a code ("WRONG_KEY"), or "UNKNOWN" for a code not in the table.
func ErrorName(code int) string {
	for _, e := range errorCodes {
		if e.code == code {
			return e.name
		}
	}
	return "UNKNOWN"
}

// ErrorMessage is the table's sentence for a code (a generic one for an unknown code).
func ErrorMessage(code int) string {
	for _, e := range errorCodes {
		if e.code == code {
			return e.message
		}
	}
	return fmt.Sprintf("unknown error %d", code)
}

// isCode reports whether err is an *Error with that code.
func isCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
