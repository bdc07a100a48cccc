// SPDX-License-Identifier: Apache-2.0

package velero_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	coffer "github.com/coffer-project/coffer/go"
	"github.com/coffer-project/coffer/go/internal/testdaemon"
	"github.com/coffer-project/coffer/go/velero"
)

// memStore is an in-memory ObjectStore: what a cloud plugin would hold in its bucket.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte // bucket + "/" + key
	config  map[string]string
}

func newMemStore() *memStore { return &memStore{objects: map[string][]byte{}} }

func (m *memStore) Init(config map[string]string) error { m.config = config; return nil }

// PutObject stores the body only if it was read to a clean end.
func (m *memStore) PutObject(bucket, key string, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[bucket+"/"+key] = b
	return nil
}

func (m *memStore) ObjectExists(bucket, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.objects[bucket+"/"+key]
	return ok, nil
}

func (m *memStore) GetObject(bucket, key string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[bucket+"/"+key]
	if !ok {
		return nil, fmt.Errorf("no object %s/%s", bucket, key)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memStore) ListCommonPrefixes(bucket, prefix, delimiter string) ([]string, error) {
	seen := map[string]bool{}
	keys, _ := m.ListObjects(bucket, prefix)
	for _, k := range keys {
		if i := strings.Index(k[len(prefix):], delimiter); i >= 0 {
			seen[k[:len(prefix)+i+len(delimiter)]] = true
		}
	}
	var out []string
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

func (m *memStore) ListObjects(bucket, prefix string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.objects {
		if strings.HasPrefix(k, bucket+"/"+prefix) {
			out = append(out, strings.TrimPrefix(k, bucket+"/"))
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m *memStore) DeleteObject(bucket, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, bucket+"/"+key)
	return nil
}

func (m *memStore) CreateSignedURL(bucket, key string, ttl time.Duration) (string, map[string][]string, error) {
	return "https://store.example/" + bucket + "/" + key, map[string][]string{"X-Ttl": {ttl.String()}}, nil
}

var _ velero.ObjectStore = (*memStore)(nil)

var (
	daemonOnce sync.Once
	daemon     *testdaemon.Daemon
	client     *coffer.Client
	daemonErr  error
	daemonDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if client != nil {
		client.Close()
	}
	if daemon != nil {
		if err := daemon.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if daemonDir != "" {
		os.RemoveAll(daemonDir)
	}
	os.Exit(code)
}

func dial(t *testing.T) *coffer.Client {
	cofferd, _ := testdaemon.Require(t)
	daemonOnce.Do(func() {
		if daemonDir, daemonErr = os.MkdirTemp("", "coffer-velero-test-"); daemonErr != nil {
			return
		}
		secrets := filepath.Join(daemonDir, "secrets")
		if _, daemonErr = testdaemon.Secrets(secrets, map[string]int{"coffer-key": 32}); daemonErr != nil {
			return
		}
		daemon = testdaemon.New(cofferd, daemonDir, "velero", "--secrets-dir", secrets, "--workers", "2")
		if daemonErr = daemon.Start(); daemonErr != nil {
			return
		}
		client, daemonErr = coffer.Dial(context.Background(), daemon.Sock)
	})
	if daemonErr != nil {
		t.Fatal(daemonErr)
	}
	return client
}

func random(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// Velero's objects of one backup go through the wrapper: the inner store holds only coffer-v1
// ciphertext, reads give the plaintext back, listing and deletion pass through.
func TestEncryptingStoreRoundTrip(t *testing.T) {
	c := dial(t)
	inner := newMemStore()
	s := velero.NewEncryptingObjectStore(inner, c)
	if err := s.Init(map[string]string{"region": "eu-1"}); err != nil || inner.config["region"] != "eu-1" {
		t.Fatalf("Init: %v %v", err, inner.config)
	}
	objects := map[string][]byte{
		"backups/b1/b1.tar.gz":                random(3<<20+17, 1),
		"backups/b1/b1-logs.gz":               random(20000, 2),
		"backups/b1/b1-resource-list.json.gz": []byte(`{"v1/Secret":["velero/cloud-credentials"]}`),
		"backups/b1/velero-backup.json":       []byte(`{"kind":"Backup","spec":{}}`),
		"backups/b1/empty":                    {},
	}
	for k, v := range objects {
		if err := s.PutObject("bkt", k, bytes.NewReader(v)); err != nil {
			t.Fatalf("PutObject %s: %v", k, err)
		}
	}
	for k, v := range objects {
		stored := inner.objects["bkt/"+k]
		if !bytes.HasPrefix(stored, []byte("COFFER\x00\x01")) {
			t.Fatalf("%s is stored without the coffer-v1 header", k)
		}
		probe := v
		if len(probe) > 64 {
			probe = probe[len(probe)/2 : len(probe)/2+32]
		}
		if len(probe) > 0 && bytes.Contains(stored, probe) {
			t.Fatalf("the inner store holds plaintext of %s", k)
		}
		rc, err := s.GetObject("bkt", k)
		if err != nil {
			t.Fatalf("GetObject %s: %v", k, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("GetObject %s: %d bytes, %v", k, len(got), err)
		}
	}
	keys, _ := s.ListObjects("bkt", "backups/b1/")
	if len(keys) != len(objects) {
		t.Fatalf("ListObjects %v", keys)
	}
	prefixes, _ := s.ListCommonPrefixes("bkt", "backups/", "/")
	if len(prefixes) != 1 || prefixes[0] != "backups/b1/" {
		t.Fatalf("ListCommonPrefixes %v", prefixes)
	}
	if ok, _ := s.ObjectExists("bkt", "backups/b1/empty"); !ok {
		t.Fatal("ObjectExists")
	}
	if err := s.DeleteObject("bkt", "backups/b1/empty"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.ObjectExists("bkt", "backups/b1/empty"); ok {
		t.Fatal("DeleteObject did not pass through")
	}
}

// An object written before encryption was switched on is refused by default, and the error
// says why and what to set; with the option it is returned as it is.
func TestPlaintextObjectsRefused(t *testing.T) {
	c := dial(t)
	inner := newMemStore()
	inner.PutObject("bkt", "old/backup.tar.gz", bytes.NewReader([]byte("plain old backup")))
	inner.PutObject("bkt", "old/short", bytes.NewReader([]byte("x")))
	s := velero.NewEncryptingObjectStore(inner, c)
	for _, k := range []string{"old/backup.tar.gz", "old/short"} {
		_, err := s.GetObject("bkt", k)
		if !errors.Is(err, velero.ErrPlaintextObject) || !strings.Contains(err.Error(), velero.ConfigAllowPlaintextObjects) {
			t.Fatalf("%s: %v", k, err)
		}
	}
	if err := s.Init(map[string]string{velero.ConfigAllowPlaintextObjects: "true", "region": "x"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := inner.config[velero.ConfigAllowPlaintextObjects]; ok || inner.config["region"] != "x" {
		t.Fatalf("the inner store saw the wrapper's key: %v", inner.config)
	}
	rc, err := s.GetObject("bkt", "old/backup.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "plain old backup" {
		t.Fatalf("opted-in plaintext read: %q", got)
	}
	opt := velero.NewEncryptingObjectStoreWithOptions(inner, c, velero.Options{AllowPlaintextObjects: true})
	if rc, err := opt.GetObject("bkt", "old/short"); err != nil {
		t.Fatal(err)
	} else {
		rc.Close()
	}
	if err := s.Init(map[string]string{velero.ConfigAllowSignedURLs: "yes"}); err == nil {
		t.Fatal("a config value other than true/false was accepted")
	}
}

// A modified object fails authentication on read; a failing body stores nothing.
func TestTamperedAndFailedObjects(t *testing.T) {
	c := dial(t)
	inner := newMemStore()
	s := velero.NewEncryptingObjectStore(inner, c)
	pt := random(100000, 3)
	if err := s.PutObject("bkt", "a", bytes.NewReader(pt)); err != nil {
		t.Fatal(err)
	}
	obj := inner.objects["bkt/a"]
	obj[len(obj)-5] ^= 1
	rc, err := s.GetObject("bkt", "a")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, coffer.ErrTampered) || len(got)%16384 != 0 || !bytes.Equal(got, pt[:len(got)]) {
		t.Fatalf("tampered object: %d bytes, %v", len(got), err)
	}

	failing := io.MultiReader(bytes.NewReader(pt), errReader{})
	if err := s.PutObject("bkt", "b", failing); err == nil {
		t.Fatal("PutObject with a failing body succeeded")
	}
	if ok, _ := inner.ObjectExists("bkt", "b"); ok {
		t.Fatal("a partial object was stored")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk read error") }

func TestSignedURL(t *testing.T) {
	c := dial(t)
	inner := newMemStore()
	s := velero.NewEncryptingObjectStore(inner, c)
	if _, _, err := s.CreateSignedURL("bkt", "k", time.Minute); !errors.Is(err, velero.ErrSignedURL) {
		t.Fatalf("CreateSignedURL: %v", err)
	}
	if err := s.Init(map[string]string{velero.ConfigAllowSignedURLs: "true"}); err != nil {
		t.Fatal(err)
	}
	url, headers, err := s.CreateSignedURL("bkt", "k", time.Minute)
	if err != nil || url != "https://store.example/bkt/k" || headers["X-Ttl"][0] != "1m0s" {
		t.Fatalf("allowed CreateSignedURL: %q %v %v", url, headers, err)
	}
}

// legacyMem is a store of the older interface (CreateSignedURL without headers).
type legacyMem struct{ *memStore }

func (l legacyMem) CreateSignedURL(bucket, key string, ttl time.Duration) (string, error) {
	url, _, err := l.memStore.CreateSignedURL(bucket, key, ttl)
	return url, err
}

// A plugin of an older Velero release wraps through FromLegacy and back through ToLegacy.
func TestLegacyStores(t *testing.T) {
	c := dial(t)
	inner := newMemStore()
	var s velero.LegacyObjectStore = velero.ToLegacy(velero.NewEncryptingObjectStore(velero.FromLegacy(legacyMem{inner}), c))
	if err := s.PutObject("bkt", "k", strings.NewReader("secret data")); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(inner.objects["bkt/k"], []byte("secret data")) {
		t.Fatal("plaintext in the inner store")
	}
	rc, err := s.GetObject("bkt", "k")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "secret data" {
		t.Fatalf("%q", got)
	}
	if _, err := s.CreateSignedURL("bkt", "k", time.Minute); !errors.Is(err, velero.ErrSignedURL) {
		t.Fatal(err)
	}
}
