#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The reference generated from one table: cofferd's option table (uring/uring_config.c) and
coffer's usage lines fill the blocks between `BEGIN GENERATED: <command>` and `END GENERATED`
markers in the man pages and docs.

  scripts/reference.py --check --bin build/bin   fails (exit 1) if a block differs from what the
                                                 built programs print now (CTest: reference_test)
  scripts/reference.py --write --bin build/bin   rewrites the blocks

--check also fails when uring/uring_hsm.c parses an --hsm-* option that the table lacks (the
table calls into uring_hsm.c for those: a row there is the only place its reference comes from).
"""
import argparse
import difflib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["docs/man/cofferd.8.scd", "docs/man/coffer.conf.5.scd", "docs/man/coffer.1.scd",
         "docs/operations.md"]
BEGIN = re.compile(r"BEGIN GENERATED: (.*?)(?: -->)?\s*$")
END = re.compile(r"END GENERATED")


def generate(command, bindir):
    argv = command.split()
    argv[0] = os.path.join(bindir, argv[0])
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    if command == "coffer --help":
        # the usage lines, as an scdoc literal block
        lines = [l.strip() for l in out.splitlines() if l.startswith("  coffer")]
        return "```\n" + "\n".join(lines) + "\n```\n"
    return out


def process(path, bindir, write):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    out, problems, i, found = [], [], 0, 0
    while i < len(lines):
        out.append(lines[i])
        m = BEGIN.search(lines[i])
        i += 1
        if not m:
            continue
        found += 1
        command = m.group(1)
        start = i
        while i < len(lines) and not END.search(lines[i]):
            i += 1
        if i == len(lines):
            problems.append(f"{path}: BEGIN GENERATED: {command} has no END GENERATED")
            break
        old = "".join(lines[start:i])
        new = generate(command, bindir)
        if old != new:
            diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                f"{path} (as written)",
                                                f"{command} (the table)", n=1))
            problems.append(f"{path}: the block of `{command}` differs from the table:\n{diff}")
        out.append(new)
    if found == 0:
        problems.append(f"{path}: no BEGIN GENERATED block")
    if write:
        with open(os.path.join(ROOT, path), "w", encoding="utf-8") as f:
            f.write("".join(out))
    return problems


def hsm_seam(bindir):
    """Every --hsm-* name uring_hsm.c accepts is a row of the table (hsm-pin is refused)."""
    with open(os.path.join(ROOT, "uring/uring_hsm.c"), encoding="utf-8") as f:
        names = set(re.findall(r'strcmp\(opt, "([a-z0-9-]+)"\) == 0', f.read()))
    table = generate("cofferd --print-reference markdown", bindir)
    return [f"uring/uring_hsm.c parses --hsm-{n} but the option table in uring/uring_config.c "
            f"has no row for it (add one: its --help and reference come from there)"
            for n in sorted(names - {"pin"}) if f"`--hsm-{n}" not in table]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    args = ap.parse_args()
    problems = []
    for path in FILES:
        problems += process(path, args.bin, args.write)
    problems += hsm_seam(args.bin)
    if args.write:
        print("reference: blocks rewritten in " + ", ".join(FILES))
        problems = [p for p in problems if "differs from the table" not in p]
    for p in problems:
        print("reference: " + p, file=sys.stderr)
    if problems:
        if args.check:
            print("reference: run scripts/reference.py --write --bin BUILD/bin", file=sys.stderr)
        return 1
    if args.check:
        print("reference: " + ", ".join(FILES) + " agree with the option table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
