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
