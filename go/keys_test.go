// SPDX-License-Identifier: Apache-2.0

package coffer_test

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	coffer "github.com/coffer-project/coffer/go"
)

// A backup whose Secret is gone: ErrKeyMissing. A backup whose key is wrapped by an HSM this
// daemon has not got: ErrHSMUnavailable, naming the token and key label. Nothing comes out.
func TestKeySentinels(t *testing.T) {
	e := env(t)
	pt := randomBytes(1000, 1)
	ct, _ := encryptStream(t, e.mainC.WithOptions(coffer.Options{Format: "velero-v1"}), pt)
	gone := coffer.EncryptionStatus{IsEncrypted: true, KeyRetrieverType: "secret", Format: "velero-v1",
		KeyRetrieverConfig: map[string]string{"namespace": "velero", "secretName": "deleted-secret"}}
	if got, err := decryptStream(e.mainC, ct, &gone); !errors.Is(err, coffer.ErrKeyMissing) || len(got) != 0 {
		t.Fatalf("missing Secret: %d bytes, %v", len(got), err)
	}

	// A coffer-v1 header as an HSM backup has it (docs/keys.md), then a body that would never
	// authenticate: the key is needed first, and this daemon has no HSM.
	meta := []byte(`{"isEncrypted":true,"keyRetrieverType":"pkcs11","keyRetrieverConfig":{"module":"/usr/lib/softhsm/libsofthsm2.so","token":"vault-7","keyLabel":"kek-2031","mechanism":"CKM_AES_GCM","iv":"8PHy8/T19vf4+fr7","wrappedKey":"AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM09rh6O/2/QQLEhkgJy41PENK"},"format":"coffer-v1"}`)
	hsm := append([]byte("COFFER\x00\x01"), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(hsm[8:], uint32(len(meta)))
	hsm = append(append(hsm, meta...), randomBytes(24+32+16+500, 2)...)
	got, err := decryptStream(e.mainC, hsm, nil)
	var ce *coffer.Error
	if !errors.Is(err, coffer.ErrHSMUnavailable) || len(got) != 0 || !errors.As(err, &ce) ||
		!strings.Contains(ce.Message, "vault-7") || !strings.Contains(ce.Message, "kek-2031") {
		t.Fatalf("HSM backup without an HSM: %d bytes, %v", len(got), err)
	}
	t.Logf("%v", err)
}
