#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The limits the docs state are the code's: the metadata size (ENGINE_METADATA_MAX), the
protocol's metadata field (COFFER_MAX_METADATA) and the velero-v1 spool sizes (SESSION_SPOOL_MEM in
cofferd, ENGINE_VELERO_SPOOL_MEM_DEFAULT in the CLI), wherever README.md and docs/*.md state them."""
import re
import sys
from pathlib import Path

root = Path(sys.argv[1])


def define(header, name):
    text = (root / header).read_text()
    m = re.search(r"#define\s+%s\s+\(?(\d+)u?(?:\s*<<\s*(\d+))?\)?" % name, text)
    if m is None:
        sys.exit(f"{header}: no #define {name}")
    return int(m.group(1)) << int(m.group(2) or 0)


meta = define("engine/engine_metadata.h", "ENGINE_METADATA_MAX")
frame_meta = define("proto/proto_frame.h", "COFFER_MAX_METADATA")
daemon_spool = define("uring/session.h", "SESSION_SPOOL_MEM")
cli_spool = define("engine/engine_velero.h", "ENGINE_VELERO_SPOOL_MEM_DEFAULT")


def mib(n):
    return f"{n >> 20} MiB"


problems = []
docs = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
for path in docs:
    text = path.read_text()
    # every "NN,NNN bytes"-style metadata limit stated is ENGINE_METADATA_MAX
    for m in re.finditer(r"metadata[^.\n]{0,80}?\b(\d{2},\d{3}|\d{5})\b(?! *\|)", text):
        n = int(m.group(1).replace(",", ""))
        if n not in (meta, frame_meta):
            problems.append(f"{path.name}: metadata limit {m.group(1)}, code says {meta}")
    for m in re.finditer(r"(\d+) ?MiB[^.\n]{0,40}?(?:SESSION_SPOOL_MEM)", text):
        if int(m.group(1)) << 20 != daemon_spool:
            problems.append(f"{path.name}: daemon spool {m.group(1)} MiB, code says {mib(daemon_spool)}")
    for m in re.finditer(r"(\d+) ?MiB[^.\n]{0,60}?(?:ENGINE_VELERO_SPOOL_MEM_DEFAULT)", text):
        if int(m.group(1)) << 20 != cli_spool:
            problems.append(f"{path.name}: CLI spool {m.group(1)} MiB, code says {mib(cli_spool)}")

readme = (root / "README.md").read_text()
protocol = (root / "docs/protocol.md").read_text()
need = [
    (protocol, "protocol.md", f"`ENGINE_METADATA_MAX` = {meta}"),
    (protocol, "protocol.md", f"`SESSION_SPOOL_MEM` | {daemon_spool} |"),
    (protocol, "protocol.md", f"at most {mib(daemon_spool)} (`SESSION_SPOOL_MEM`)"),
    (readme, "README.md", f"{meta:,} bytes (`ENGINE_METADATA_MAX`)"),
    (readme, "README.md", f"{mib(daemon_spool)} per job in `cofferd`"),
    (readme, "README.md", f"{mib(cli_spool)} in the `coffer` CLI"),
]
for text, name, s in need:
    if s not in text:
        problems.append(f"{name}: does not say {s!r}")
for p in problems:
    print("limits_test:", p)
sys.exit(1 if problems else 0)
