#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# cofferd --secret-source kubernetes --kubeconfig FILE against the tests' API stand-in
# (tests/kube/kube_api_server.py with a throwaway CA): back up, rotate by SIGHUP, restore both.
# Expects a build in build/ (scripts/demo.sh or cmake --build build).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${COFFER_BIN_DIR:-build/bin} # the programs (CTest kube_demo points it at its build)

work=$(mktemp -d)
trap 'kill "${daemon_pid:-0}" "${api_pid:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== a throwaway CA and the API stand-in on 127.0.0.1 (an ephemeral port)"
sh tests/kube/kube_certs.sh "$work"
mkdir -p "$work/data/secrets/velero/coffer-key-2025" "$work/data/secrets/velero/coffer-key-2026"
"$bin"/coffer keygen --out "$work/data/secrets/velero/coffer-key-2025/encryptionKey"
"$bin"/coffer keygen --out "$work/data/secrets/velero/coffer-key-2026/encryptionKey"
head -c 24 /dev/urandom | base64 > "$work/data/token"
mkfifo "$work/port"
python3 tests/kube/kube_api_server.py --cert "$work/server.crt" --key "$work/server.key" \
  --data "$work/data" > "$work/port" &
api_pid=$!
read -r port < "$work/port"
cat > "$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: demo
clusters:
- name: standin
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $work/ca.crt
users:
- name: cofferd
  user:
    tokenFile: $work/data/token
contexts:
- name: demo
  context: {cluster: standin, user: cofferd, namespace: velero}
EOF
echo "== kubectl reads the Secret from it"
kubectl --kubeconfig "$work/kubeconfig" --cache-dir "$work/kcache" -n velero get secret coffer-key-2025

echo "encryption-secret = coffer-key-2025" > "$work/cofferd.conf"
echo "== cofferd --secret-source kubernetes --kubeconfig $work/kubeconfig"
"$bin"/cofferd --secret-source kubernetes --kubeconfig "$work/kubeconfig" --namespace velero \
  --config "$work/cofferd.conf" --socket "$work/cofferd.sock" &
daemon_pid=$!
for _ in $(seq 1 100); do
  "$bin"/coffer health --socket "$work/cofferd.sock" >/dev/null 2>&1 && break
  sleep 0.1
done
head -c 1000000 /dev/urandom > "$work/backup.tar.gz"
"$bin"/coffer encrypt --socket "$work/cofferd.sock" --in "$work/backup.tar.gz" \
  --out "$work/old.coffer" --status-out "$work/old.json"
echo "== rotate: a new Secret for new backups, then SIGHUP"
echo "encryption-secret = coffer-key-2026" > "$work/cofferd.conf"
kill -HUP "$daemon_pid"
sleep 1
"$bin"/coffer encrypt --socket "$work/cofferd.sock" --in "$work/backup.tar.gz" \
  --out "$work/new.coffer" --status-out "$work/new.json"
cat "$work/old.json"; echo; cat "$work/new.json"; echo
echo "== both restore: each backup fetches the Secret its metadata names"
"$bin"/coffer decrypt --socket "$work/cofferd.sock" --in "$work/old.coffer" --out "$work/old.out"
"$bin"/coffer decrypt --socket "$work/cofferd.sock" --in "$work/new.coffer" --out "$work/new.out"
cmp "$work/backup.tar.gz" "$work/old.out" && cmp "$work/backup.tar.gz" "$work/new.out"
echo "== the API saw:"; cat "$work/data/requests.log"
echo "OK: backed up and restored through the Kubernetes API"
