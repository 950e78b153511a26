#!/bin/sh
# tests/bench/bench_callgrind.sh: instructions per span under callgrind
# (repeatable, unlike wall-clock on a shared VM).  Each named workload of
# bench_core (see wl_* there) runs twice with different sizes; the
# difference divided by the extra spans cancels start-up.  "app" counts only
# the calling thread (inside the workload function); "total" adds the export
# thread's work per span.  Run from the build directory (make bench does).
#   bench_callgrind.sh            every figure
#   bench_callgrind.sh NAME...    only these app-thread workloads
set -u
command -v valgrind > /dev/null || { echo "# valgrind not installed: callgrind figures skipped"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
B=./tests/bench/bench_core
cg() { # $1 extra callgrind args, then the program's arguments
  a=$1
  shift
  ./libtool --mode=execute valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" $a \
    "$B" "$@" > /dev/null 2>&1
  awk '/^summary:|^totals:/{print $2; exit}' "$tmp/cg.out"
}
# per_span NAME SMALL LARGE [total]: instructions per span of workload NAME.
per_span() {
  if [ "${4:-}" = total ]; then t=""; else t="--toggle-collect=wl_$1"; fi
  a=$(cg "$t" --cg "$1" "$2") b=$(cg "$t" --cg "$1" "$3")
  echo $(( (b - a) / ($3 - $2) ))
}

if [ $# -gt 0 ]; then
  for w in "$@"; do echo "instr_app_$w $(per_span "$w" 20000 100000) instr/span"; done
  exit 0
fi

block=$(per_span block1 20000 100000)
echo "instr_app_block1 $block instr/span (block scope, 1-span traces: start + 2 attributes + end)"
echo "instr_total_block1 $(per_span block1 20000 100000 total) instr/span (with the export thread)"
echo "instr_app_tree5 $(per_span tree5 20000 100000) instr/span (root + 4 children)"
echo "instr_total_tree5 $(per_span tree5 20000 100000 total) instr/span (with the export thread)"
f=$(per_span func1 20000 100000)
echo "instr_app_func1 $f instr/span (function scope; $(echo "$f $block" | awk '{printf "%.2f", $1/$2}')x block scope)"
c=$(per_span client1 20000 100000)
echo "instr_app_client1 $c instr/span (client API, 1-span traces; $(echo "$c $block" | awk '{printf "%.2f", $1/$2}')x block scope)"
t5=$(per_span tree5 20000 100000)
c5=$(per_span client5 20000 100000)
echo "instr_app_client5 $c5 instr/span (client API, root + 4 children by id; $(echo "$c5 $t5" | awk '{printf "%.2f", $1/$2}')x tree5)"
for v in val100 val1k val10k; do
  n=$(per_span $v 5000 25000)
  echo "instr_app_$v $n instr/span (+$((n - block)) over block1)"
done
a0=$(per_span attr0 20000 100000)
echo "instr_app_attr0 $a0 instr/span (no attributes)"
for ty in str int bool; do
  n=$(per_span attr2_$ty 20000 100000)
  echo "instr_attr_$ty $(( (n - a0) / 2 )) instr/attribute"
done
echo "instr_app_disabled $(per_span disabled 200000 1000000) instr/span (tracing disabled)"
