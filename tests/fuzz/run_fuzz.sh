#!/bin/sh
# run_fuzz.sh FUZZER SEEDS SECONDS [ARG...]: run a libFuzzer target for a
# fixed time, starting from the committed seeds, with a scratch corpus in a
# temporary directory so the source tree is never written to.  Further
# arguments go to the fuzzer as they are: more seed folders, -dict=FILE.
set -eu
fuzzer=$1 seeds=$2 seconds=${3:-60}
if [ $# -ge 3 ]; then shift 3; else shift $#; fi
work=$(mktemp -d "${TMPDIR:-/tmp}/schakel-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/tmp"
# Crash reproducers go to the current directory (artifact_prefix) so CI
# can upload them.
# libFuzzer's default error exit code is 77, which meson reads as "skipped";
# a finding must fail the test.  Not exec'd: the trap must still remove
# the scratch corpus afterwards, and what the target writes under TMPDIR.
status=0
TMPDIR="$work/tmp" "$fuzzer" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 \
    -max_len=70000 -print_final_stats=1 -artifact_prefix=./fuzz- \
    "$work/corpus" "$seeds" "$@" || status=$?
exit "$status"
