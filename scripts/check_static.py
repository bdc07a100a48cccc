#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""File-local functions are static: list the non-static functions of the daemon's .c files that
no header declares, or that no other file (tests included) uses.

    python3 scripts/check_static.py [--all] [FILE.c ...]

Without FILE arguments it checks CHECKED below; --all checks every uring/*.c and only reports
(exit 0), to show what is left. Exits 1 when a checked file defines such a function. A function
is exported when a header anywhere in the tree (not tests/) declares it by name; main is exempt.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The files this check holds to the rule. Extend the list as files are brought in line.
CHECKED = [
    "uring/uring_config.c",
    "uring/uring_kube.c",
    "uring/uring_listen.c",
    "uring/uring_log.c",
    "uring/uring_main.c",
    "uring/uring_metrics.c",
    "uring/uring_peers.c",
    "uring/uring_recovery.c",
    "uring/uring_report.c",
    "uring/uring_runtime.c",
    "uring/uring_systemd.c",
]

# A definition starts at column 0 with a type, ends its parameter list, and opens a body.
DEF = re.compile(r"^(?!static\b|extern\b|typedef\b|#|/|\s)[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\(")


def definitions(path):
    """(name, line) of every non-static function defined in path."""
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        m = DEF.match(line)
        if not m:
            continue
        # the signature runs until ')' ... then '{' (a definition) or ';' (a prototype)
        j = i
        text = line
        while j + 1 < len(lines) and "{" not in text and ";" not in text:
            j += 1
            text += lines[j]
        if "{" in text and (";" not in text or text.index("{") < text.index(";")):
            out.append((m.group(1), i + 1))
    return out


def header_names():
    names = set()
    word = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
    for h in ROOT.rglob("*.h"):
        rel = h.relative_to(ROOT).parts
        if rel[0].startswith("build") or rel[0] in ("tests", "go"):
            continue
        names.update(word.findall(h.read_text(errors="replace")))
    return names


def sources():
    """path -> text of every .c file of the tree (build directories left out)."""
    out = {}
    for c in ROOT.rglob("*.c"):
        if c.relative_to(ROOT).parts[0].startswith("build"):
            continue
        out[c.resolve()] = c.read_text(errors="replace")
    return out


def used_elsewhere(name, path, texts):
    pat = re.compile(r"\b" + re.escape(name) + r"\b")
    return any(p != path and pat.search(t) for p, t in texts.items())


def main(argv):
    report_only = "--all" in argv
    files = [a for a in argv if not a.startswith("--")]
    if report_only:
        files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "uring").glob("*.c"))
    elif not files:
        files = CHECKED
    exported = header_names()
    texts = sources()
    bad = 0
    for f in files:
        path = (ROOT / f).resolve()
        for name, line in definitions(path):
            if name == "main":
                continue
            if name not in exported:
                print(f"{f}:{line}: {name} is defined without static and declared in no header: "
                      "make it static (or declare it in the module's header, with its contract)")
                bad += 1
            elif not used_elsewhere(name, path, texts):
                print(f"{f}:{line}: {name} is declared in a header but no other file uses it: "
                      "make it static and take it out of the header")
                bad += 1
    if bad == 0:
        print(f"check_static: {len(files)} files, every file-local function is static")
    return 0 if report_only or bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
