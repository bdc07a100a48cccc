// SPDX-License-Identifier: Apache-2.0

package coffer

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// headerTable parses COFFER_ERROR_TABLE out of engine/coffer_error.h: X(NAME, -N, "..." "...").
func headerTable(t *testing.T) []struct {
	code    int
	name    string
	message string
} {
	src, err := os.ReadFile("../engine/coffer_error.h")
	if err != nil {
		t.Fatalf("the error table's header: %v", err)
	}
	text := strings.ReplaceAll(string(src), "\\\n", "\n")
	start := strings.Index(text, "#define COFFER_ERROR_TABLE(X)")
	end := strings.Index(text[start:], "\n\n")
	if start < 0 || end < 0 {
		t.Fatal("COFFER_ERROR_TABLE not found in coffer_error.h")
	}
	body := text[start : start+end]
	entry := regexp.MustCompile(`X\(\s*([A-Z0-9_]+)\s*,\s*(-?[0-9]+)\s*,((?:\s*"(?:[^"\\]|\\.)*")+)\s*\)`)
	lit := regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	var out []struct {
		code    int
		name    string
		message string
	}
	for _, m := range entry.FindAllStringSubmatch(body, -1) {
		code, _ := strconv.Atoi(m[2])
		var msg strings.Builder
		for _, l := range lit.FindAllString(m[3], -1) {
			s, err := strconv.Unquote(l)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			msg.WriteString(s)
		}
		out = append(out, struct {
			code    int
			name    string
			message string
		}{code, m[1], msg.String()})
	}
	if n := strings.Count(body, "X("); n != len(out) || n < 30 {
		t.Fatalf("parsed %d of the header's %d entries", len(out), n)
	}
	return out
}

// The Go table is engine/coffer_error.h's, entry for entry: codes, names and sentences.
func TestErrorTable(t *testing.T) {
	want := headerTable(t)
	if len(want) != len(errorCodes) {
		t.Fatalf("the header has %d codes, the Go table %d", len(want), len(errorCodes))
	}
	for i, w := range want {
		if got := errorCodes[i]; got != w {
			t.Errorf("entry %d: Go %+v, header %+v", i, got, w)
		}
	}
}

func TestSentinels(t *testing.T) {
	cases := []struct {
		sentinel *Error
		name     string
	}{
		{ErrWrongKey, "WRONG_KEY"}, {ErrTampered, "TAMPERED"}, {ErrTruncated, "TRUNCATED"},
		{ErrKeyMissing, "KEY_MISSING"}, {ErrHSMUnavailable, "HSM_UNAVAILABLE"}, {ErrBusy, "BUSY"},
		{ErrShutdown, "SHUTDOWN"}, {ErrPermission, "PERMISSION"}, {ErrProtocol, "PROTO_FRAME"},
		{ErrConnect, "CONNECT"}, {ErrPeerGone, "PEER_GONE"},
	}
	for _, c := range cases {
		if c.sentinel.Name != c.name {
			t.Errorf("sentinel %d is %s, want %s", c.sentinel.Code, c.sentinel.Name, c.name)
		}
		// A daemon error of the same code, wrapped, matches; one of another code does not.
		err := fmt.Errorf("restoring: %w", &Error{Code: c.sentinel.Code, Name: c.name, Message: "x: detail"})
		if !errors.Is(err, c.sentinel) {
			t.Errorf("errors.Is does not match %s", c.name)
		}
		if errors.Is(&Error{Code: -1}, c.sentinel) {
			t.Errorf("INTERNAL matches %s", c.name)
		}
	}
	for code := -44; code <= -40; code++ {
		if !errors.Is(&Error{Code: code}, ErrProtocol) {
			t.Errorf("%d is not ErrProtocol", code)
		}
	}
	for code := -66; code <= -60; code++ {
		if !errors.Is(&Error{Code: code}, ErrHSMUnavailable) {
			t.Errorf("%d is not ErrHSMUnavailable", code)
		}
	}
	if errors.Is(ErrTampered, ErrWrongKey) || errors.Is(&Error{Code: -45}, ErrProtocol) {
		t.Error("sentinels of different codes match")
	}
	e := parseError([]byte{0xff, 0xff, 0xff, 0xec, 0, 3, 'a', 'b', 'c'})
	if e.Code != -20 || e.Name != "WRONG_KEY" || e.Message != "abc" || !errors.Is(e, ErrWrongKey) {
		t.Errorf("parsed ERROR frame: %+v", e)
	}
}
