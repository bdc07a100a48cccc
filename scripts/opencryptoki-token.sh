#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# openCryptoki's software token (slot 3) for the HSM tests: start pkcsslotd and initialise the
# token, or stop what start started. Needs root (pkcsslotd, /var/lib/opencryptoki, the pkcs11
# group); on a clean Debian 12 machine with the opencryptoki package installed (scripts/install-deps.sh).
#
#   opencryptoki-token.sh start STATE_DIR LABEL   -> STATE_DIR/user-pin (the user PIN, mode 0600)
#   opencryptoki-token.sh stop STATE_DIR          -> stops pkcsslotd if start started it
#
# start initialises slot 3's token with LABEL from openCryptoki's default SO PIN. A token that
# already carries LABEL (an earlier run) is first reset to that state: pkcsslotd stopped, the
# token's files and shared memory removed (openCryptoki 3.8's C_InitToken over an initialised
# software token leaves an SO master key the new SO PIN cannot open: SO logins then fail with
# CKR_FUNCTION_FAILED). A token with any other label belongs to someone else and is left alone
# (exit 3). Exit 2 when not root or openCryptoki is missing.
set -euo pipefail

SLOT=3
DEFAULT_SO_PIN=87654321 # openCryptoki's documented initial SO PIN
SO_PIN=c0ffe850         # test-only PINs: openCryptoki's software token takes 4 to 8 characters
USER_PIN=c0ffe811
SLOTD=/usr/sbin/pkcsslotd
PIDFILE=/run/pkcsslotd.pid
SWTOK=/var/lib/opencryptoki/swtok

die() {
  echo "opencryptoki-token: $2" >&2
  exit "$1"
}

slotd_running() {
  local pid
  [ -r "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  # a zombie or a reused pid is not pkcsslotd
  [ "$(cut -d' ' -f2 "/proc/$pid/stat")" = "(pkcsslotd)" ] &&
    [ "$(cut -d' ' -f3 "/proc/$pid/stat")" != "Z" ]
}

token_flags() {
  pkcsconf -t -c "$SLOT" 2>/dev/null | sed -n 's/^[[:space:]]*Flags: //p'
}

token_label() {
  pkcsconf -t -c "$SLOT" 2>/dev/null | sed -n 's/^[[:space:]]*Label: //p' | sed 's/[[:space:]]*$//'
}

start() {
  local state=$1 label=$2 flags
  [ "$(id -u)" = 0 ] || die 2 "needs root (pkcsslotd, /var/lib/opencryptoki, the pkcs11 group)"
  [ -x "$SLOTD" ] && command -v pkcsconf >/dev/null ||
    die 2 "openCryptoki is not installed (apt-get install opencryptoki)"
  mkdir -p "$state"
  chmod 0700 "$state"
  # What the package sets up, in case a minimal image dropped it.
  getent group pkcs11 >/dev/null || groupadd --system pkcs11
  install -d -m 0770 -o root -g pkcs11 /var/lib/opencryptoki "$SWTOK" "$SWTOK/TOK_OBJ"
  slotd_start "$state"
  flags=$(token_flags) || true
  if [[ "$flags" == *TOKEN_INITIALIZED* ]]; then
    [ "$(token_label)" = "$label" ] ||
      die 3 "slot $SLOT's token is labelled '$(token_label)', not '$label': not touching it"
    # ours, from an earlier run: back to a never-initialised token
    slotd_kill "$(cat "$PIDFILE")"
    rm -f "$SWTOK/NVTOK.DAT" "$SWTOK/MK_SO" "$SWTOK/MK_USER" "$SWTOK"/TOK_OBJ/*
    rm -f /dev/shm/var.lib.opencryptoki.swtok
    slotd_start "$state"
    flags=$(token_flags) || true
  fi
  [ -n "$flags" ] || die 1 "pkcsconf cannot see slot $SLOT (is libpkcs11_sw.so configured in /etc/opencryptoki/opencryptoki.conf?)"
  [[ "$flags" != *TOKEN_INITIALIZED* ]] || die 1 "slot $SLOT's token is still initialised after the reset"
  echo "$label" | pkcsconf -c "$SLOT" -I -S "$DEFAULT_SO_PIN" >/dev/null ||
    die 1 "initialising the token with the default SO PIN failed"
  pkcsconf -c "$SLOT" -P -S "$DEFAULT_SO_PIN" -n "$SO_PIN" >/dev/null || die 1 "setting the SO PIN failed"
  pkcsconf -c "$SLOT" -u -S "$SO_PIN" -n "$USER_PIN" >/dev/null || die 1 "setting the user PIN failed"
  flags=$(token_flags)
  [[ "$flags" == *USER_PIN_INITIALIZED* ]] || die 1 "the user PIN is not set (flags: $flags)"
  (umask 077 && printf '%s\n' "$USER_PIN" >"$state/user-pin")
  echo "opencryptoki-token: slot $SLOT initialised as '$label' (flags: $flags)"
}

# Start pkcsslotd unless it runs; remember that we did.
slotd_start() {
  local state=$1
  if ! slotd_running; then
    rm -f "$PIDFILE"
    "$SLOTD" || die 1 "pkcsslotd did not start"
    for _ in $(seq 1 50); do
      slotd_running && break
      sleep 0.1
    done
    slotd_running || die 1 "pkcsslotd did not come up (no live pid in $PIDFILE)"
    cat "$PIDFILE" >"$state/slotd-started"
  fi
}

slotd_kill() {
  local pid=$1
  kill "$pid"
  for _ in $(seq 1 50); do
    [ -r "/proc/$pid/stat" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat")" != "Z" ] || break
    sleep 0.1
  done
}

stop() {
  local state=$1 pid
  [ -r "$state/slotd-started" ] || return 0
  pid=$(cat "$state/slotd-started")
  if slotd_running && [ "$(cat "$PIDFILE")" = "$pid" ]; then
    slotd_kill "$pid"
  fi
  rm -f "$state/slotd-started"
  echo "opencryptoki-token: stopped pkcsslotd ($pid)"
}

case "${1:-}" in
start) [ $# -eq 3 ] || die 2 "usage: $0 start STATE_DIR LABEL"; start "$2" "$3" ;;
stop) [ $# -eq 2 ] || die 2 "usage: $0 stop STATE_DIR"; stop "$2" ;;
*) die 2 "usage: $0 start STATE_DIR LABEL | stop STATE_DIR" ;;
esac
