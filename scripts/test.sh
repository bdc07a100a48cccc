#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install dependencies, build coffer (release, libFuzzer, ASan+UBSan) and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
jobs=$(nproc)

echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
echo "== tests (RelWithDebInfo)"
ctest --test-dir build --output-on-failure --no-tests=error

echo "== Go client tests (go test ./..., against build/bin/cofferd and coffer)"
./scripts/test-go.sh "$PWD/build/bin"

echo "== fuzz targets (clang + libFuzzer): build and a short smoke run over the seed corpus"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOFFER_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz
ctest --test-dir build-fuzz -L fuzz --output-on-failure --no-tests=error

echo "== build (ASan+UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCOFFER_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests (ASan+UBSan)"
# The 1 GiB cases run in the release build only; everything else runs here too.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 COFFER_TEST_BIG=0 \
  ctest --test-dir build-asan --output-on-failure --no-tests=error

echo "== build (ThreadSanitizer)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOFFER_TSAN=ON >/dev/null
cmake --build build-tsan -j"$jobs"
echo "== tests (ThreadSanitizer): the daemon, HSM, Kubernetes and client-against-daemon tests"
# Left out here (run above in the release and ASan builds): the single-threaded unit, provider,
# install and docs tests, the offline CLI tests cli_test, cli_interop_test and cli_recovery_test
# (no daemon threads; ~6 minutes under TSan), and kube_demo (a script driving kubectl; its daemon
# paths are kube_daemon_test's) and uring_config_test (300 single-threaded --check-config runs),
# to keep .ci/run within its time. Every process writes its reports to tsan-reports/,
# so a report from a daemon whose exit status a test does not check still fails the run. A process
# with a report exits 66 (exitcode) when it ends; halt_on_error is not used, since a test killed
# mid-way would leave its cofferd running and holding CTest's output pipe.
tsan_reports="$PWD/build-tsan/tsan-reports"
rm -rf "$tsan_reports" && mkdir -p "$tsan_reports"
TSAN_OPTIONS="exitcode=66 second_deadlock_stack=1 log_path=$tsan_reports/tsan" \
  COFFER_TEST_BIG=0 \
  ctest --test-dir build-tsan -L 'uring|hsm|cli|kube' \
  -E '^(cli_test|cli_interop_test|cli_recovery_test|kube_demo|uring_config_test)$' \
  --output-on-failure --no-tests=error
if [ -n "$(ls -A "$tsan_reports")" ]; then
  echo "ThreadSanitizer reported (the tests above passed, but these must not be there):" >&2
  cat "$tsan_reports"/* >&2
  exit 1
fi
