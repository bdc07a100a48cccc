// SPDX-License-Identifier: Apache-2.0

package coffer_test

import (
	"encoding/json"
	"reflect"
	"testing"

	coffer "github.com/coffer-project/coffer/go"
)

// The Velero design's EncryptionStatus, copied from its text: the daemon's status must
// unmarshal into it and marshal from it as Velero stores it.
type designStatus struct {
	IsEncrypted        bool              `json:"isEncrypted,omitempty"`
	KeyRetrieverType   string            `json:"keyRetrieverType,omitempty"`
	KeyRetrieverConfig map[string]string `json:"keyRetrieverConfig,omitempty"`
}

// An HSM backup's status with a fallback note and a field of a later version survives a
// store-and-load through JSON, every field in its order.
func TestStatusKeepsEveryField(t *testing.T) {
	in := `{"isEncrypted":true,"keyRetrieverType":"pkcs11","keyRetrieverConfig":{"keyLabel":"kek-2026","token":"coffer"},"format":"coffer-v1","keyId":"3f9a1c0b7d2e4a61","wrappedKey":{"alg":"aes-gcm","iv":"AAEC","ct":"q83v"},"hsmFallback":{"tried":"pkcs11","reason":"HSM_LOGIN"},"futureField":[1,2,{"x":null}]}`
	var st coffer.EncryptionStatus
	if err := json.Unmarshal([]byte(in), &st); err != nil {
		t.Fatal(err)
	}
	if !st.IsEncrypted || st.KeyRetrieverType != "pkcs11" || st.KeyRetrieverConfig["token"] != "coffer" ||
		st.Format != "coffer-v1" || st.KeyID != "3f9a1c0b7d2e4a61" {
		t.Fatalf("named fields: %+v", st)
	}
	if got := st.Fields(); !reflect.DeepEqual(got, []string{"wrappedKey", "hsmFallback", "futureField"}) {
		t.Fatalf("kept fields %v", got)
	}
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Fatalf("re-marshalled:\n%s\nwant\n%s", out, in)
	}
	// Inside a Backup's status, as Velero stores it.
	type backupStatus struct {
		Phase      string                  `json:"phase"`
		Encryption coffer.EncryptionStatus `json:"encryption,omitempty"`
	}
	b, _ := json.Marshal(backupStatus{"Completed", st})
	var back backupStatus
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if again, _ := json.Marshal(back.Encryption); string(again) != in {
		t.Fatalf("through a backup status: %s", again)
	}
	// The design's struct reads the same JSON.
	var d designStatus
	if err := json.Unmarshal(out, &d); err != nil || !d.IsEncrypted || d.KeyRetrieverConfig["keyLabel"] != "kek-2026" {
		t.Fatalf("design struct: %+v %v", d, err)
	}
}

func TestStatusDesignTags(t *testing.T) {
	st := coffer.EncryptionStatus{IsEncrypted: true, KeyRetrieverType: "secret",
		KeyRetrieverConfig: map[string]string{"secretName": "k", "namespace": "velero"}}
	a, _ := json.Marshal(st)
	b, _ := json.Marshal(designStatus{true, "secret", map[string]string{"secretName": "k", "namespace": "velero"}})
	if string(a) != string(b) {
		t.Fatalf("status %s, design %s", a, b)
	}
	if z, _ := json.Marshal(coffer.EncryptionStatus{}); string(z) != "{}" {
		t.Fatalf("zero status %s", z)
	}
	for _, bad := range []string{`{"isEncrypted":true,"isEncrypted":false}`, `[]`, `{"keyId":5}`, `{"x":1,"x":2}`} {
		var st coffer.EncryptionStatus
		if err := json.Unmarshal([]byte(bad), &st); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// The daemon's own status of every format decodes into the design's struct.
func TestDaemonStatusIsDesigns(t *testing.T) {
	e := env(t)
	_, st := encryptStream(t, e.mainC, []byte("x"))
	b, _ := json.Marshal(st)
	var d designStatus
	if err := json.Unmarshal(b, &d); err != nil || !d.IsEncrypted || d.KeyRetrieverType != "secret" ||
		d.KeyRetrieverConfig["secretName"] != "raw" {
		t.Fatalf("%s -> %+v (%v)", b, d, err)
	}
}
