// SPDX-License-Identifier: Apache-2.0

// Command streambench compares the Go client's streaming throughput with the C client's on
// the same cofferd, in one run: it starts a cofferd (fresh key, temporary directory), then in
// every repetition streams the same file through both clients, encrypt and decrypt, in
// alternating order so that a noisy neighbour hits both alike. It prints every repetition,
// the medians, the spread and the ratio Go/C (the median of the per-repetition ratios).
//
// The C client is the coffer CLI in daemon mode with standard input and output redirected
// (a streamed job through libcoffer: the file on stdin, /dev/null on stdout); the Go client
// reads the same file and discards the output, in this process.
//
//	go run ./bench/streambench -bin ../build/bin [-mib 256] [-reps 7]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	coffer "github.com/coffer-project/coffer/go"
)

func main() {
	bin := flag.String("bin", "../build/bin", "directory of cofferd and coffer")
	mib := flag.Int("mib", 256, "MiB streamed per job")
	reps := flag.Int("reps", 7, "repetitions")
	workers := flag.String("workers", "2", "cofferd --workers")
	flag.Parse()
	if err := run(*bin, *mib, *reps, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "streambench:", err)
		os.Exit(1)
	}
}

func run(bin string, mib, reps int, workers string) error {
	dir, err := os.MkdirTemp("", "streambench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := func(s string) string { return filepath.Join(dir, s) }

	key := make([]byte, 32)
	rand.Read(key[1:])
	os.MkdirAll(p("secrets/velero/coffer-key"), 0o700)
	if err := os.WriteFile(p("secrets/velero/coffer-key/encryptionKey"), key, 0o600); err != nil {
		return err
	}
	sock := p("cofferd.sock")
	logf, _ := os.Create(p("cofferd.log"))
	d := exec.Command(filepath.Join(bin, "cofferd"), "--socket", sock, "--secrets-dir", p("secrets"),
		"--workers", workers, "--log-level", "warn")
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		return err
	}
	defer func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }()
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if i > 2000 {
			return fmt.Errorf("cofferd did not start (see %s)", p("cofferd.log"))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The input: mib MiB of random bytes in a file (page cache), and its ciphertext.
	size := int64(mib) << 20
	f, _ := os.Create(p("pt"))
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		return err
	}
	f.Close()
	ctx := context.Background()
	client, err := coffer.Dial(ctx, sock)
	if err != nil {
		return err
	}
	defer client.Close()
	ct, _ := os.Create(p("ct"))
	in, _ := os.Open(p("pt"))
	if _, err := client.EncryptFile(ctx, in, ct); err != nil {
		return err
	}
	in.Close()
	ct.Close()

	fmt.Printf("streambench: %d MiB per job, %d repetitions, cofferd --workers %s, %d CPUs (%s)\n",
		mib, reps, workers, runtime.NumCPU(), cpuFlags())
	fmt.Println("rep  op       C client MiB/s  Go client MiB/s  Go/C")
	type series struct{ c, g, ratio []float64 }
	results := map[string]*series{"encrypt": {}, "decrypt": {}}
	for r := 0; r < reps; r++ {
		for _, op := range []string{"encrypt", "decrypt"} {
			input := p("pt")
			if op == "decrypt" {
				input = p("ct")
			}
			var tc, tg time.Duration
			var err error
			measureC := func() { tc, err = cClient(bin, sock, op, input) }
			measureGo := func() {
				if err == nil {
					tg, err = goClient(ctx, client, op, input)
				}
			}
			if r%2 == 0 {
				measureC()
				measureGo()
			} else {
				measureGo()
				measureC()
			}
			if err != nil {
				return err
			}
			mc, mg := float64(mib)/tc.Seconds(), float64(mib)/tg.Seconds()
			s := results[op]
			s.c, s.g, s.ratio = append(s.c, mc), append(s.g, mg), append(s.ratio, mg/mc)
			fmt.Printf("%3d  %-7s  %14.0f  %15.0f  %.2f\n", r+1, op, mc, mg, mg/mc)
		}
	}
	for _, op := range []string{"encrypt", "decrypt"} {
		s := results[op]
		fmt.Printf("%s: C client median %.0f MiB/s (%.0f-%.0f), Go client median %.0f MiB/s (%.0f-%.0f); "+
			"Go/C median of per-repetition ratios %.2fx (%.2f-%.2f)\n", op,
			median(s.c), min(s.c), max(s.c), median(s.g), min(s.g), max(s.g),
			median(s.ratio), min(s.ratio), max(s.ratio))
	}
	return nil
}

// cClient streams input through `coffer encrypt|decrypt --socket` (stdin: the file, stdout:
// /dev/null) and returns the wall time of the process.
func cClient(bin, sock, op, input string) (time.Duration, error) {
	in, err := os.Open(input)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	null, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	defer null.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "coffer"), op, "--socket", sock)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, null, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("coffer %s: %v: %s", op, err, stderr.String())
	}
	return time.Since(start), nil
}

// goClient streams input through the Go client, discarding the output.
func goClient(ctx context.Context, c *coffer.Client, op, input string) (time.Duration, error) {
	in, err := os.Open(input)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	if op == "encrypt" {
		w, err := c.NewEncryptionWriter(ctx, io.Discard)
		if err != nil {
			return 0, err
		}
		if _, err := io.CopyBuffer(w, in, buf); err != nil {
			return 0, err
		}
		if err := w.Close(); err != nil {
			return 0, err
		}
	} else {
		r, err := c.NewDecryptionReader(ctx, in, nil)
		if err != nil {
			return 0, err
		}
		if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
			return 0, err
		}
		r.Close()
	}
	return time.Since(start), nil
}

func cpuFlags() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	var have []string
	for _, f := range []string{"aes", "avx2", "vaes", "vpclmulqdq", "avx512f"} {
		if bytes.Contains(b, []byte(" "+f+" ")) || bytes.Contains(b, []byte(" "+f+"\n")) {
			have = append(have, f)
		}
	}
	return "CPU flags: " + strings.Join(have, " ")
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func min(x []float64) float64 {
	m := x[0]
	for _, v := range x {
		if v < m {
			m = v
		}
	}
	return m
}

func max(x []float64) float64 {
	m := x[0]
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	return m
}
