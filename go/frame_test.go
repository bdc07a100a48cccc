// SPDX-License-Identifier: Apache-2.0

package coffer

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The example bytes of docs/protocol.md.
func TestFrameExamples(t *testing.T) {
	if got, want := helloFrame(), unhex(t, "01 00 00 00 00 00 00 0c 43 4f 46 52 00 01 00 01 00 02 00 00"); !bytes.Equal(got, want) {
		t.Errorf("HELLO % x", got)
	}
	job, err := jobFrame(jobSpec{op: opEncrypt, input: inputStream})
	if want := unhex(t, "02 00 00 00 00 00 00 0b 01 00 00 00 00 00 00 00 00 00 00"); err != nil || !bytes.Equal(job, want) {
		t.Errorf("JOB % x %v", job, err)
	}
	frame := unhex(t, "06 00 00 00 00 00 00 07 ff ff ff d6 00 01 78")
	typ, n, err := readHeader(bytes.NewReader(frame), make([]byte, 8))
	if err != nil || typ != frameError || n != 7 {
		t.Fatalf("header: %d %d %v", typ, n, err)
	}
	if e := parseError(frame[8:]); e.Code != -42 || e.Name != "PROTO_TOO_BIG" || e.Message != "x" {
		t.Errorf("ERROR %+v", e)
	}
	// A descriptor job with FSYNC and a format and metadata, field by field.
	job, _ = jobFrame(jobSpec{op: opDecrypt, input: inputDescriptors, format: "velero-v1", metadata: []byte("{}"), fsync: true})
	want := unhex(t, "02 00 00 00 00 00 00 16 02 01 00 01 09") // header, op, input, flags, format_len
	want = append(append(want, "velero-v1"...), unhex(t, "00 00 00 00 00 02")...)
	want = append(want, "{}"...)
	if !bytes.Equal(job, want) {
		t.Errorf("descriptor JOB % x\nwant % x", job, want)
	}
}

// What a hostile or broken daemon could send is refused before anything is buffered.
func TestFrameChecks(t *testing.T) {
	h := make([]byte, 8)
	for _, c := range []struct {
		frame string
		code  int
	}{
		{"03 01 00 00 00 00 00 00", -41}, // flags
		{"03 00 00 01 00 00 00 00", -41}, // reserved
		{"03 00 00 00 00 02 00 01", -42}, // 131073 bytes
		{"09 00 00 00 00 00 00 00", -41}, // unknown type
		{"00 00 00 00 00 00 00 00", -41},
	} {
		_, _, err := readHeader(bytes.NewReader(unhex(t, c.frame)), h)
		if !isCode(err, c.code) {
			t.Errorf("%s: %v", c.frame, err)
		}
	}
	if _, err := parseResult(unhex(t, "00000000000000010000000000000002 00000005 7b7d")); !isCode(err, -41) {
		t.Errorf("RESULT with a wrong metadata length: %v", err)
	}
	r, err := parseResult(unhex(t, "00000000000000010000000000000002 00000002 7b7d"))
	if err != nil || r.bytesIn != 1 || r.bytesOut != 2 || string(r.metadata) != "{}" {
		t.Errorf("RESULT %+v %v", r, err)
	}
	if e := parseError(unhex(t, "00000001 0000")); !errors.Is(e, ErrProtocol) {
		t.Errorf("ERROR with a positive code: %+v", e)
	}
	if err := checkHello(unhex(t, "434f4652 0001 0002 00020000")); !isCode(err, -40) {
		t.Errorf("HELLO choosing two versions: %v", err)
	}
}
