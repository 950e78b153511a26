#!/bin/sh
# tests/bench/bench_callgrind.sh: instructions per span under callgrind
# (repeatable, unlike wall-clock on a shared VM).  The span workload of
# bench_core (traces of 1 root + 4 children, 2 small attributes each) run
# twice with different sizes; the difference divided by the extra spans
# cancels start-up.  "app" counts only the calling thread (inside
# workload()); "total" adds the export thread's work per span.
set -u
command -v valgrind > /dev/null || { echo "# valgrind not installed: callgrind figures skipped"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # $1 spans, $2 extra callgrind args
  ./libtool --mode=execute valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" $2 \
    ./tests/bench/bench_core --callgrind "$1" > /dev/null 2>&1
  awk '/^summary:|^totals:/{print $2; exit}' "$tmp/cg.out"
}
a=$(run 50000 "") b=$(run 250000 "")
echo "span_instructions_total $(( (b - a) / 200000 )) instr/span"
a=$(run 50000 "--toggle-collect=workload") b=$(run 250000 "--toggle-collect=workload")
echo "span_instructions_app_thread $(( (b - a) / 200000 )) instr/span"
