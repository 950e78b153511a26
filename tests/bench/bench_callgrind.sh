#!/bin/sh
# tests/bench/bench_callgrind.sh: instructions per span under callgrind
# (repeatable, unlike wall-clock on a shared VM), then the export side.
# Each named workload of bench_core (see wl_* there) runs twice with
# different sizes; the difference divided by the extra spans cancels
# start-up.  "app" counts only the calling thread (inside the workload
# function); "total" adds the export thread's work per span.  Run from the
# build directory (make bench does).
#   bench_callgrind.sh            every figure
#   bench_callgrind.sh --export   only the export side
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

if [ $# -gt 0 ] && [ "$1" != --export ]; then
  for w in "$@"; do echo "instr_app_$w $(per_span "$w" 20000 100000) instr/span"; done
  exit 0
fi

app_figures() {
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
# The copy of a value is memcpy's rep movsb, which callgrind counts once per
# byte: the figure without memcpy/memmove/strlen (the passes over the value's
# bytes) shows what is not proportional to its size.
nocopy() { # total minus memcpy/memmove, of the last cg run
  callgrind_annotate --auto=no "$tmp/cg.out" 2> /dev/null | awk '
    /PROGRAM TOTALS/ {gsub(",", "", $1); t = $1}
    /:__(mem(cpy|move)|strlen)/ && $2 ~ /^\(/ {gsub(",", "", $1); c += $1}
    END {print t - c}'
}
for v in val100 val1k val10k; do
  n=$(per_span $v 5000 25000)
  cg "--toggle-collect=wl_$v" --cg $v 5000 > /dev/null
  nc_a=$(nocopy)
  cg "--toggle-collect=wl_$v" --cg $v 25000 > /dev/null
  nc_b=$(nocopy)
  echo "instr_app_$v $n instr/span (+$((n - block)) over block1; $(( (nc_b - nc_a) / 20000 )) without memcpy and strlen)"
done
a0=$(per_span attr0 20000 100000)
echo "instr_app_attr0 $a0 instr/span (no attributes)"
for ty in str int bool; do
  n=$(per_span attr2_$ty 20000 100000)
  echo "instr_attr_$ty $(( (n - a0) / 2 )) instr/attribute"
done
echo "instr_app_disabled $(per_span disabled 200000 1000000) instr/span (tracing disabled)"
}
[ "${1:-}" = --export ] || app_figures

# Export side.  The export thread (callgrind toggled on export_main; GenAI
# traces of 5 spans in rounds of 100 with a flush, 200 vs 1000 traces) to
# the JSONL store, and the OTLP encoder alone (to a sink that only counts).
ex_a=$(cg "--toggle-collect=export_main" --cg-export file 200)
ex_b=$(cg "--toggle-collect=export_main" --cg-export file 1000)
echo "instr_export_file $(( (ex_b - ex_a) / 4000 )) instr/span (export thread to the JSONL store, GenAI spans)"
st_a=$(cg "--toggle-collect=export_main" --cg-export file-stream 200)
st_b=$(cg "--toggle-collect=export_main" --cg-export file-stream 1000)
echo "instr_export_stream $(( (st_b - st_a) / (800 * 16) )) instr/chunk (export thread to the JSONL store, streamed LLM traces: 16 OpenAI-style chunk events, 2 spans, per chunk)"
set -- $("$B" --cg-export file 20000)
echo "export_file_cpu_ns $2 ns/span (export thread CPU time, same workload)"
echo "export_file_bytes_per_span $1 bytes"
"./tests/bench/otlp-sink" > "$tmp/sink" 2>&1 &
sink=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/sink")
  [ -n "$port" ] && break
  sleep 0.05
done
if [ -n "$port" ]; then
  export OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:$port/v1/traces" MLTRACE_SPOOL=off
  ot_a=$(cg "--toggle-collect=mlt__otlp_encode" --cg-export env 200)
  ot_b=$(cg "--toggle-collect=mlt__otlp_encode" --cg-export env 1000)
  echo "instr_otlp_encode $(( (ot_b - ot_a) / 4000 )) instr/span (OTLP protobuf encoding, GenAI spans)"
  unset OTEL_EXPORTER_OTLP_TRACES_ENDPOINT MLTRACE_SPOOL
fi
kill $sink 2> /dev/null
venv=./tests/.venv
if [ -x "$venv/bin/python" ]; then
  "$B" --cg-export file 10 "$tmp/genai.jsonl" > /dev/null
  "$venv/bin/python" "$(dirname "$0")/mlflow_bytes.py" "$tmp/genai.jsonl" 2> /dev/null ||
    echo "# MLflow's Trace.to_json() size: the venv's MLflow failed"
else
  echo "# no tests/.venv with MLflow: MLflow's Trace.to_json() size skipped (make check creates it)"
fi
