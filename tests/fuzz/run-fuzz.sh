#!/bin/sh
# tests/fuzz/run-fuzz.sh: build the SSE parser / chat stream aggregator
# fuzz target (tests/fuzz/fuzz_sse.c) with clang's libFuzzer, ASan and
# UBSan, and run it for a bounded time.  Prints TAP.
#
# Environment:
#   FUZZ_SECONDS  run time in seconds (default 20; `make fuzz` uses 300;
#                 0 only replays the seeds and the corpus).  In sanitizer
#                 builds (MLT_SANITIZED set by `make check`) the default is
#                 0: the fuzzer does not depend on the build's flags, and
#                 the main build already fuzzes.
#   FUZZ_CC       the compiler (default clang)
#   FUZZ_JOBS     parallel fuzzing processes (default 1)
#   top_srcdir, top_builddir  as exported by `make check`
#
# Without clang or libFuzzer (Debian: apt-get install clang
# libclang-rt-14-dev; CI installs both) the whole file is skipped.
# The corpus grows in $top_builddir/tests/fuzz/corpus across runs (seeded
# from tests/data/sse/*.sse); a crashing input is kept in
# $top_builddir/tests/fuzz/artifacts/ and reported as a failure, with the
# command that reproduces it.

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${top_srcdir:-$(cd "$here/../.." && pwd)}
builddir=${top_builddir:-.}
cc=${FUZZ_CC:-clang}
if [ -n "${MLT_SANITIZED:-}" ]; then seconds=${FUZZ_SECONDS:-0}; else seconds=${FUZZ_SECONDS:-20}; fi
jobs=${FUZZ_JOBS:-1}
work=$builddir/tests/fuzz
mkdir -p "$work/corpus" "$work/artifacts" || exit 99
work=$(cd "$work" && pwd)

if ! command -v "$cc" >/dev/null 2>&1; then
  echo "1..0 # SKIP $cc not found (install clang and libclang-rt-14-dev)"
  exit 0
fi
cjson=$(pkg-config --cflags --libs libcjson 2>/dev/null) || cjson="-lcjson"
log=$work/build.log

# A trivial target first: tells "no libFuzzer runtime" from a real build error.
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
  >"$work/probe.c"
if ! "$cc" -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" >"$log" 2>&1; then
  echo "1..0 # SKIP $cc cannot link libFuzzer (install libclang-rt-14-dev)"
  exit 0
fi
rm -f "$work/probe" "$work/probe.c"

echo "1..3"
# shellcheck disable=SC2086
if "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$srcdir/lib/include" -I"${top_builddir:-.}/lib/include" -I"$srcdir/integrations/curl/include" \
  "$srcdir/tests/fuzz/fuzz_sse.c" "$srcdir/integrations/curl/sse.c" "$srcdir/integrations/curl/chat_stream.c" \
  $cjson -o "$work/fuzz_sse" >>"$log" 2>&1; then
  echo "ok 1 - build fuzz_sse with $cc -fsanitize=fuzzer,address,undefined"
else
  echo "not ok 1 - build fuzz_sse"
  sed 's/^/# /' "$log" | tail -20
  echo "not ok 2 - seed corpus # SKIP no binary"
  echo "not ok 3 - fuzz for ${seconds}s # SKIP no binary"
  exit 1
fi

# Seeds: every fixture, behind the 3-byte header (split position, mode):
# split in the middle, plain and with a small max_event_bytes; and as
# add_data payloads.
seeds=$work/seeds
rm -rf "$seeds"
mkdir -p "$seeds"
i=0
for f in "$srcdir"/tests/data/sse/*.sse; do
  [ -f "$f" ] || continue
  i=$((i + 1))
  for mode in '\000' '\003' '\200'; do
    out=$seeds/$(basename "$f" .sse)-$(printf '%s' "$mode" | tr -d '\\')
    { printf '\000\100'; printf "$mode"; cat "$f"; } >"$out"
  done
done
# The seeds must all pass before fuzzing (a regression run, -runs=0).
if "$work/fuzz_sse" -runs=0 "$seeds" >"$work/seeds.log" 2>&1; then
  echo "ok 2 - $i fixtures x 3 modes pass as seeds"
else
  echo "not ok 2 - seeds"
  sed 's/^/# /' "$work/seeds.log" | tail -30
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
flog=$work/fuzz.log
if [ "$jobs" -gt 1 ]; then par="-jobs=$jobs -workers=$jobs"; else par=""; fi
if [ "$seconds" -gt 0 ]; then
  what="fuzz_sse ran ${seconds}s without a crash"
  # shellcheck disable=SC2086
  (cd "$work" && ./fuzz_sse -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$work/artifacts/" -print_final_stats=1 $par corpus seeds) >"$flog" 2>&1
else
  what="fuzz_sse replayed the corpus ($(ls "$work/corpus" | wc -l) inputs) without a crash"
  (cd "$work" && ./fuzz_sse -runs=0 -timeout=10 -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
    corpus seeds) >"$flog" 2>&1
fi
rc=$?
stats=$(grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$flog" | tr '\n' ' ')
cov=$(grep -E '#[0-9]+.*(DONE|pulse)' "$flog" | tail -1)
if [ $rc -eq 0 ]; then
  echo "ok 3 - $what"
  echo "# $stats"
  [ -n "$cov" ] && echo "# $cov"
  echo "# corpus: $(ls "$work/corpus" | wc -l) inputs in $work/corpus"
else
  echo "not ok 3 - fuzz_sse found a crash (exit $rc)"
  grep -E 'ERROR|SUMMARY|Test unit written|abort|split at' "$flog" | head -20 | sed 's/^/# /'
  for a in "$work"/artifacts/*; do
    [ -f "$a" ] && echo "# reproduce: $work/fuzz_sse $a"
  done
  exit 1
fi
exit 0
