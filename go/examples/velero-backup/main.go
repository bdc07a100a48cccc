// SPDX-License-Identifier: Apache-2.0

// Command velero-backup does what the Velero design's BackupWithResolvers and restore do, with
// cofferd holding the key: it tars and gzips a directory through coffer's EncryptionWriter
// into a backup file, prints the EncryptionStatus JSON that Velero keeps in the backup's
// status, then restores the file through NewDecryptionReader (with the status read back from
// that JSON), gunzips, untars into a scratch directory and compares it with the original.
//
//	go run ./examples/velero-backup -socket ../.coffer-dev/cofferd.sock -dir ../docs
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	coffer "github.com/coffer-project/coffer/go"
)

func main() {
	socket := flag.String("socket", "", "cofferd's socket (default $COFFER_SOCKET, else "+coffer.DefaultSocket+")")
	dir := flag.String("dir", ".", "directory to back up")
	out := flag.String("out", "", "backup file to write (default: a temporary file, removed at the end)")
	flag.Parse()
	if err := run(os.Stdout, *socket, *dir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "velero-backup:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, socket, dir, out string) (err error) {
	ctx := context.Background()
	client, err := coffer.Dial(ctx, socket)
	if err != nil {
		return err
	}
	defer client.Close()

	scratch, err := os.MkdirTemp("", "velero-backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	if out == "" {
		out = filepath.Join(scratch, "backup.tar.gz.coffer")
	}

	// Backup: tar -> gzip -> coffer EncryptionWriter -> file, as BackupWithResolvers does.
	status, err := backup(ctx, client, dir, out)
	if err != nil {
		return err
	}
	stored, err := json.MarshalIndent(struct {
		Encryption coffer.EncryptionStatus `json:"encryption"`
	}{status}, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "backup written to %s\nstatus to keep with the backup:\n%s\n", out, stored)

	// Restore: the status comes back from the backup's stored status.
	var loaded struct {
		Encryption coffer.EncryptionStatus `json:"encryption"`
	}
	if err := json.Unmarshal(stored, &loaded); err != nil {
		return err
	}
	target := filepath.Join(scratch, "restored")
	if err := restore(ctx, client, out, &loaded.Encryption, target); err != nil {
		return err
	}
	if err := compareTrees(dir, target); err != nil {
		return err
	}
	fmt.Fprintln(w, "restored identical")
	return nil
}

func backup(ctx context.Context, client *coffer.Client, dir, out string) (coffer.EncryptionStatus, error) {
	var st coffer.EncryptionStatus
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return st, err
	}
	defer f.Close()
	enc, err := client.NewEncryptionWriter(ctx, f)
	if err != nil {
		return st, err
	}
	gz := gzip.NewWriter(enc)
	tw := tar.NewWriter(gz)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil // sockets, links, devices: not part of this example
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if cerr := enc.Close(); err == nil {
		err = cerr // the job's result: only now is the backup complete
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		os.Remove(out)
		return st, err
	}
	return enc.Status(), nil
}

func restore(ctx context.Context, client *coffer.Client, in string, status *coffer.EncryptionStatus, target string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	dec, err := client.NewDecryptionReader(ctx, f, status)
	if err != nil {
		return err
	}
	defer dec.Close()
	gz, err := gzip.NewReader(dec)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		path := filepath.Join(target, filepath.FromSlash(hdr.Name))
		if name := filepath.Clean(filepath.FromSlash(hdr.Name)); filepath.IsAbs(name) || name == ".." ||
			strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("archive entry %q leaves the target directory", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			w, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, hdr.FileInfo().Mode().Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
	// Drain to the end: only io.EOF from the decryption reader says the backup was authentic
	// to its last byte (gzip's trailer check comes earlier).
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return err
	}
	return nil
}

// compareTrees checks that every regular file and directory under a is in b with the same
// content, and that b holds nothing else.
func compareTrees(a, b string) error {
	seen := 0
	err := filepath.WalkDir(a, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a, path)
		if rel == "." || !(d.Type().IsRegular() || d.IsDir()) {
			return nil
		}
		seen++
		other := filepath.Join(b, rel)
		if d.IsDir() {
			if st, err := os.Stat(other); err != nil || !st.IsDir() {
				return fmt.Errorf("directory %s was not restored", rel)
			}
			return nil
		}
		x, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		y, err := os.ReadFile(other)
		if err != nil || !bytes.Equal(x, y) {
			return fmt.Errorf("%s differs after the restore", rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	restored := 0
	filepath.WalkDir(b, func(path string, d fs.DirEntry, err error) error {
		if err == nil && path != b {
			restored++
		}
		return nil
	})
	if restored != seen {
		return errors.New("the restore holds entries the original does not")
	}
	return nil
}
