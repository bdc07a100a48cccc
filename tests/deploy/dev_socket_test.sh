#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# cofferd --dev says where it listens, and coffer in the same directory finds that socket with no
# --socket and no COFFER_SOCKET, only while the directory is the caller's and closed (0700).
# Runs in a private mount namespace with an empty /run, so that /run/coffer/cofferd.sock (which
# coffer prefers) is absent whatever the machine has (needs root for unshare and mount).
#
# usage: dev_socket_test.sh BIN_DIR     (CTest: dev_socket_test, label deploy)
set -euo pipefail
bin=$1
if [ "$(id -u)" -ne 0 ]; then
    [ "${CI:-}" = true ] && { echo "dev_socket_test: FAIL: needs root (unshare -m)" >&2; exit 1; }
    echo "dev_socket_test: SKIP: needs root (unshare -m, mount)" >&2
    exit 77
fi
# shellcheck source=../support/script_support.sh
. "$(dirname "$0")/../support/script_support.sh"
ts_setup dev
unset COFFER_SOCKET
# shellcheck disable=SC2016
unshare -m --propagation private bash -euo pipefail -c '
    bin=$1 work=$2
    fail() { echo "dev_socket_test: FAIL: $*" >&2; cat "$work/log" >&2; exit 1; }
    mount -t tmpfs tmpfs /run
    cd "$work"
    "$bin/cofferd" --dev --workers 1 --helpers 1 2>"$work/log" &
    pid=$!
    trap "kill \$pid 2>/dev/null || true; wait \$pid 2>/dev/null || true" EXIT
    for _ in $(seq 1 100); do grep -q "listening on" "$work/log" && break; sleep 0.1; done
    grep -q "^cofferd --dev: listening on $work/.coffer-dev/cofferd.sock$" "$work/log" ||
        fail "the banner does not name the socket"
    grep -q "^    export COFFER_SOCKET=$work/.coffer-dev/cofferd.sock$" "$work/log" ||
        fail "the banner does not give the COFFER_SOCKET line"
    "$bin/coffer" health >"$work/health" || fail "coffer did not find the dev socket"
    echo hello | "$bin/coffer" encrypt | "$bin/coffer" decrypt | grep -qx hello ||
        fail "round trip through the dev socket"
    # a directory others may enter is not trusted: coffer then uses /run/coffer/cofferd.sock
    chmod 0755 .coffer-dev
    if "$bin/coffer" health 2>"$work/err"; then fail "coffer used a dev socket in a 0755 directory"; fi
    grep -q "/run/coffer/cofferd.sock" "$work/err" || fail "unexpected error: $(cat "$work/err")"
    chmod 0700 .coffer-dev
    # elsewhere, COFFER_SOCKET from the banner
    cd /
    COFFER_SOCKET=$work/.coffer-dev/cofferd.sock "$bin/coffer" health >/dev/null ||
        fail "COFFER_SOCKET from the banner"
    echo "dev_socket_test: OK"
' dev_socket_test "$bin" "$work"
