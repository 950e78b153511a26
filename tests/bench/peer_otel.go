// tests/bench/peer_otel.go: bench_peers.sh's workloads with Go's OpenTelemetry
// SDK (Debian's golang-opentelemetry-otel-dev, built in GOPATH mode by
// bench_peers.sh; not part of the project).  Same workloads as
// `bench_core --peer`:
//
//	otelpeer spans N        1-span traces "llm.call" with model="gpt-x" and
//	                        tokens=42, batch processor + an exporter that drops
//	otelpeer genai N PATH   GenAI traces (root + 4 children with the same JSON
//	                        inputs/outputs) to a JSON-lines file
//
// The batch processor blocks instead of dropping when its queue is full (as
// our queue does).  Prints: wall ns/span, process CPU ns/span, bytes/span
// written, spans dropped.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

const in = `{"messages": [{"role": "user", "content": "What does the Q3 report say about EMEA revenue?"}], "temperature": 0.2}`
const out = `{"choices": [{"message": {"role": "assistant", "content": "EMEA revenue grew 12% quarter over quarter."}}]}`

type dropExp struct {
	mu    sync.Mutex
	n     int
	bytes int
	w     *bufio.Writer
	f     *os.File
}

type jspan struct {
	TraceID  string                 `json:"trace_id"`
	SpanID   string                 `json:"span_id"`
	ParentID string                 `json:"parent_span_id,omitempty"`
	Name     string                 `json:"name"`
	Start    int64                  `json:"start_time_unix_nano"`
	End      int64                  `json:"end_time_unix_nano"`
	Attrs    map[string]interface{} `json:"attributes"`
	Status   string                 `json:"status"`
}

func (e *dropExp) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n += len(spans)
	if e.w == nil {
		return nil
	}
	for _, s := range spans {
		js := jspan{TraceID: s.SpanContext().TraceID().String(), SpanID: s.SpanContext().SpanID().String(),
			Name: s.Name(), Start: s.StartTime().UnixNano(), End: s.EndTime().UnixNano(),
			Attrs: map[string]interface{}{}, Status: s.Status().Code.String()}
		if s.Parent().IsValid() {
			js.ParentID = s.Parent().SpanID().String()
		}
		for _, kv := range s.Attributes() {
			js.Attrs[string(kv.Key)] = kv.Value.AsInterface()
		}
		b, err := json.Marshal(&js)
		if err != nil {
			return err
		}
		e.w.Write(b)
		e.w.WriteByte('\n')
		e.bytes += len(b) + 1
	}
	return e.w.Flush()
}
func (e *dropExp) Shutdown(ctx context.Context) error { return nil }

func cpuNow() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

var names = []string{"retrieve", "rerank", "generate", "parse"}
var types = []string{`"RETRIEVER"`, `"RERANKER"`, `"CHAT_MODEL"`, `"PARSER"`}

func main() {
	mode := os.Args[1]
	n, _ := strconv.Atoi(os.Args[2])
	exp := &dropExp{}
	if mode == "genai" {
		f, err := os.Create(os.Args[3])
		if err != nil {
			panic(err)
		}
		exp.f = f
		exp.w = bufio.NewWriterSize(f, 1<<20)
	}
	var tr trace.Tracer
	ctx := context.Background()
	newProvider := func() *sdktrace.TracerProvider {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBlocking(),
			sdktrace.WithMaxQueueSize(8192), sdktrace.WithMaxExportBatchSize(512)))
		tr = tp.Tracer("bench")
		return tp
	}
	spanLoop := func(count int) {
		for i := 0; i < count; i++ {
			_, s := tr.Start(ctx, "llm.call")
			s.SetAttributes(attribute.String("model", "gpt-x"), attribute.Int64("tokens", 42))
			s.End()
		}
	}
	genaiLoop := func(count int) {
		for i := 0; i < count; i++ {
			rctx, root := tr.Start(ctx, "rag.pipeline")
			root.SetAttributes(attribute.String("mlflow.spanType", `"CHAIN"`), attribute.String("mlflow.spanInputs", in),
				attribute.Int64("request", int64(i)))
			for k := 0; k < 4; k++ {
				_, c := tr.Start(rctx, names[k])
				c.SetAttributes(attribute.String("mlflow.spanType", types[k]), attribute.String("mlflow.spanInputs", in),
					attribute.String("mlflow.spanOutputs", out), attribute.String("model", "gpt-4o-mini"))
				c.End()
			}
			root.SetAttributes(attribute.String("mlflow.spanOutputs", out))
			root.End()
		}
	}
	loop := spanLoop
	spans := n
	if mode == "genai" {
		loop = genaiLoop
		spans = 5 * n
	}
	tp := newProvider() // warm up, then a fresh provider for the measure
	loop(n / 10)
	tp.Shutdown(ctx)
	tp = newProvider()
	exp.mu.Lock()
	n0, b0 := exp.n, exp.bytes
	exp.mu.Unlock()
	c0, w0 := cpuNow(), time.Now()
	loop(n)
	tp.Shutdown(ctx) // drains the queue (ForceFlush of this SDK version may not wait for all)
	w := time.Since(w0).Seconds()
	c := cpuNow() - c0
	exp.mu.Lock()
	got, bytes := exp.n-n0, exp.bytes-b0
	exp.mu.Unlock()
	per := 0.0
	if got > 0 {
		per = float64(bytes) / float64(got)
	}
	fmt.Printf("%.1f %.1f %.0f %d\n", w*1e9/float64(spans), c*1e9/float64(spans), per, spans-got)
	if exp.f != nil {
		exp.f.Close()
	}
}
