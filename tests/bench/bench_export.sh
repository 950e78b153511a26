#!/bin/sh
# tests/bench/bench_export.sh: export figures (name value unit).
#   - traces/s delivered to a sink that only counts bytes (our side alone),
#     through the OTLP exporter and through the MLflow exporter's protocol;
#   - traces/s delivered to a real MLflow server on loopback (when the test
#     venv with MLflow exists: tests/.venv);
#   - ns per span on the app thread with the receiver up, slow and down;
#   - the export queue: bytes per GenAI trace, a 100k-trace burst with
#     defaults (tests/bench/bench_delivery).
# The comparison with MLflow's Python SDK on a real server is
# `make bench-mlflow` (tests/bench/bench_mlflow.py: minutes, and PostgreSQL).
# Run from the build directory (make bench does).
set -u
B=./tests/bench
out=$(mktemp -d)
trap 'kill $SINK $SLOW $SRV 2>/dev/null; rm -rf "$out"' EXIT INT TERM
SINK= SLOW= SRV=

start_sink() { # $1: extra args; sets PORT and PID
  "$B/otlp-sink" $1 > "$out/sink.$$" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$out/sink.$$")
    [ -n "$PORT" ] && return 0
    sleep 0.05
  done
  return 1
}

# The export queue: bytes one GenAI trace holds, and a 100k-trace burst to
# the file store with default settings (nothing may be dropped).
"$B/bench_delivery" --trace-bytes 20000
"$B/bench_delivery" --burst 100000 "$out/burst.jsonl"

export MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE=131072 MLTRACE_LOG_LEVEL=error MLTRACE_SPOOL_DIR="$out/spool"
start_sink "" && SINK=$PID && sink=$PORT
set -- $(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:$sink/v1/traces $B/bench_core --export-genai 60000)
echo "export_otlp_sink_traces_per_sec $1 traces/s"
echo "export_otlp_sink_failed $(( $3 + $4 )) traces"
set -- $(MLFLOW_TRACKING_URI=http://127.0.0.1:$sink $B/bench_core --export-genai 20000)
echo "export_mlflow_protocol_sink_traces_per_sec $1 traces/s"

echo "span_ns_receiver_up $(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:$sink/v1/traces $B/bench_core --hot-env 1000000) ns/span"
start_sink "--delay-ms 2000" && SLOW=$PID
echo "span_ns_receiver_slow $(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:$PORT/v1/traces $B/bench_core --hot-env 1000000) ns/span"
echo "span_ns_receiver_down $(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:9/v1/traces $B/bench_core --hot-env 1000000) ns/span"

venv=./tests/.venv
if [ -x "$venv/bin/mlflow" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  MLFLOW_DISABLE_TELEMETRY=true "$venv/bin/mlflow" server --backend-store-uri "sqlite:///$out/db" \
    --host 127.0.0.1 --port "$port" --workers 1 --artifacts-destination "$out/art" > "$out/srv.log" 2>&1 &
  SRV=$!
  for _ in $(seq 1 300); do curl -s "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break; sleep 0.2; done
  set -- $(MLFLOW_TRACKING_URI=http://127.0.0.1:$port $B/bench_core --export-genai 2000)
  echo "export_mlflow_server_traces_per_sec $1 traces/s"
  echo "export_mlflow_server_failed $(( $3 + $4 )) traces"
  echo "span_ns_mlflow_server_up $(MLFLOW_TRACKING_URI=http://127.0.0.1:$port $B/bench_core --hot-env 200000) ns/span"
  kill $SRV 2>/dev/null; wait $SRV 2>/dev/null; SRV=
else
  echo "# no tests/.venv with MLflow: real-server figures skipped (run make check first)"
fi
