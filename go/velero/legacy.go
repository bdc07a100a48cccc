// SPDX-License-Identifier: Apache-2.0

package velero

import (
	"io"
	"time"
)

// LegacyObjectStore is ObjectStore as Velero releases declared it before CreateSignedURL
// returned headers (the plugins built against those releases implement this one).
type LegacyObjectStore interface {
	Init(config map[string]string) error
	PutObject(bucket, key string, body io.Reader) error
	ObjectExists(bucket, key string) (bool, error)
	GetObject(bucket, key string) (io.ReadCloser, error)
	ListCommonPrefixes(bucket, prefix, delimiter string) ([]string, error)
	ListObjects(bucket, prefix string) ([]string, error)
	DeleteObject(bucket, key string) error
	CreateSignedURL(bucket, key string, ttl time.Duration) (string, error)
}

// FromLegacy adapts a store of the older interface to ObjectStore (no headers).
func FromLegacy(s LegacyObjectStore) ObjectStore { return legacyStore{s} }

// ToLegacy adapts an ObjectStore (such as the encrypting wrapper) to the older interface; the
// headers a signed URL needs are dropped.
func ToLegacy(s ObjectStore) LegacyObjectStore { return modernStore{s} }

type legacyStore struct{ LegacyObjectStore }

func (l legacyStore) CreateSignedURL(bucket, key string, ttl time.Duration) (string, map[string][]string, error) {
	url, err := l.LegacyObjectStore.CreateSignedURL(bucket, key, ttl)
	return url, nil, err
}

type modernStore struct{ ObjectStore }

func (m modernStore) CreateSignedURL(bucket, key string, ttl time.Duration) (string, error) {
	url, _, err := m.ObjectStore.CreateSignedURL(bucket, key, ttl)
	return url, err
}
