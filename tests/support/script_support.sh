# SPDX-License-Identifier: Apache-2.0
# Shared by the shell tests (source it): a private work directory and one background process,
# both cleaned up at exit.
#
#   ts_setup NAME    sets $work to a new mktemp -d directory and arms the cleanup
#   ts_pid=$!        after starting the process to stop at exit (SIGTERM, then wait)
ts_pid=0
ts_cleanup() {
    if [ "$ts_pid" -gt 0 ]; then
        kill "$ts_pid" 2>/dev/null || true
        wait "$ts_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
ts_setup() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/coffer-$1.XXXXXX")
    trap ts_cleanup EXIT
}
