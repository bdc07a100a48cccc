#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Every shell example in README.md and docs/*.md runs as written, or names its twin test.

Each ```sh block must be preceded (after the previous block) by a marker comment:
  <!-- example: run ... -->          the block is run here
  <!-- example: twin PATH ... -->    PATH (a test or script in the tree) does what it shows
The run blocks of one file run in order, as one bash script with `set -euo pipefail`, in a fresh
directory holding a backup.tar.gz and `build` (the build tree), with the built programs first on
PATH. Examples that use /etc/coffer and /run/coffer get them as written: the script runs in a
private mount namespace where /etc is an overlay of the real one and /run an empty tmpfs, so
nothing on the machine changes (needs root for unshare and mount).

usage: examples_test.py SOURCE_DIR BUILD_DIR     (CTest: examples_test, label docs)
"""
import glob
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile

SRC, BUILD = sys.argv[1], sys.argv[2]
MARK = re.compile(r"<!-- example: (run|twin)\b(.*?)-->")
FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(path):
    """(line, kind, detail, text) for every ```sh block, kind from the marker before it."""
    out, marker, lines = [], None, open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        m = MARK.search(lines[i])
        if m:
            marker = (m.group(1), m.group(2).strip())
        f = FENCE.match(lines[i])
        if f and f.group(1) != "":
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if f.group(1) in ("sh", "bash", "shell", "console"):
                kind, detail = marker if marker else (None, "")
                out.append((i + 1, kind, detail, "\n".join(lines[i + 1:j]) + "\n"))
                marker = None
            i = j
        elif f:  # a bare ``` block (output, usage lines): skip to its end
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            i = j
        i += 1
    return out


def fixture(work):
    os.makedirs(os.path.join(work, "cluster"))
    for n in range(50):
        with open(os.path.join(work, "cluster", f"s{n}.yaml"), "w") as f:
            f.write(f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s{n}}}\n"
                    f"data: {{token: {os.urandom(24).hex()}}}\n")
    with tarfile.open(os.path.join(work, "backup.tar.gz"), "w:gz") as t:
        t.add(os.path.join(work, "cluster"), arcname="cluster")
    os.symlink(os.path.abspath(BUILD), os.path.join(work, "build"))


def run_file(rel, runs):
    with tempfile.TemporaryDirectory(prefix="coffer-examples.") as work:
        fixture(work)
        script = os.path.join(work, "examples.sh")
        with open(script, "w") as f:
            f.write("set -euo pipefail\n"
                    "trap 'kill $(jobs -p) 2>/dev/null || true; wait || true' EXIT\n")
            for line, _, _, text in runs:
                f.write(f"echo '== {rel}:{line}'\n{text}")
        upper = os.path.join(work, ".etc-upper")
        os.makedirs(upper)
        os.makedirs(os.path.join(work, ".etc-work"))
        sandbox = (f"mount -t overlay overlay -o lowerdir=/etc,upperdir={shlex.quote(upper)},"
                   f"workdir={shlex.quote(work)}/.etc-work /etc && mount -t tmpfs tmpfs /run && "
                   f"cd {shlex.quote(work)} && exec bash examples.sh")
        env = dict(os.environ, PATH=os.path.join(os.path.abspath(BUILD), "bin") + ":" +
                   os.environ.get("PATH", "/usr/bin:/bin"))
        env.pop("COFFER_SOCKET", None)
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", sandbox],
                           env=env, capture_output=True, text=True, timeout=600)
        print(r.stdout, end="")
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            print(f"examples_test: FAIL: {rel}: the examples exited {r.returncode}",
                  file=sys.stderr)
            return False
        print(f"examples_test: {rel}: {len(runs)} example(s) ran")
        return True


def main():
    files = [os.path.join(SRC, "README.md")] + sorted(glob.glob(os.path.join(SRC, "docs", "*.md")))
    ok, todo = True, []
    for path in files:
        rel = os.path.relpath(path, SRC)
        runs = []
        for line, kind, detail, text in blocks(path):
            if kind is None:
                print(f"examples_test: FAIL: {rel}:{line}: a shell example without a marker "
                      f"(<!-- example: run --> or <!-- example: twin PATH -->)", file=sys.stderr)
                ok = False
            elif kind == "twin":
                twin = detail.split()[0] if detail else ""
                if not twin or not os.path.exists(os.path.join(SRC, twin)):
                    print(f"examples_test: FAIL: {rel}:{line}: twin '{twin}' does not exist",
                          file=sys.stderr)
                    ok = False
            else:
                runs.append((line, kind, detail, text))
        if runs:
            todo.append((rel, runs))
    if os.geteuid() != 0:
        msg = "examples_test: SKIP running the examples: needs root (unshare -m, mount)"
        if os.environ.get("CI") == "true":
            print(msg.replace("SKIP", "FAIL"), file=sys.stderr)
            return 1
        print(msg, file=sys.stderr)
        return 77 if ok else 1
    for rel, runs in todo:
        ok = run_file(rel, runs) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
