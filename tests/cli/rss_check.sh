#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Encrypts and decrypts a 1 GiB (sparse) file with coffer under /usr/bin/time -v; prints peak RSS.
#
# Not a CTest test (too slow under ASan). usage: tests/cli/rss_check.sh [path/to/coffer]
# Environment: COFFER_RSS_SIZE (bytes, default 1 GiB), COFFER_RSS_LIMIT_MIB (default 64),
# COFFER_RSS_FORMATS (default "coffer-v1 velero-v1 cobblestone none"). Exits 1 if a job fails,
# its output differs from the input, or its peak RSS reaches the limit.
set -euo pipefail

bin=${1:-build/bin/coffer}
size=${COFFER_RSS_SIZE:-1073741824}
limit_mib=${COFFER_RSS_LIMIT_MIB:-64}
formats=${COFFER_RSS_FORMATS:-"coffer-v1 velero-v1 cobblestone none"}
[ -x "$bin" ] || { echo "rss_check: $bin is not built" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "rss_check: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/coffer-rss.XXXXXX")
trap 'rm -rf "$dir"' EXIT
truncate -s "$size" "$dir/in"
"$bin" keygen --out "$dir/key"
head -c 32 /dev/urandom >"$dir/vkey"

status=0
# run LABEL ARGS...: one coffer job under time -v; prints its peak RSS and elapsed time.
run() {
    local label=$1
    shift
    /usr/bin/time -v -o "$dir/time" "$bin" "$@"
    local rss_kb elapsed user sys
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time")
    elapsed=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time")
    user=$(awk -F': ' '/User time \(seconds\)/ {print $2}' "$dir/time")
    sys=$(awk -F': ' '/System time \(seconds\)/ {print $2}' "$dir/time")
    local rss_mib=$((rss_kb / 1024))
    local verdict=ok
    if [ "$rss_mib" -ge "$limit_mib" ]; then
        verdict="OVER ${limit_mib} MiB"
        status=1
    fi
    printf '%-22s peak RSS %6d KiB (%3d MiB)  elapsed %s (user %ss, sys %ss)  %s\n' "$label" \
        "$rss_kb" "$rss_mib" "$elapsed" "$user" "$sys" "$verdict"
}

echo "coffer: $bin; input: $size bytes (sparse)"
for f in $formats; do
    key=(--key-file "$dir/key")
    [ "$f" = velero-v1 ] && key=(--key-file "$dir/vkey")
    ctx=()
    [ "$f" = cobblestone ] && ctx=(--context rss-check)
    run "encrypt $f" encrypt --offline "${key[@]}" --format "$f" "${ctx[@]}" \
        --in "$dir/in" --out "$dir/ct"
    run "decrypt $f" decrypt --offline "${key[@]}" --format "$f" "${ctx[@]}" \
        --spool-dir "$dir" --in "$dir/ct" --out "$dir/out"
    if ! cmp -s "$dir/in" "$dir/out"; then
        echo "decrypt $f: output differs from the input" >&2
        status=1
    fi
    rm -f "$dir/ct" "$dir/out"
done
exit $status
