// SPDX-License-Identifier: Apache-2.0

// Package velero wraps a Velero object store so that every object Velero writes (the backup
// archive, its logs, resource lists, metadata) is encrypted by cofferd on the way in and
// decrypted on the way out: NewEncryptingObjectStore.
package velero

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	coffer "github.com/coffer-project/coffer/go"
)

// ObjectStore is Velero's object-storage plugin interface, declared exactly as in Velero's
// pkg/plugin/velero/object_store.go (its main branch, where CreateSignedURL also returns the
// headers a request to the URL must carry). Go interfaces are structural: Velero's
// plugins satisfy this one, and a value of it satisfies Velero's.
type ObjectStore interface {
	// Init prepares the ObjectStore for usage using the provided map of
	// configuration key-value pairs. It returns an error if the ObjectStore
	// cannot be initialized from the provided config.
	Init(config map[string]string) error

	// PutObject creates a new object using the data in body within the specified
	// object storage bucket with the given key.
	PutObject(bucket, key string, body io.Reader) error

	// ObjectExists checks if there is an object with the given key in the object storage bucket.
	ObjectExists(bucket, key string) (bool, error)

	// GetObject retrieves the object with the given key from the specified
	// bucket in object storage.
	GetObject(bucket, key string) (io.ReadCloser, error)

	// ListCommonPrefixes gets a list of all object key prefixes that start with
	// the specified prefix and stop at the next instance of the provided delimiter.
	ListCommonPrefixes(bucket, prefix, delimiter string) ([]string, error)

	// ListObjects gets a list of all keys in the specified bucket
	// that have the given prefix.
	ListObjects(bucket, prefix string) ([]string, error)

	// DeleteObject removes the object with the specified key from the given
	// bucket.
	DeleteObject(bucket, key string) error

	// CreateSignedURL creates a pre-signed URL for the given bucket and key that expires after ttl.
	CreateSignedURL(bucket, key string, ttl time.Duration) (string, map[string][]string, error)
}

// Config keys the wrapper takes out of Init's map (the inner plugin never sees them, so a
// plugin that validates its keys does not refuse them). Values "true" or "false".
const (
	// ConfigAllowPlaintextObjects: GetObject returns objects that are not coffer-v1 as they are.
	ConfigAllowPlaintextObjects = "cofferAllowPlaintextObjects"
	// ConfigAllowSignedURLs: CreateSignedURL passes through (the URL serves ciphertext).
	ConfigAllowSignedURLs = "cofferAllowSignedURLs"
)

// Options change the wrapper's refusals. The zero value refuses both.
type Options struct {
	// AllowPlaintextObjects lets GetObject return objects that are not coffer-v1 (written
	// before encryption was switched on) unchanged. Off, such an object is refused with
	// ErrPlaintextObject: someone with write access to the bucket could otherwise replace an
	// encrypted object with a plaintext one of their choosing.
	AllowPlaintextObjects bool
	// AllowSignedURLs lets CreateSignedURL pass through to the inner store. Off, it fails with
	// ErrSignedURL: the URL would serve ciphertext that the caller cannot read.
	AllowSignedURLs bool
}

var (
	// ErrPlaintextObject: GetObject found an object that is not coffer-v1.
	ErrPlaintextObject = errors.New("velero/coffer: the object is not coffer-v1 encrypted")
	// ErrSignedURL: CreateSignedURL is refused.
	ErrSignedURL = errors.New("velero/coffer: a signed URL would serve ciphertext")
)

// cofferMagic is the start of every coffer-v1 object (docs/format.md): "COFFER" 0x00, version.
var cofferMagic = []byte("COFFER\x00")

type encryptingStore struct {
	inner ObjectStore
	c     *coffer.Client
	opts  Options
}

// NewEncryptingObjectStore wraps inner: PutObject streams the body through cofferd into a
// coffer-v1 object (self-describing: its authenticated header names the key, so nothing else
// needs storing), GetObject returns a reader of the authenticated plaintext, listing and
// deletion pass through, CreateSignedURL and objects that are not coffer-v1 are refused (see
// Options; Init's ConfigAllow* keys turn them on).
func NewEncryptingObjectStore(inner ObjectStore, c *coffer.Client) ObjectStore {
	return NewEncryptingObjectStoreWithOptions(inner, c, Options{})
}

// NewEncryptingObjectStoreWithOptions is NewEncryptingObjectStore with the refusals set by o.
func NewEncryptingObjectStoreWithOptions(inner ObjectStore, c *coffer.Client, o Options) ObjectStore {
	return &encryptingStore{inner: inner, c: c.WithOptions(coffer.Options{Format: "coffer-v1"}), opts: o}
}

