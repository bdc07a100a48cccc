#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Plays systemd's side of sd_notify for a test: runs cofferd with NOTIFY_SOCKET set, expects
READY=1, sends SIGHUP and expects RELOADING=1 (with MONOTONIC_USEC) then READY=1, sends SIGTERM
and expects STOPPING=1 and exit status 0. The messages follow sd_notify(3): one datagram of
newline-separated VAR=value assignments on an AF_UNIX datagram socket.

usage: sd_notify_listen.py DIR COFFERD [ARGS...]
"""
import os
import signal
import socket
import subprocess
import sys

d, argv = sys.argv[1], sys.argv[2:]
path = os.path.join(d, "notify.sock")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(60)
log = open(os.path.join(d, "notify-cofferd.log"), "w")
p = subprocess.Popen(argv, env=dict(os.environ, NOTIFY_SOCKET=path), stderr=log)


def expect(word):
    while True:
        msg = s.recv(4096).decode()
        fields = dict(l.split("=", 1) for l in msg.split("\n") if "=" in l)
        print(f"sd_notify: {msg!r}")
        if word in fields:
            return fields


try:
    expect("READY")
    p.send_signal(signal.SIGHUP)
    f = expect("RELOADING")
    assert f["RELOADING"] == "1" and int(f["MONOTONIC_USEC"]) > 0, f
    assert expect("READY")["READY"] == "1"
    p.send_signal(signal.SIGTERM)
    assert expect("STOPPING")["STOPPING"] == "1"
    rc = p.wait(timeout=60)
    assert rc == 0, f"cofferd exited {rc}"
except Exception as e:  # any failure: say what, show the log
    p.kill()
    p.wait()
    print(f"sd_notify_listen: FAIL: {e!r}", file=sys.stderr)
    print(open(os.path.join(d, "notify-cofferd.log")).read(), file=sys.stderr)
    sys.exit(1)
print("sd_notify_listen: READY, RELOADING, READY, STOPPING received; exit 0")
