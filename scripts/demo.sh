#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job on a fresh Debian 12 machine: install, build, start cofferd --dev, round-trip a backup.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

work=$(mktemp -d)
trap 'kill "${daemon_pid:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# A stand-in for a Velero backup: a gzipped tarball of some cluster-like files.
mkdir -p "$work/cluster/secrets"
for i in $(seq 1 200); do printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: s%d}\ndata: {token: %s}\n' "$i" "$(head -c 48 /dev/urandom | base64 -w0)" > "$work/cluster/secrets/s$i.yaml"; done
tar -C "$work" -czf "$work/backup.tar.gz" cluster

if [ -x build/bin/cofferd ]; then
  echo "== starting cofferd --dev (creates a development key under ./.coffer-dev)"
  build/bin/cofferd --dev --socket "$work/cofferd.sock" &
  daemon_pid=$!
  # ready when it answers (the socket file exists a moment before it listens)
  for _ in $(seq 1 100); do
    build/bin/coffer health --socket "$work/cofferd.sock" >/dev/null 2>&1 && break
    sleep 0.1
  done
  build/bin/coffer health --socket "$work/cofferd.sock"
  echo "== encrypt through cofferd"
  build/bin/coffer encrypt --socket "$work/cofferd.sock" --in "$work/backup.tar.gz" \
    --out "$work/backup.tar.gz.coffer" --status-out "$work/status.json"
  echo "== status metadata to store with the backup:"; cat "$work/status.json"
  echo "== decrypt through cofferd"
  build/bin/coffer decrypt --socket "$work/cofferd.sock" --in "$work/backup.tar.gz.coffer" \
    --out "$work/restored.tar.gz"
else
  echo "== cofferd not built: offline round trip with a fresh key"
  build/bin/coffer keygen --out "$work/key"
  build/bin/coffer encrypt --offline --key-file "$work/key" --in "$work/backup.tar.gz" \
    --out "$work/backup.tar.gz.coffer" --status-out "$work/status.json"
  echo "== status metadata to store with the backup:"; cat "$work/status.json"
  build/bin/coffer decrypt --offline --key-file "$work/key" --in "$work/backup.tar.gz.coffer" \
    --out "$work/restored.tar.gz"
fi
echo "== header of the encrypted backup (no key needed):"
build/bin/coffer inspect --in "$work/backup.tar.gz.coffer"
cmp "$work/backup.tar.gz" "$work/restored.tar.gz"
echo "== round trip OK: $(stat -c %s "$work/backup.tar.gz") bytes in, $(stat -c %s "$work/backup.tar.gz.coffer") bytes encrypted, restored identical"
