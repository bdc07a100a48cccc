#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Soak test: a real cofferd under mixed, hostile and unlucky load for N minutes.

usage: soak.py [MINUTES] [--bin DIR]      (MINUTES also from $SOAK_MINUTES; default 1)

Against one cofferd (a SoftHSM2 token as its key store, --hsm-fallback secret, a small
--max-connections) it runs from many concurrent clients: streamed and descriptor jobs of random
sizes and formats, tampered and wrong-key restores, clients killed mid-job, slow clients, outputs
on a tmpfs that fills up, and bursts past --max-connections; meanwhile SIGHUP every few seconds
and the token's directory moved away and back. It asserts that every good job's output is exact,
every bad job fails with its error (the code's sentence from engine/coffer_error.h), the daemon's
descriptors and threads return exactly to their baseline and its RSS within a margin, cofferd
exits 0 on SIGTERM, and no sanitizer report appears in its stderr. Prints a summary table.

The tmpfs needs root (mount); without it that job kind is skipped visibly, and under CI=true that
is a failure. Exit status: 0 all good, 1 a failed assertion, 77 skipped (no SoftHSM2).
"""
import collections
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"
MAX_CONNS = 24
WORKERS = 2
IOWQ_MAX = 2 * (WORKERS + 2)  # idle io-wq workers the kernel keeps: bounded+unbounded per ring
FORMATS = ["coffer-v1", "velero-v1", "cobblestone"]
SANITIZER_MARKS = ["AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer", "ThreadSanitizer"]


def error_table():
    """NAME -> sentence, from the project's one error table (engine/coffer_error.h)."""
    text = re.sub(r"\\\n", " ", open(os.path.join(SRC, "engine", "coffer_error.h")).read())
    text = re.sub(r'"\s+"', "", text)  # adjacent string literals are one sentence
    return {m.group(1): m.group(3) for m in
            re.finditer(r'X\((\w+),\s*(-?\d+),\s*"((?:[^"\\]|\\.)*)"\)', text)}


ERR = error_table()


class Soak:
    def __init__(self, minutes, bindir):
        self.minutes = minutes
        self.coffer = os.path.join(bindir, "coffer")
        self.cofferd = os.path.join(bindir, "cofferd")
        self.tmp = tempfile.mkdtemp(prefix="coffer-soak.")
        self.lock = threading.Lock()
        self.stats = collections.OrderedDict()
        self.problems = []
        self.stop = threading.Event()
        self.burst_gate = threading.Condition()
        self.active = 0          # jobs running (a burst waits for none)
        self.bursting = False
        self.hsm_epoch = 0       # bumped whenever the token moves (either way)
        self.hsm_away = False
        self.serial = 0
        self.tmpfs = None
        self.daemon = None

    # ---- bookkeeping ----
    def count(self, kind, outcome, note=None):
        with self.lock:
            row = self.stats.setdefault(kind, {"count": 0, "ok": 0, "expected": 0,
                                               "unexpected": 0})
            row["count"] += 1
            row[outcome] += 1
            if outcome == "unexpected":
                self.problems.append("%s: %s" % (kind, note))

    def path(self, name):
        with self.lock:
            self.serial += 1
            return os.path.join(self.tmp, "w", "%s-%d" % (name, self.serial))

    def run(self, args, stdin=None, data=None, timeout=120):
        p = subprocess.run([self.coffer] + args + ["--socket", self.sock], input=data,
                           stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")

    # ---- setup ----
    def setup(self):
        os.makedirs(os.path.join(self.tmp, "w"))
        sec = os.path.join(self.tmp, "secrets", "velero", "coffer-key")
        wrong = os.path.join(self.tmp, "wrong", "velero", "coffer-key")
        for d, seed in ((sec, b"\x00"), (wrong, b"\x01")):
            os.makedirs(d, mode=0o700)
            with open(os.path.join(d, "encryptionKey"), "wb") as f:
                f.write(seed + os.urandom(31))   # raw 32 bytes: coffer-v1, velero-v1, cobblestone
            os.chmod(os.path.join(d, "encryptionKey"), 0o600)
        self.tokens = os.path.join(self.tmp, "tokens")
        os.makedirs(self.tokens)
        conf = os.path.join(self.tmp, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\n" % self.tokens)
        os.environ["SOFTHSM2_CONF"] = conf
        self.pinfile = os.path.join(self.tmp, "pin")
        with open(self.pinfile, "w") as f:
            f.write(PIN + "\n")
        os.chmod(self.pinfile, 0o600)
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "soak", "--pin",
                        PIN, "--so-pin", "5678"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([self.coffer, "hsm", "init-kek", "--module", SOFTHSM, "--token", "soak",
                        "--label", "kek-soak", "--pin-file", self.pinfile], check=True,
                       stdout=subprocess.DEVNULL)
        self.sock = os.path.join(self.tmp, "cofferd.sock")
        self.log = os.path.join(self.tmp, "cofferd.log")
        self.logf = open(self.log, "ab")
        self.daemon = subprocess.Popen(
            [self.cofferd, "--socket", self.sock, "--secrets-dir",
             os.path.join(self.tmp, "secrets"), "--namespace", "velero", "--encryption-secret",
             "coffer-key", "--workers", str(WORKERS), "--max-connections", str(MAX_CONNS),
             "--io-timeout", "30", "--hsm-module", SOFTHSM, "--hsm-token", "soak", "--hsm-key",
             "kek-soak", "--hsm-pin-file", self.pinfile, "--hsm-fallback", "secret",
             "--hsm-timeout", "5000", "--hsm-cache-max-age", "0"],
            stdout=subprocess.DEVNULL, stderr=self.logf)
        for _ in range(1000):
            if subprocess.run([self.coffer, "health", "--socket", self.sock],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                break
            if self.daemon.poll() is not None:
                raise SystemExit("cofferd exited at start (see %s)" % self.log)
            time.sleep(0.02)
        else:
            raise SystemExit("cofferd did not answer (see %s)" % self.log)
        self.setup_tmpfs()

    def setup_tmpfs(self):
        d = os.path.join(self.tmp, "full")
        os.makedirs(d)
        if os.geteuid() == 0 and subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "soak", d],
                stderr=subprocess.PIPE).returncode == 0:
            self.tmpfs = d
            return
        msg = "SKIP nospace: mounting a 1 MiB tmpfs needs root (running as uid %d)" % os.geteuid()
        print(msg, flush=True)
        if os.environ.get("CI") == "true":
            self.problems.append("nospace: skipped under CI=true: " + msg)

    # ---- the daemon's resources ----
    def resources(self):
        pid = self.daemon.pid
        fds = len(os.listdir("/proc/%d/fd" % pid))
        status = open("/proc/%d/status" % pid).read()
        # cofferd's own threads; io_uring's io-wq workers (iou-wrk-*) are the kernel's, which
        # keeps the last idle one of each pool: bounded (iowq() below), not counted exactly
        threads = sum(1 for n in self.thread_names_list() if not n.startswith("iou-"))
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        return fds, threads, rss

    def thread_names_list(self):
        names = []
        for t in os.listdir("/proc/%d/task" % self.daemon.pid):
            try:
                names.append(open("/proc/%d/task/%s/comm" % (self.daemon.pid, t)).read().strip())
            except OSError:
                pass
        return names

    def iowq(self):
        return sum(1 for n in self.thread_names_list() if n.startswith("iou-"))

    def fd_targets(self):
        d = "/proc/%d/fd" % self.daemon.pid
        out = []
        for fd in sorted(os.listdir(d), key=int):
            try:
                out.append("%s->%s" % (fd, os.readlink(os.path.join(d, fd))))
            except OSError:
                pass
        return " ".join(out)

    def thread_names(self):
        return dict(sorted(collections.Counter(self.thread_names_list()).items()))

    # ---- job kinds ----
    def job_roundtrip(self, kind):
        fmt = random.choice(FORMATS)
        n = random.choice([0, 1, 16383, 16384, 16385, random.randrange(1, 3 << 20)])
        pt = os.urandom(n)
        epoch = self.hsm_epoch
        st = self.path("status")
        if kind == "descriptor":
            pin, cout, back = self.path("pt"), self.path("ct"), self.path("back")
            with open(pin, "wb") as f:
                f.write(pt)
            r, _, err = self.run(["encrypt", "--format", fmt, "--in", pin, "--out", cout,
                                  "--status-out", st])
        else:
            r, ct, err = self.run(["encrypt", "--format", fmt, "--status-out", st], data=pt)
        if r != 0:
            return self.count(kind, "unexpected", "encrypt %s %d: %s" % (fmt, n, err.strip()))
        dec = ["decrypt"] + ([] if fmt == "coffer-v1" else ["--metadata", st])
        if kind == "descriptor":
            r, _, err = self.run(dec + ["--in", cout, "--out", back])
            got = open(back, "rb").read() if r == 0 else None
        else:
            r, got, err = self.run(dec, data=ct)
        if r != 0 and self.hsm_fault(err, epoch):
            return self.count(kind, "expected")
        if r != 0:
            return self.count(kind, "unexpected", "decrypt %s %d: %s" % (fmt, n, err.strip()))
        if got != pt:
            return self.count(kind, "unexpected", "decrypt %s %d: output differs" % (fmt, n))
        self.count(kind, "ok")

    def hsm_fault(self, err, epoch):
        """A restore of a pkcs11 backup may fail while (or just after) the token was away."""
        if not (self.hsm_away or self.hsm_epoch != epoch):
            return False
        return any(ERR[k] in err for k in ERR if k.startswith("HSM_"))

    def expect_error(self, kind, args, name, data=None, out=None, epoch=None):
        r, _, err = self.run(args, data=data)
        left = out is not None and os.path.exists(out)
        failed = 2 if args[0] == "health" else 1  # `coffer health`: 2 = cannot be served
        if r == failed and ERR[name] in err and err.count("\n") == 1 and not left:
            self.count(kind, "expected")
        elif r == failed and epoch is not None and self.hsm_fault(err, epoch) and not left:
            self.count(kind, "expected")  # the token was away: the key to check it is too
        else:
            self.count(kind, "unexpected", "wanted %s, got exit %d%s: %s" % (
                name, r, " and an output file" if left else "", err.strip()))

    def job_tampered(self):
        pt = os.urandom(random.randrange(20000, 200000))
        epoch = self.hsm_epoch
        r, ct, err = self.run(["encrypt", "--format", "coffer-v1"], data=pt)
        if r != 0:
            return self.count("tampered", "unexpected", "encrypt: " + err.strip())
        ct = bytearray(ct)
        ct[random.randrange(len(ct) - 20000, len(ct))] ^= 1 << random.randrange(8)
        out = self.path("tampered-out")
        cin = self.path("tampered-in")
        with open(cin, "wb") as f:
            f.write(ct)
        self.expect_error("tampered", ["decrypt", "--in", cin, "--out", out], "TAMPERED", out=out,
                          epoch=epoch)

    def job_wrong_key(self):
        pt = os.urandom(random.randrange(1, 100000))
        p = subprocess.run([self.coffer, "encrypt", "--offline", "--secrets-dir",
                            os.path.join(self.tmp, "wrong"), "--namespace", "velero", "--secret",
                            "coffer-key"], input=pt, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            return self.count("wrong-key", "unexpected", "offline encrypt: %r" % p.stderr)
        out = self.path("wrong-out")
        cin = self.path("wrong-in")
        with open(cin, "wb") as f:
            f.write(p.stdout)
        self.expect_error("wrong-key", ["decrypt", "--in", cin, "--out", out], "WRONG_KEY",
                          out=out)

    def job_killed(self):
        """A client killed mid-job (a descriptor job on a pipe's reading end, or a stream)."""
        out = self.path("killed-out")
        fifo = self.path("killed-fifo")
        os.mkfifo(fifo)
        descriptor = random.random() < 0.5
        args = [self.coffer, "encrypt", "--socket", self.sock, "--out", out]
        if descriptor:
            args += ["--in", fifo]
        p = subprocess.Popen(args, stdin=subprocess.PIPE if not descriptor else subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        w = os.open(fifo, os.O_WRONLY) if descriptor else p.stdin.fileno()
        try:
            for _ in range(random.randrange(1, 20)):
                os.write(w, os.urandom(4096))
                time.sleep(0.01)
        except OSError:
            pass
        time.sleep(random.random() * 0.3)
        p.kill()
        p.wait()
        if descriptor:
            os.close(w)
        else:
            p.stdin.close()
        if os.path.exists(out):
            return self.count("killed", "unexpected", "an output file was left")
        self.count("killed", "expected")

    def job_slow(self):
        """A client that trickles its input: still served, still exact."""
        pt = os.urandom(random.randrange(1, 64 * 1024))
        p = subprocess.Popen([self.coffer, "encrypt", "--socket", self.sock],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        chunks = [pt[i:i + 4096] for i in range(0, len(pt), 4096)]

        def feed():
            for c in chunks:
                p.stdin.write(c)
                p.stdin.flush()
                time.sleep(0.1)
            p.stdin.close()
        t = threading.Thread(target=feed)
        t.start()
        ct = p.stdout.read()
        err = p.stderr.read().decode("utf-8", "replace")
        t.join()
        if p.wait() != 0:
            return self.count("slow", "unexpected", "encrypt: " + err.strip())
        epoch = self.hsm_epoch
        r, got, err = self.run(["decrypt"], data=ct)
        if r != 0 and self.hsm_fault(err, epoch):
            return self.count("slow", "expected")
        self.count("slow", "ok" if r == 0 and got == pt else "unexpected",
                   "decrypt: exit %d %s" % (r, err.strip()))

    def job_nospace(self):
        if self.tmpfs is None:
            return
        pt = os.urandom(random.randrange(1200 << 10, 3 << 20))
        out = os.path.join(self.tmpfs, "out-%d" % threading.get_ident())
        if random.random() < 0.5:
            pin = self.path("nospace-in")
            with open(pin, "wb") as f:
                f.write(pt)
            self.expect_error("nospace", ["encrypt", "--in", pin, "--out", out], "NOSPACE",
                              out=out)
        else:
            self.expect_error("nospace", ["encrypt", "--out", out], "NOSPACE", data=pt, out=out)
        if os.listdir(self.tmpfs):
            self.count("nospace", "unexpected", "files left on the full filesystem: %s"
                       % os.listdir(self.tmpfs))

    def job_burst(self):
        """More connections than --max-connections at once: the extra ones are refused BUSY."""
        socks = []
        try:
            for _ in range(MAX_CONNS):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.sock)
                socks.append(s)
            time.sleep(0.2)   # every one of them accepted and counted
            self.expect_error("burst", ["health"], "BUSY")
        finally:
            for s in socks:
                s.close()
        for _ in range(200):  # the slots free again
            if self.run(["health"])[0] == 0:
                return self.count("burst-after", "ok")
            time.sleep(0.05)
        self.count("burst-after", "unexpected", "health still fails after the burst")

    # ---- drivers ----
    def worker(self, seed):
        rnd = random.Random(seed)
        kinds = ["stream"] * 5 + ["descriptor"] * 5 + ["tampered", "wrong-key", "killed",
                                                        "killed", "slow", "nospace"]
        while not self.stop.is_set():
            kind = rnd.choice(kinds)
            with self.burst_gate:
                while self.bursting:
                    self.burst_gate.wait()
                self.active += 1
            try:
                if kind in ("stream", "descriptor"):
                    self.job_roundtrip(kind)
                else:
                    getattr(self, "job_" + kind.replace("-", "_"))()
            except Exception as e:  # a harness failure is a finding too
                self.count(kind, "unexpected", "exception %r" % e)
            finally:
                with self.burst_gate:
                    self.active -= 1
                    self.burst_gate.notify_all()
            for name in os.listdir(os.path.join(self.tmp, "w")):
                try:
                    p = os.path.join(self.tmp, "w", name)
                    if time.time() - os.lstat(p).st_mtime > 30:
                        os.unlink(p)
                except OSError:
                    pass

    def burster(self):
        while not self.stop.wait(7):
            with self.burst_gate:
                self.bursting = True
                while self.active > 0:
                    self.burst_gate.wait()
            try:
                self.job_burst()
            except Exception as e:
                self.count("burst", "unexpected", "exception %r" % e)
            with self.burst_gate:
                self.bursting = False
                self.burst_gate.notify_all()

    def hupper(self):
        while not self.stop.wait(3):
            self.daemon.send_signal(signal.SIGHUP)
            self.count("sighup", "ok")

    def token_mover(self):
        tokens_away = self.tokens + ".away"
        while not self.stop.wait(10):
            self.hsm_epoch += 1
            self.hsm_away = True
            os.rename(self.tokens, tokens_away)
            self.stop.wait(4)
            os.rename(tokens_away, self.tokens)
            self.hsm_away = False
            self.hsm_epoch += 1
            self.count("hsm-away", "ok")

    def main(self):
        self.setup()
        # warm-up: every kind once, so lazily made threads and caches exist before the baseline
        for kind in ("stream", "descriptor"):
            self.job_roundtrip(kind)
        self.job_tampered()
        self.job_wrong_key()
        self.job_burst()
        self.daemon.send_signal(signal.SIGHUP)
        time.sleep(2)
        base = self.resources()
        base_names = self.thread_names()
        print("baseline: fds=%d threads=%d rss=%d KiB" % base, flush=True)
        threads = [threading.Thread(target=self.worker, args=(i,)) for i in range(8)]
        threads += [threading.Thread(target=f) for f in (self.burster, self.hupper,
                                                          self.token_mover)]
        for t in threads:
            t.start()
        deadline = time.time() + self.minutes * 60
        peak = base
        while time.time() < deadline and self.daemon.poll() is None:
            time.sleep(1)
            try:
                now = self.resources()
                peak = tuple(max(a, b) for a, b in zip(peak, now))
            except (OSError, AttributeError):
                pass
        self.stop.set()
        for t in threads:
            t.join()
        if self.daemon.poll() is not None:
            self.problems.append("cofferd exited during the load with %d" % self.daemon.returncode)
            return self.report(base, peak, None)
        # one more SIGHUP with the token at home, then settle
        self.daemon.send_signal(signal.SIGHUP)
        # The daemon's large buffers are their own mappings (uring/uring_buf.h), unmapped when
        # freed, and the main thread trims the heap once idle: after the load RSS comes back to
        # within a few MiB of the baseline (1-minute release soak: 19.7 MiB baseline, 28.1 MiB
        # peak, 21.0 MiB after; 10 minutes: 19.5, 29.4, 23.0; with malloc'd buffers it stayed
        # at 38.6 MiB after 1 minute, 55.0 after 10).
        margin = 6 * 1024
        if "libasan" in open("/proc/%d/maps" % self.daemon.pid).read():
            # ASan keeps freed memory in its quarantine (256 MiB by default) and its own caches
            margin = max(margin, 320 * 1024)
        after = None
        for _ in range(60):  # cofferd gives free heap pages back within seconds of going idle
            time.sleep(1)
            after = self.resources()
            if after[0] == base[0] and after[1] == base[1] and after[2] <= base[2] + margin:
                break
        iowq = self.iowq_after = self.iowq()
        if iowq > IOWQ_MAX:
            self.problems.append("io_uring workers: %d idle iou-wrk threads after the load (at "
                                 "most %d expected)" % (iowq, IOWQ_MAX))
        if after[0] != base[0]:
            self.problems.append("descriptors: %d at baseline, %d after the load: %s" % (
                base[0], after[0], self.fd_targets()))
        if after[1] != base[1]:
            self.problems.append("threads: %d at baseline %s, %d after the load %s" % (
                base[1], base_names, after[1], self.thread_names()))
        if after[2] > base[2] + margin:
            self.problems.append("RSS: %d KiB at baseline, %d KiB after the load (margin %d KiB)"
                                 % (base[2], after[2], margin))
        return self.report(base, peak, after)

    def report(self, base, peak, after):
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                rc = self.daemon.wait(60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                rc = "killed after 60 s"
            if rc != 0:
                self.problems.append("cofferd exited with %s after SIGTERM" % rc)
        self.logf.close()
        log = open(self.log, errors="replace").read()
        for mark in SANITIZER_MARKS:
            if mark in log:
                self.problems.append("sanitizer report in cofferd's stderr: '%s' (see %s)"
                                     % (mark, self.log))
        print()
        print("%-12s %8s %8s %10s %11s" % ("job kind", "count", "ok", "expected", "unexpected"))
        print("%-12s %8s %8s %10s %11s" % ("-" * 12, "-" * 8, "-" * 8, "-" * 10, "-" * 11))
        tot = collections.Counter()
        for kind, row in self.stats.items():
            print("%-12s %8d %8d %10d %11d" % (kind, row["count"], row["ok"], row["expected"],
                                                row["unexpected"]))
            tot.update(row)
        print("%-12s %8d %8d %10d %11d" % ("total", tot["count"], tot["ok"], tot["expected"],
                                            tot["unexpected"]))
        print()
        print("minutes=%g  daemon fds/threads/rss(KiB): baseline %s, peak %s, after %s" % (
            self.minutes, base, peak, after))
        print("io_uring io-wq workers (iou-wrk, the kernel's) after the load: %s" % getattr(
            self, "iowq_after", "-"))
        print("log: job_failed=%d conn_busy=%d hsm_fallback=%d reload=%d" % (
            log.count("event=job_failed"), log.count("event=conn_busy"),
            log.count("event=hsm_fallback"), log.count("reload")))
        for p in self.problems[:40]:
            print("PROBLEM: " + p)
        if len(self.problems) > 40:
            print("PROBLEM: ... and %d more" % (len(self.problems) - 40))
        return 1 if self.problems else 0

    def cleanup(self):
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
        if self.tmpfs is not None:
            subprocess.run(["umount", self.tmpfs])
        if os.path.isdir(self.tokens + ".away"):
            os.rename(self.tokens + ".away", self.tokens)
        if not os.environ.get("SOAK_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("kept " + self.tmp)


def main():
    args = sys.argv[1:]
    bindir = os.path.join(SRC, "build", "bin")
    if "--bin" in args:
        i = args.index("--bin")
        bindir = args[i + 1]
        del args[i:i + 2]
    minutes = float(args[0]) if args else float(os.environ.get("SOAK_MINUTES", "1"))
    if not os.path.exists(SOFTHSM) or shutil.which("softhsm2-util") is None:
        print("SKIP: SoftHSM2 (%s, softhsm2-util) is not installed" % SOFTHSM)
        return 1 if os.environ.get("CI") == "true" else 77
    s = Soak(minutes, bindir)
    try:
        return s.main()
    finally:
        s.cleanup()


if __name__ == "__main__":
    sys.exit(main())
