#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# cofferd under systemd's protocols, with systemd's own tools: socket activation by
# systemd-socket-activate serving a round trip, and the sd_notify states (READY, RELOADING,
# STOPPING). The units themselves are verified by systemd-analyze in install_test.sh (they name
# the installed cofferd).
#
# usage: systemd_test.sh BIN_DIR SOURCE_DIR     (CTest: systemd_test, label deploy)
set -euo pipefail
bin=$1 src=$2
# shellcheck source=../support/script_support.sh
. "$src/tests/support/script_support.sh"
ts_setup systemd
fail() { echo "systemd_test: FAIL: $*" >&2; cat "$work/activate.log" >&2 2>/dev/null || true; exit 1; }

mkdir -p "$work/secrets/velero/coffer-key"
"$bin/coffer" keygen --out "$work/secrets/velero/coffer-key/encryptionKey"

if ! command -v systemd-socket-activate >/dev/null; then
    [ "${CI:-}" = true ] && fail "systemd-socket-activate is missing (apt-get install systemd)"
    echo "systemd_test: SKIP socket activation (systemd-socket-activate not installed)" >&2
    exit 77
fi

# systemd-socket-activate binds the socket and starts cofferd on the first connection with
# LISTEN_FDS=1; cofferd must serve that socket and ignore its own --socket.
sock=$work/activated.sock
systemd-socket-activate -l "$sock" -- "$bin/cofferd" --secrets-dir "$work/secrets" \
    --socket "$work/not-this.sock" --workers 1 --helpers 1 >"$work/activate.log" 2>&1 &
ts_pid=$!
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "systemd-socket-activate did not create $sock"
head -c 200000 /dev/urandom >"$work/in"
"$bin/coffer" encrypt --socket "$sock" --in "$work/in" --out "$work/enc" --status-out "$work/st" ||
    fail "encrypt through the activated socket"
"$bin/coffer" decrypt --socket "$sock" --in "$work/enc" --out "$work/dec" || fail "decrypt"
cmp "$work/in" "$work/dec" || fail "round trip differs"
"$bin/coffer" encrypt --socket "$sock" <"$work/in" | "$bin/coffer" decrypt --socket "$sock" |
    cmp - "$work/in" || fail "streamed round trip differs"
grep -q "event=started .*socket=$sock socket_activated=yes" "$work/activate.log" ||
    fail "cofferd did not log the activated socket"
[ ! -e "$work/not-this.sock" ] || fail "cofferd bound --socket although systemd passed one"
kill -TERM "$ts_pid"
wait "$ts_pid" || fail "cofferd exited $? after SIGTERM"
ts_pid=0
[ -S "$sock" ] || fail "cofferd removed the socket systemd owns"
echo "systemd_test: socket activation served encrypt and decrypt (descriptor and stream jobs)"

/usr/bin/python3 "$src/tests/deploy/sd_notify_listen.py" "$work" "$bin/cofferd" \
    --secrets-dir "$work/secrets" --socket "$work/notify.cofferd.sock" --workers 1 --helpers 1
echo "systemd_test: OK"
