// SPDX-License-Identifier: Apache-2.0

package coffer

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// EncryptionStatus is the status metadata to keep with a backup: what an encrypt job returns
// and what a restore hands back. Its first three fields are the Velero design's
// EncryptionStatus, tagged the same, so the JSON drops into a Backup's status unchanged.
//
// Every other field of the daemon's metadata (an HSM envelope, a fallback note, fields added
// by later versions) is kept, in its order, through UnmarshalJSON and MarshalJSON, so that a
// status stored by a backup and loaded by a restore reaches cofferd complete. The zero value
// (IsEncrypted false) describes an unencrypted backup.
type EncryptionStatus struct {
	IsEncrypted        bool              `json:"isEncrypted,omitempty"`
	KeyRetrieverType   string            `json:"keyRetrieverType,omitempty"`
	KeyRetrieverConfig map[string]string `json:"keyRetrieverConfig,omitempty"`
	Format             string            `json:"format,omitempty"`
	KeyID              string            `json:"keyId,omitempty"`

	extra []statusField // the daemon's other fields, verbatim, in their order
}

type statusField struct {
	name  string
	value json.RawMessage
}

// maxMetadata is COFFER_MAX_METADATA: the most metadata a JOB or RESULT frame carries.
const maxMetadata = 65536

// MarshalJSON writes the five named fields (empty ones left out, as the tags say) followed by
// every other field the status was loaded with.
func (s EncryptionStatus) MarshalJSON() ([]byte, error) { return s.marshal(false) }

// wireJSON is the metadata a JOB frame carries: as MarshalJSON, but "isEncrypted" is always
// there (cofferd requires it; a false one means the backup is not encrypted).
func (s EncryptionStatus) wireJSON() ([]byte, error) { return s.marshal(true) }

func (s EncryptionStatus) marshal(wire bool) ([]byte, error) {
	type named struct {
		IsEncrypted        bool              `json:"isEncrypted,omitempty"`
		KeyRetrieverType   string            `json:"keyRetrieverType,omitempty"`
		KeyRetrieverConfig map[string]string `json:"keyRetrieverConfig,omitempty"`
		Format             string            `json:"format,omitempty"`
		KeyID              string            `json:"keyId,omitempty"`
	}
	type wireNamed struct {
		IsEncrypted        bool              `json:"isEncrypted"`
		KeyRetrieverType   string            `json:"keyRetrieverType,omitempty"`
		KeyRetrieverConfig map[string]string `json:"keyRetrieverConfig,omitempty"`
		Format             string            `json:"format,omitempty"`
		KeyID              string            `json:"keyId,omitempty"`
	}
	n := named{s.IsEncrypted, s.KeyRetrieverType, s.KeyRetrieverConfig, s.Format, s.KeyID}
	var b []byte
	var err error
	if wire {
		b, err = json.Marshal(wireNamed(n))
	} else {
		b, err = json.Marshal(n)
	}
	if err != nil || len(s.extra) == 0 {
		return b, err
	}
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1]) // without the closing brace
	for _, f := range s.extra {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		name, _ := json.Marshal(f.name)
		buf.Write(name)
		buf.WriteByte(':')
		buf.Write(f.value)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON reads one JSON object: the named fields into the struct, every other field
// kept verbatim. A field given twice is refused (forged metadata must not be ambiguous).
func (s *EncryptionStatus) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil // as encoding/json does for a missing value
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("coffer: status metadata: %w", err)
	}
	order, err := objectKeys(data)
	if err != nil {
		return err
	}
	var out EncryptionStatus
	for _, k := range order {
		v := fields[k]
		var err error
		switch k {
		case "isEncrypted":
			err = json.Unmarshal(v, &out.IsEncrypted)
		case "keyRetrieverType":
			err = json.Unmarshal(v, &out.KeyRetrieverType)
		case "keyRetrieverConfig":
			err = json.Unmarshal(v, &out.KeyRetrieverConfig)
		case "format":
			err = json.Unmarshal(v, &out.Format)
		case "keyId":
			err = json.Unmarshal(v, &out.KeyID)
		default:
			out.extra = append(out.extra, statusField{k, append(json.RawMessage(nil), v...)})
		}
		if err != nil {
			return fmt.Errorf("coffer: status metadata field %q: %w", k, err)
		}
	}
	*s = out
	return nil
}

// objectKeys lists the keys of the JSON object in data in their order, refusing duplicates.
func objectKeys(data []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // '{', checked by the caller's Unmarshal
		return nil, err
	}
	var keys []string
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		if seen[k] {
			return nil, fmt.Errorf("coffer: status metadata has the field %q twice", k)
		}
		seen[k] = true
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// Fields returns the names of the fields kept beside the five named ones, in their order
// (for example "hsmFallback" or the CLI's "bytesIn").
func (s EncryptionStatus) Fields() []string {
	names := make([]string, len(s.extra))
	for i, f := range s.extra {
		names[i] = f.name
	}
	return names
}

// Field returns the raw JSON of a field kept beside the five named ones, or nil.
func (s EncryptionStatus) Field(name string) json.RawMessage {
	for _, f := range s.extra {
		if f.name == name {
			return append(json.RawMessage(nil), f.value...)
		}
	}
	return nil
}
