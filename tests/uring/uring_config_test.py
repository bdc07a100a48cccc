#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cofferd's --hsm-* and Kubernetes options, parsed by the rows of its option table (issue 9).

Drives the real cofferd with --check-config. For every one of those options: the values accepted
at both ends of its range are accepted, the values just past them (and malformed ones) are refused
with the table's sentence, which names what was expected and the range; the same through a config
file, with FILE:LINE. Also: --hsm-pin is refused without echoing the PIN, --allow-secret-namespace's
command-line list replaces the file's (at most 32 entries), the cross-option checks still apply,
and --print-reference documents each option with its default.

The ranges below are the ones cofferd accepted before the parsing moved into the table
(uring_hsm_config_set and uring_kube_config_set), written down independently of the table.
usage: uring_config_test.py BIN_DIR
"""
import os
import subprocess
import sys
import tempfile

COFFERD = os.path.join(sys.argv[1], "cofferd")
HSM = ["--hsm-module", "softhsm2", "--hsm-token", "coffer"]  # satisfies the HSM cross-checks
KUBE = ["--secret-source", "kubernetes"]
U64_MAX = 2**64 - 1

# name, placeholder, range (None: no range named), accepted values, refused values, base args
OPTIONS = [
    ("hsm-module", "PATH|NAME", None, ["softhsm2", "/usr/lib/softhsm/libsofthsm2.so",
                                       "m" * 1024], ["", "a\x01b", "m" * 1025], ["--hsm-token", "t"]),
    ("hsm-token", "LABEL", None, ["coffer", "t" * 32], ["", "t" * 33, "a\x7fb"], HSM),
    ("hsm-key", "LABEL", None, ["kek-1", "k" * 128], ["", "k" * 129, "a\tb"], HSM),
    ("hsm-pin-file", "FILE", None, ["/etc/coffer/pin"], ["", "a\nb"], HSM),
    ("hsm-fallback", "secret|none", None, ["secret", "none"], ["maybe", "Secret", ""], HSM),
    ("hsm-timeout", "MS", (1, 600000), ["1", "5000", "600000"],
     ["0", "600001", "-1", "+5", " 5", "5ms", "0x10", ""], HSM),
    ("hsm-cache-max-age", "SECONDS", (0, 315360000), ["0", "315360000"],
     ["315360001", "-1", "1h", ""], HSM),
    ("hsm-cache-max-uses", "N", None, ["0", str(U64_MAX)], [str(U64_MAX + 1), "-1", "1K"], HSM),
    ("hsm-cache-max-bytes", "BYTES", None, ["0", "64G", "1K", "3M", "16777215T", str(U64_MAX)],
     ["12Q", "16777216T", str(U64_MAX + 1), "1KB", "G", "-1", "1k"], HSM),
    ("hsm-cache-max-entries", "N", (0, 65536), ["0", "65536"], ["65537", "-1"], HSM),
    ("hsm-mechanism", "auto|gcm|gcm-token-iv|kwp|cbc-hmac", None,
     ["auto", "gcm", "gcm-token-iv", "kwp", "cbc-hmac"], ["CKM_DES3_CBC", "GCM", ""], HSM),
    ("hsm-max-sessions", "N", (1, 64), ["1", "64"], ["0", "65", "-1"], HSM),
    ("secret-source", "dir|kubernetes", None, ["dir", "kubernetes"], ["k8s", "Dir", ""], []),
    ("kubeconfig", "FILE", None, ["/etc/kube/config", "k" * 4095], ["", "k" * 4096], KUBE),
    ("kube-serviceaccount-dir", "DIR", None, ["/sa", "d" * 4095], ["", "d" * 4096], KUBE),
    ("secret-cache-ttl", "SECONDS", (0, 86400), ["0", "60", "86400"], ["-1", "86401", "1m"], KUBE),
    ("kube-timeout", "MS", (100, 600000), ["100", "600000"], ["99", "600001", "1s"], KUBE),
    ("kube-connect-timeout", "MS", (100, 600000), ["100", "600000"], ["99", "600001", ""], KUBE),
    ("allow-secret-namespace", "NS", None, ["other", "a" * 63], [], KUBE),
]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def cofferd(*args):
    return subprocess.run([COFFERD, "--check-config", *args], capture_output=True, text=True,
                          timeout=60)


def refusal(name, arg, rng, value):
    span = f" from {rng[0]} to {rng[1]}" if rng is not None else ""
    # the sentence quotes at most 200 bytes of the value
    return f"invalid value for --{name}: '{value[:200]}' (expected {arg}{span}; see --help)"


def file_safe(v):
    # a config line holds at most 1024 bytes and is trimmed; '#' starts a comment
    return v == v.strip(" \t\r") and "#" not in v and "\n" not in v and 0 < len(v) < 1000


with tempfile.TemporaryDirectory() as tmp:
    conf = os.path.join(tmp, "cofferd.conf")

    for name, arg, rng, good, bad, base in OPTIONS:
        for v in good:
            r = cofferd(*base, f"--{name}={v}")
            if r.returncode != 0:
                fail(f"--{name} {v[:40]!r} refused: {r.returncode} {r.stderr.strip()}")
            if file_safe(v):
                with open(conf, "w", encoding="utf-8") as f:
                    f.write(f"# {name}\n\n{name} = {v}\n")
                r = cofferd(*base, "--config", conf)
                if r.returncode != 0:
                    fail(f"{name} = {v[:40]!r} refused in a file: {r.stderr.strip()}")
        for v in bad:
            want = refusal(name, arg, rng, v)
            r = cofferd(*base, f"--{name}={v}")
            if r.returncode != 2 or f"cofferd: command line: {want}\n" not in r.stderr:
                fail(f"--{name} {v[:40]!r}: exit {r.returncode}, {r.stderr.strip()[:300]!r}; "
                     f"expected exit 2 and {want[:300]!r}")
            if file_safe(v):
                with open(conf, "w", encoding="utf-8") as f:
                    f.write(f"# {name}\n\n{name} = {v}\n")
                r = cofferd(*base, "--config", conf)
                if r.returncode != 2 or f"cofferd: {conf}:3: {want}\n" not in r.stderr:
                    fail(f"{name} = {v[:40]!r} in a file: exit {r.returncode}, "
                         f"{r.stderr.strip()[:300]!r}")

    # --allow-secret-namespace: its own sentence; the command line's list replaces the file's
    for ns in ["Bad_NS", "a" * 64, "-a", ""]:
        r = cofferd(*KUBE, f"--allow-secret-namespace={ns}")
        if r.returncode != 2 or f"--allow-secret-namespace '{ns}' is not a Kubernetes namespace " \
                                "name" not in r.stderr:
            fail(f"--allow-secret-namespace {ns!r}: {r.returncode} {r.stderr.strip()}")
    with open(conf, "w", encoding="utf-8") as f:
        f.write("secret-source = kubernetes\n")
        f.writelines(f"allow-secret-namespace = ns{i}\n" for i in range(32))
    r = cofferd("--config", conf)
    if r.returncode != 0:
        fail(f"32 --allow-secret-namespace entries in a file refused: {r.stderr.strip()}")
    r = cofferd("--config", conf, "--allow-secret-namespace", "one", "--allow-secret-namespace",
                "two")
    if r.returncode != 0:
        fail(f"the command line's --allow-secret-namespace list did not replace the file's: "
             f"{r.stderr.strip()}")
    with open(conf, "a", encoding="utf-8") as f:
        f.write("allow-secret-namespace = ns32\n")
    r = cofferd("--config", conf)
    if r.returncode != 2 or f"cofferd: {conf}:34: too many --allow-secret-namespace entries " \
                            "(at most 32)" not in r.stderr:
        fail(f"33 --allow-secret-namespace entries in a file: {r.returncode} {r.stderr.strip()}")
    many = [a for i in range(33) for a in ("--allow-secret-namespace", f"c{i}")]
    r = cofferd(*KUBE, *many)
    if r.returncode != 2 or "command line: too many --allow-secret-namespace entries " \
                            "(at most 32)" not in r.stderr:
        fail(f"33 --allow-secret-namespace flags: {r.returncode} {r.stderr.strip()}")

    # the cross-option checks
    for args, want in [
        (["--kubeconfig", "/k"], "--kubeconfig applies to --secret-source kubernetes only"),
        (["--allow-secret-namespace", "x"],
         "--allow-secret-namespace applies to --secret-source kubernetes only"),
        (["--hsm-token", "t"], "--hsm-token, --hsm-key and --hsm-pin-file need --hsm-module"),
        (["--hsm-module", "m"], "--hsm-module needs --hsm-token"),
    ]:
        r = cofferd(*args)
        if r.returncode != 2 or want not in r.stderr:
            fail(f"{args}: {r.returncode} {r.stderr.strip()}; expected {want!r}")

    # --hsm-pin: refused with its sentence, on the command line and in a file, never echoed
    pin = "8715-secret-pin"
    with open(conf, "w", encoding="utf-8") as f:
        f.write(f"hsm-pin = {pin}\n")
    for args, loc in [(["--hsm-pin", pin], "command line"), ([f"--hsm-pin={pin}"], "command line"),
                      (["--config", conf], f"{conf}:1")]:
        r = cofferd(*HSM, *args)
        if r.returncode != 2 or f"cofferd: {loc}: --hsm-pin is refused" not in r.stderr or \
                "--hsm-pin-file FILE" not in r.stderr or pin in r.stdout + r.stderr:
            fail(f"--hsm-pin via {loc}: {r.returncode} {r.stderr.strip()}")

# --print-reference documents each option (flag, config-file name, default)
r = subprocess.run([COFFERD, "--print-reference", "markdown"], capture_output=True, text=True,
                   timeout=60)
defaults = {"hsm-pin-file": "$COFFER_HSM_PIN", "hsm-fallback": "secret", "hsm-timeout": "5000",
            "hsm-cache-max-age": "300", "hsm-cache-max-uses": "1000", "hsm-cache-max-bytes": "64G",
            "hsm-cache-max-entries": "256", "hsm-mechanism": "auto", "secret-source": "dir",
            "kube-serviceaccount-dir": "/var/run/secrets/kubernetes.io/serviceaccount",
            "secret-cache-ttl": "60", "kube-timeout": "10000", "kube-connect-timeout": "5000"}
if r.returncode != 0:
    fail(f"--print-reference markdown: {r.returncode} {r.stderr.strip()}")
for name, arg, *_ in OPTIONS:
    row = f"| `--{name} {arg.replace('|', chr(92) + '|')}` | `{name}` | {defaults.get(name, '')} |"
    if row not in r.stdout:
        fail(f"--print-reference markdown has no row {row!r}")

if failures:
    print(f"uring_config_test: {len(failures)} failure(s)")
    sys.exit(1)
print(f"uring_config_test: OK ({len(OPTIONS)} options)")
