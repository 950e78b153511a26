#!/bin/sh
# tests/bench/bench_peers.sh: `make bench-peers`.  The same two workloads with
# our library (bench_core --peer), Node's @opentelemetry/sdk-trace-base and
# Go's OpenTelemetry SDK, the sides alternating, REPS (default 5)
# repetitions; prints each side's min and median and our min/median ratio
# to each peer.  A benchmark, never a test: no figure is asserted.
#
# Workloads (tests/bench/peer_otel.js and peer_otel.go are our programs for
# the peers' SDKs): "spans" -- 1-span traces llm.call with model="gpt-x" and
# tokens=42, each SDK's batch processor and an exporter that drops;
# "genai" -- root + 4 children with the same JSON inputs/outputs to a
# JSON-lines file on tmpfs (we write MLflow's Trace JSON; the peers write
# their spans with JSON.stringify / encoding/json).  Figures: process CPU
# time per span (every thread, the export work included) and wall time.
#
# The peers are installed into the build tree (tests/bench/peers/, not
# committed), on first use:
#   Node: npm install of @opentelemetry/sdk-trace-base@2.12.1,
#         @opentelemetry/core@2.12.1, @opentelemetry/api@1.9.1 (npm registry);
#   Go:   the SDK from Debian (apt-get install golang-opentelemetry-otel-dev:
#         OTel Go 1.1.0 on bookworm), built in GOPATH mode with the `go` on
#         PATH (Debian's golang-go is 1.19; a newer toolchain builds it too).
# A side whose tools are missing is skipped with a note.
set -u
B=./tests/bench/bench_core
src=$(dirname "$0")
P=./tests/bench/peers
REPS=${REPS:-5}
NS=${NS:-1000000} # spans per run, "spans"
NG=${NG:-20000}   # traces per run, "genai"
tmpd=/tmp
[ -w /dev/shm ] && tmpd=/dev/shm
mkdir -p "$P"
res=$(mktemp -d)
trap 'rm -rf "$res" "$tmpd/mlt-peer-$$".*' EXIT INT TERM

sides="ours"
if command -v node > /dev/null && command -v npm > /dev/null; then
  if [ ! -d "$P/node/node_modules/@opentelemetry/sdk-trace-base" ]; then
    echo "# installing Node's OpenTelemetry SDK into $P/node (npm registry)"
    npm install --no-audit --no-fund --prefix "$P/node" @opentelemetry/sdk-trace-base@2.12.1 \
      @opentelemetry/core@2.12.1 @opentelemetry/api@1.9.1 > "$P/npm.log" 2>&1 || echo "# npm install failed: see $P/npm.log"
  fi
  if [ -d "$P/node/node_modules/@opentelemetry/sdk-trace-base" ]; then
    cp "$src/peer_otel.js" "$P/node/peer_otel.js"
    sides="$sides node"
  fi
else
  echo "# node/npm not found: Node side skipped"
fi
GOSRC=/usr/share/gocode
if command -v go > /dev/null && [ -d "$GOSRC/src/go.opentelemetry.io/otel/sdk/trace" ]; then
  mkdir -p "$P/go/src/otelpeer"
  cp "$src/peer_otel.go" "$P/go/src/otelpeer/main.go"
  g=$(cd "$P/go" && pwd)
  if (cd "$P/go" && GO111MODULE=off GOFLAGS= GOPATH="$g:$GOSRC" GOCACHE="$g/cache" go build -o "$g/otelpeer" otelpeer) \
    > "$P/go-build.log" 2>&1; then
    sides="$sides go"
    echo "# Go: $(go version | cut -d' ' -f3), OpenTelemetry Go SDK from $GOSRC (Debian golang-opentelemetry-otel-dev)"
  else
    echo "# Go side did not build: see $P/go-build.log"
  fi
else
  echo "# go or Debian's golang-opentelemetry-otel-dev not found: Go side skipped"
fi

run() { # side workload -> "wall cpu bytes dropped"
  case $1 in
    ours) "$B" --peer "$2" "$3" "$tmpd/mlt-peer-$$.jsonl" ;;
    node) node "$P/node/peer_otel.js" "$2" "$3" "$tmpd/mlt-peer-$$.jsonl" ;;
    go) "$P/go/otelpeer" "$2" "$3" "$tmpd/mlt-peer-$$.jsonl" ;;
  esac
  rm -f "$tmpd/mlt-peer-$$.jsonl"
}

# alternate: each repetition runs every side once, starting with a different one
for rep in $(seq 1 "$REPS"); do
  order=$sides
  k=$((rep % $(echo $sides | wc -w)))
  while [ "$k" -gt 0 ]; do
    order="$(echo $order | cut -d' ' -f2-) $(echo $order | cut -d' ' -f1)"
    k=$((k - 1))
  done
  for s in $order; do
    run "$s" spans "$NS" >> "$res/spans.$s"
    run "$s" genai "$NG" >> "$res/genai.$s"
  done
done

stat() { # file column -> "min median"
  cut -d' ' -f"$2" "$1" | sort -g | awk '{v[NR] = $1} END {
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f %.1f", v[1], m}'
}
for w in spans genai; do
  for s in $sides; do
    set -- $(stat "$res/$w.$s" 2)
    echo "peer_${w}_cpu_ns_$s min $1 median $2 ns/span (process CPU; $(stat "$res/$w.$s" 1 | cut -d' ' -f2) ns/span wall median; $(stat "$res/$w.$s" 3 | awk '{printf "%.0f", $2}') B/span written; $(stat "$res/$w.$s" 4 | awk '{printf "%.0f", $2}') spans dropped)"
  done
  set -- $(stat "$res/$w.ours" 2)
  omin=$1 omed=$2
  for s in $sides; do
    [ "$s" = ours ] && continue
    set -- $(stat "$res/$w.$s" 2)
    echo "peer_${w}_ratio_ours_to_$s min $(echo "$omin $1" | awk '{printf "%.2f", $1 / $2}') median $(echo "$omed $2" | awk '{printf "%.2f", $1 / $2}') (our CPU per span / theirs, $REPS runs each)"
  done
done