// Init takes the wrapper's keys out of config and passes the rest to the inner store.
func (s *encryptingStore) Init(config map[string]string) error {
	rest := make(map[string]string, len(config))
	for k, v := range config {
		switch k {
		case ConfigAllowPlaintextObjects, ConfigAllowSignedURLs:
			b, err := parseBool(k, v)
			if err != nil {
				return err
			}
			if k == ConfigAllowPlaintextObjects {
				s.opts.AllowPlaintextObjects = b
			} else {
				s.opts.AllowSignedURLs = b
			}
		default:
			rest[k] = v
		}
	}
	return s.inner.Init(rest)
}

func parseBool(k, v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false", "":
		return false, nil
	}
	return false, fmt.Errorf("velero/coffer: config %s is %q: use true or false", k, v)
}

// PutObject encrypts body through cofferd while the inner store reads the ciphertext. When
// encryption fails the inner store's body fails too (never a clean end), so a partial object
// is not stored as complete.
func (s *encryptingStore) PutObject(bucket, key string, body io.Reader) error {
	pr, pw := io.Pipe()
	stored := make(chan error, 1)
	go func() {
		err := s.inner.PutObject(bucket, key, pr)
		pr.CloseWithError(errors.New("velero/coffer: the inner store stopped reading"))
		stored <- err
	}()
	err := func() error {
		w, err := s.c.NewEncryptionWriter(context.Background(), pw)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, body); err != nil {
			w.Close()
			return fmt.Errorf("velero/coffer: reading the body of %s/%s: %w", bucket, key, err)
		}
		return w.Close()
	}()
	if err != nil {
		pw.CloseWithError(err)
		if serr := <-stored; serr != nil {
			return fmt.Errorf("velero/coffer: encrypting %s/%s: %w (the inner store: %v)", bucket, key, err, serr)
		}
		return fmt.Errorf("velero/coffer: encrypting %s/%s: %w", bucket, key, err)
	}
	pw.Close()
	return <-stored
}

// GetObject returns a reader of the object's authenticated plaintext. Read fails with the
// daemon's error (coffer.ErrTampered, ...) when the object was modified.
func (s *encryptingStore) GetObject(bucket, key string) (io.ReadCloser, error) {
	rc, err := s.inner.GetObject(bucket, key)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	head, perr := br.Peek(len(cofferMagic))
	if perr != nil && perr != io.EOF {
		rc.Close()
		return nil, fmt.Errorf("velero/coffer: reading %s/%s: %w", bucket, key, perr)
	}
	if string(head) != string(cofferMagic) {
		if s.opts.AllowPlaintextObjects {
			return readCloser{br, rc.Close}, nil
		}
		rc.Close()
		return nil, fmt.Errorf("%w: %s/%s does not start with the coffer-v1 header (it was written "+
			"before encryption was switched on, or by something else); refusing to return it as "+
			"plaintext (set %s=true, or Options.AllowPlaintextObjects, to read such objects)",
			ErrPlaintextObject, bucket, key, ConfigAllowPlaintextObjects)
	}
	dr, err := s.c.NewDecryptionReader(context.Background(), br, nil)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return readCloser{dr, func() error {
		dr.Close()
		return rc.Close()
	}}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

func (s *encryptingStore) ObjectExists(bucket, key string) (bool, error) {
	return s.inner.ObjectExists(bucket, key)
}

func (s *encryptingStore) ListCommonPrefixes(bucket, prefix, delimiter string) ([]string, error) {
	return s.inner.ListCommonPrefixes(bucket, prefix, delimiter)
}

func (s *encryptingStore) ListObjects(bucket, prefix string) ([]string, error) {
	return s.inner.ListObjects(bucket, prefix)
}

func (s *encryptingStore) DeleteObject(bucket, key string) error {
	return s.inner.DeleteObject(bucket, key)
}

// CreateSignedURL is refused unless allowed: whoever fetches the URL gets ciphertext.
func (s *encryptingStore) CreateSignedURL(bucket, key string, ttl time.Duration) (string, map[string][]string, error) {
	if !s.opts.AllowSignedURLs {
		return "", nil, fmt.Errorf("%w of %s/%s, useless without cofferd; download it through "+
			"GetObject instead (or set %s=true, or Options.AllowSignedURLs)", ErrSignedURL, bucket, key,
			ConfigAllowSignedURLs)
	}
	return s.inner.CreateSignedURL(bucket, key, ttl)
}
