// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coffer-project/coffer/go/internal/testdaemon"
)

// The example against a real cofferd: it backs up docs/, prints the status and restores it.
func TestExample(t *testing.T) {
	cofferd, _ := testdaemon.Require(t)
	dir := t.TempDir()
	if _, err := testdaemon.Secrets(filepath.Join(dir, "secrets"), map[string]int{"coffer-key": 32}); err != nil {
		t.Fatal(err)
	}
	d := testdaemon.New(cofferd, dir, "example", "--secrets-dir", filepath.Join(dir, "secrets"), "--workers", "2")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	var out bytes.Buffer
	if err := run(&out, d.Sock, "../../../docs", filepath.Join(dir, "backup.coffer")); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := out.String()
	if !strings.HasSuffix(text, "restored identical\n") {
		t.Fatalf("output:\n%s", text)
	}
	js := text[strings.Index(text, "{") : strings.LastIndex(text, "}")+1]
	var st struct {
		Encryption struct {
			IsEncrypted        bool              `json:"isEncrypted"`
			KeyRetrieverType   string            `json:"keyRetrieverType"`
			KeyRetrieverConfig map[string]string `json:"keyRetrieverConfig"`
		} `json:"encryption"`
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil || !st.Encryption.IsEncrypted ||
		st.Encryption.KeyRetrieverConfig["secretName"] != "coffer-key" {
		t.Fatalf("printed status %s: %v", js, err)
	}
}
