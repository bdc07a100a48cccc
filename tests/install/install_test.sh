#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# cmake --install into a temporary prefix, then: every file in place, one version everywhere,
# C programs built with pkg-config (shared and static) and with find_package(coffer) round-trip a
# file through the installed cofferd, and systemd-analyze verifies the installed units.
#
# usage: install_test.sh BUILD_DIR SOURCE_DIR VERSION    (CTest runs it; label install)
# COFFER_TEST_CFLAGS: extra compiler flags for the programs built here (the sanitizers).
set -euo pipefail
build=$1 src=$2 version=$3
cflags=${COFFER_TEST_CFLAGS:-}
# shellcheck source=../support/script_support.sh
. "$src/tests/support/script_support.sh"
ts_setup install
fail() { echo "install_test: FAIL: $*" >&2; exit 1; }

P=$work/prefix
cmake --install "$build" --prefix "$P" >"$work/install.log"
libdir=$(sed -n 's/^libdir=\${prefix}\///p' "$P"/lib*/pkgconfig/libcoffer.pc 2>/dev/null | head -1)
[ -n "$libdir" ] || libdir=lib
echo "installed into $P (libdir $libdir)"

for f in bin/coffer sbin/cofferd include/coffer_client.h include/coffer_error.h \
    include/coffer_version.h "$libdir/libcoffer.so.$version" "$libdir/libcoffer.so.0" \
    "$libdir/libcoffer.so" "$libdir/libcoffer.a" "$libdir/pkgconfig/libcoffer.pc" \
    "$libdir/cmake/coffer/cofferConfig.cmake" "$libdir/cmake/coffer/cofferConfigVersion.cmake" \
    "$libdir/ossl-modules/coffer.so" lib/systemd/system/cofferd.service \
    lib/systemd/system/cofferd.socket lib/sysusers.d/coffer.conf share/man/man8/cofferd.8 \
    share/man/man1/coffer.1 share/man/man5/coffer.conf.5 share/doc/coffer/README.md \
    share/doc/coffer/operations.md share/doc/coffer/examples/cofferd.conf \
    share/doc/coffer/examples/kubernetes/kustomization.yaml; do
    [ -e "$P/$f" ] || fail "cmake --install did not install $f"
done

# One version everywhere: the programs, the provider (OPENSSL_MODULES), libcoffer, HEALTH.
[ "$("$P/bin/coffer" --version)" = "coffer $version (protocol 1)" ] || fail "coffer --version: $("$P/bin/coffer" --version)"
[ "$("$P/sbin/cofferd" --version)" = "cofferd $version (protocol 1)" ] || fail "cofferd --version"
LD_PRELOAD=${COFFER_TEST_PRELOAD:-} ASAN_OPTIONS=detect_leaks=0 \
    OPENSSL_MODULES=$P/$libdir/ossl-modules openssl list -providers -provider coffer >"$work/prov" 2>&1 ||
    { cat "$work/prov"; fail "openssl cannot load the installed provider with OPENSSL_MODULES"; }
grep -q "version: $version" "$work/prov" || { cat "$work/prov"; fail "provider version"; }

# The installed units name the installed cofferd; systemd-analyze verifies them.
grep -q "^ExecStart=$P/sbin/cofferd " "$P/lib/systemd/system/cofferd.service" || fail "ExecStart path"
if command -v systemd-analyze >/dev/null; then
    # Documentation=man:... is checked against the installed man pages.
    MANPATH=$P/share/man systemd-analyze verify "$P/lib/systemd/system/cofferd.socket" \
        "$P/lib/systemd/system/cofferd.service" >"$work/verify" 2>&1 ||
        { cat "$work/verify"; fail "systemd-analyze verify"; }
    if grep -v "Special user\|cofferd.service:.*User=coffer\|/sysusers" "$work/verify" | grep -q .; then
        cat "$work/verify"; fail "systemd-analyze verify printed warnings"
    fi
    # The hardening, scored offline by systemd itself: exposure at most 1.5 of 10 ("OK").
    (cd "$P/lib/systemd/system" && systemd-analyze security --offline=yes --threshold=15 \
        cofferd.service >"$work/security" 2>&1) ||
        { cat "$work/security"; fail "systemd-analyze security: exposure above 1.5"; }
    echo "systemd-analyze verify: units OK; $(grep -o 'Overall exposure level.*' "$work/security")"
