// SPDX-License-Identifier: Apache-2.0

// Package testdaemon starts the real cofferd (and finds the coffer CLI) for the Go tests.
//
// The binaries come from $COFFER_BIN_DIR (scripts/test.sh sets it to build/bin), else from
// build/bin next to the go/ module. When they are missing the tests skip with the reason, and
// fail under CI=true: a skip in CI would hide that nothing ran.
package testdaemon

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Bins returns the paths of cofferd and coffer, or an error naming what is missing.
func Bins() (cofferd, coffer string, err error) {
	dir := os.Getenv("COFFER_BIN_DIR")
	if dir == "" {
		wd, _ := os.Getwd()
		for d := wd; d != filepath.Dir(d); d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(filepath.Dir(d), "build", "bin")
				break
			}
		}
	}
	cofferd, coffer = filepath.Join(dir, "cofferd"), filepath.Join(dir, "coffer")
	for _, p := range []string{cofferd, coffer} {
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("%s is missing (build coffer first, or set COFFER_BIN_DIR)", p)
		}
	}
	return cofferd, coffer, nil
}

// Require returns the binaries, or skips t (fails it under CI=true) when they are missing.
func Require(t testing.TB) (cofferd, coffer string) {
	t.Helper()
	cofferd, coffer, err := Bins()
	if err != nil {
		Missing(t, err.Error())
	}
	return cofferd, coffer
}

// Missing skips t with the reason, or fails it under CI=true.
func Missing(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("required for this test and missing under CI=true: %s", reason)
	}
	t.Skipf("SKIPPED: %s", reason)
}

// Secrets makes dir laid out as mounted Kubernetes Secrets (DIR/velero/NAME/encryptionKey)
// holding fresh random raw keys of the given sizes by name, and returns the keys. The first
// byte of every key is 0, so that no key is all printable (a passphrase, refused).
func Secrets(dir string, sizes map[string]int) (map[string][]byte, error) {
	keys := map[string][]byte{}
	for name, n := range sizes {
		k := make([]byte, n)
		if _, err := rand.Read(k[1:]); err != nil {
			return nil, err
		}
		d := filepath.Join(dir, "velero", name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(d, "encryptionKey"), k, 0o600); err != nil {
			return nil, err
		}
		keys[name] = k
	}
	return keys, nil
}

// Daemon is one cofferd process: its socket and log live in Dir.
type Daemon struct {
	Bin  string
	Dir  string
	Name string
	Args []string // flags besides --socket
	Sock string
	Log  string

	cmd    *exec.Cmd
	exited chan error // receives the process's exit once
}

// New describes a cofferd named name in dir; Start runs it.
func New(bin, dir, name string, args ...string) *Daemon {
	return &Daemon{Bin: bin, Dir: dir, Name: name, Args: args,
		Sock: filepath.Join(dir, name+".sock"), Log: filepath.Join(dir, name+".log")}
}

// Start runs the daemon and waits (up to 20 s) until it accepts connections.
func (d *Daemon) Start() error {
	logf, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	d.cmd = exec.Command(d.Bin, append([]string{"--socket", d.Sock}, d.Args...)...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// A test binary that dies (a panic, go test's timeout) takes its daemons with it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			d.cmd = nil
			log, _ := os.ReadFile(d.Log)
			return fmt.Errorf("cofferd %s exited at start (%v): %s", d.Name, err, log)
		default:
		}
		if c, err := net.Dial("unix", d.Sock); err == nil {
			c.Close()
			d.exited = exited
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.cmd.Process.Kill()
	return fmt.Errorf("cofferd %s did not listen on %s within 20 s (log %s)", d.Name, d.Sock, d.Log)
}

// Stop sends SIGTERM and waits (up to 60 s, then SIGKILL) for the daemon to exit. It returns
// an error when the daemon did not exit with status 0.
func (d *Daemon) Stop() error {
	if d.cmd == nil {
		return nil
	}
	defer func() { d.cmd = nil }()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			return fmt.Errorf("cofferd %s: %v (log %s)", d.Name, err, d.Log)
		}
		return nil
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("cofferd %s did not exit within 60 s of SIGTERM", d.Name)
	}
}

// Running reports whether the daemon was started and not stopped.
func (d *Daemon) Running() bool { return d.cmd != nil }
