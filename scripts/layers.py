#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cofferd's layering, checked on the built objects (issue 9): no circle of calls between the
files of uring/, and the ring layer is the only code that uses liburing.

usage: layers.py OBJDIR SRCDIR
  OBJDIR  cofferd's object files (build/uring/CMakeFiles/cofferd.dir)
  SRCDIR  uring/ (its sources, for the liburing check)

A file calls another when its object has an undefined symbol the other defines (nm). Cycles are
the strongly connected components of that graph with more than one file; each is printed with
the symbols that close it. liburing: only the files in RING_LAYER may name an io_uring_ function
or include <liburing.h> or uring_ring.h (the session and everything else get no ring). Exit 0 clean, 1 not.
"""
import os
import re
import subprocess
import sys

RING_LAYER = {"uring_worker.c", "uring_conn.c", "uring_ring.c", "uring_ring.h"}


def symbols(obj):
    out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBRV":
            defined.add(parts[2])
    return defined, undefined


def sccs(graph):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    objdir, srcdir = sys.argv[1], sys.argv[2]
    # objects of sources that still exist (a local build may keep those of deleted files)
    objs = {f[:-2]: os.path.join(objdir, f) for f in sorted(os.listdir(objdir))
            if f.endswith(".c.o") and os.path.exists(os.path.join(srcdir, f[:-2]))}
    defs, undefs = {}, {}
    for name, path in objs.items():
        defs[name], undefs[name] = symbols(path)
    owner = {s: name for name, ds in defs.items() for s in ds}
    graph = {name: set() for name in objs}
    why = {}
    for name, us in undefs.items():
        for s in sorted(us):
            o = owner.get(s)
            if o is not None and o != name:
                graph[name].add(o)
                why.setdefault((name, o), []).append(s)
    bad = 0
    for comp in sccs(graph):
        if len(comp) < 2:
            continue
        bad = 1
        print("circle of calls between: " + ", ".join(comp))
        for a in comp:
            for b in comp:
                if (a, b) in why:
                    print("  %s -> %s: %s" % (a, b, ", ".join(why[(a, b)][:6])))
    for f in sorted(os.listdir(srcdir)):
        if not f.endswith((".c", ".h")) or f in RING_LAYER:
            continue
        text = open(os.path.join(srcdir, f)).read()
        m = re.search(r'#include <liburing\.h>|#include "uring_ring\.h"|\bio_uring_\w+\s*\(', text)
        if m:
            bad = 1
            print("%s uses liburing (%s) but is not in the ring layer" % (f, m.group(0)))
    print("layers: %d files, %s" % (len(objs), "no circles, liburing only in the ring layer"
                                    if not bad else "FAILED"))
    return bad


if __name__ == "__main__":
    sys.exit(main())