elif [ "${CI:-}" = true ]; then
    fail "systemd-analyze is missing (apt-get install systemd)"
else
    echo "install_test: SKIP systemd-analyze verify (not installed)" >&2
fi

# Programs built against the installed libcoffer: pkg-config, shared and static.
export PKG_CONFIG_PATH=$P/$libdir/pkgconfig
[ "$(pkg-config --modversion libcoffer)" = "$version" ] || fail "pkg-config --modversion"
# shellcheck disable=SC2046,SC2086
cc $cflags -o "$work/rt_shared" "$src/tests/install/install_roundtrip.c" \
    $(pkg-config --cflags --libs libcoffer) -Wl,-rpath,"$P/$libdir"
# shellcheck disable=SC2046,SC2086
cc $cflags -o "$work/rt_static" "$src/tests/install/install_roundtrip.c" \
    $(pkg-config --cflags libcoffer) "$P/$libdir/libcoffer.a"
ldd "$work/rt_shared" >"$work/ldd"
grep -qF "$P/$libdir/libcoffer.so.0" "$work/ldd" ||
    { cat "$work/ldd"; fail "rt_shared does not use the installed libcoffer.so"; }
# find_package(coffer)
cmake -S "$src/tests/install/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$P" \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_BUILD_RPATH="$P/$libdir" >"$work/consumer.log" 2>&1 ||
    { cat "$work/consumer.log"; fail "find_package(coffer)"; }
cmake --build "$work/consumer" >>"$work/consumer.log" 2>&1 || { cat "$work/consumer.log"; fail "consumer build"; }

# The installed cofferd with a key made by the installed coffer.
mkdir -p "$work/secrets/velero/coffer-key"
"$P/bin/coffer" keygen --out "$work/secrets/velero/coffer-key/encryptionKey"
sock=$work/run/cofferd.sock # run/ does not exist yet: cofferd creates it
"$P/sbin/cofferd" --socket "$sock" --secrets-dir "$work/secrets" --workers 1 --helpers 1 \
    2>"$work/cofferd.log" &
ts_pid=$!
for _ in $(seq 1 300); do
    "$P/bin/coffer" health --socket "$sock" >/dev/null 2>&1 && break
    kill -0 "$ts_pid" 2>/dev/null || { cat "$work/cofferd.log"; fail "cofferd exited"; }
    sleep 0.1
done
[ "$(stat -c %a "$work/run")" = 755 ] || fail "socket directory mode $(stat -c %a "$work/run")"
# Two missing levels: only the last is created, and the error names the directory.
if "$P/sbin/cofferd" --socket "$work/no/such/cofferd.sock" --secrets-dir "$work/secrets" \
    2>"$work/nodir.log"; then fail "cofferd started with a socket under a missing directory"; fi
grep -q "cannot create the socket's directory $work/no/such: No such file or directory" \
    "$work/nodir.log" || { cat "$work/nodir.log"; fail "the error does not name the directory"; }
head -c 300000 /dev/urandom >"$work/in"
for prog in rt_shared rt_static consumer/roundtrip_shared consumer/roundtrip_static; do
    rm -f "$work/enc" "$work/dec"
    "$work/$prog" "$sock" "$work/in" "$work/enc" "$work/dec" >"$work/out" ||
        { cat "$work/out" "$work/cofferd.log"; fail "$prog round trip"; }
    cmp "$work/in" "$work/dec" || fail "$prog: decrypted file differs"
    cmp -s "$work/in" "$work/enc" && fail "$prog: the encrypted file is the plaintext"
    grep -q "^library $version header $version$" "$work/out" || { cat "$work/out"; fail "$prog: versions"; }
    grep -qF "\"version\":\"$version\"" "$work/out" || { cat "$work/out"; fail "$prog: HEALTH version"; }
    echo "$prog: round trip of 300000 bytes OK"
done
# And the installed coffer decrypts what the library encrypted.
"$P/bin/coffer" decrypt --socket "$sock" --in "$work/enc" --out "$work/dec2"
cmp "$work/in" "$work/dec2" || fail "coffer decrypt of libcoffer's output"
echo "install_test: OK"
