// tests/bench/peer_otel.js: bench_peers.sh's workloads with Node's
// @opentelemetry/sdk-trace-base (installed into the build tree by
// bench_peers.sh; not part of the project).  Same workloads as
// `bench_core --peer`:
//   node peer_otel.js spans N        1-span traces "llm.call" with model="gpt-x"
//                                    and tokens=42, BatchSpanProcessor + an
//                                    exporter that drops what it gets
//   node peer_otel.js genai N PATH   GenAI traces (root + 4 children with the
//                                    same JSON inputs/outputs) to a JSON-lines file
// Node runs the processor on the same thread: the loops yield every 256
// spans so that it exports.  Prints: wall ns/span, process CPU ns/span,
// bytes/span written, spans the processor dropped.
'use strict';
const fs = require('fs');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { ExportResultCode } = require('@opentelemetry/core');
const { context, trace } = require('@opentelemetry/api');

const IN = '{"messages": [{"role": "user", "content": "What does the Q3 report say about EMEA revenue?"}], "temperature": 0.2}';
const OUT = '{"choices": [{"message": {"role": "assistant", "content": "EMEA revenue grew 12% quarter over quarter."}}]}';

class DropExporter {
  constructor() { this.n = 0; this.bytes = 0; }
  export(spans, done) { this.n += spans.length; done({ code: ExportResultCode.SUCCESS }); }
  shutdown() { return Promise.resolve(); }
  forceFlush() { return Promise.resolve(); }
}
class JsonlExporter {
  constructor(path) { this.fd = fs.openSync(path, 'w'); this.n = 0; this.bytes = 0; }
  export(spans, done) {
    let out = '';
    for (const s of spans) {
      const c = s.spanContext();
      out += JSON.stringify({
        trace_id: c.traceId, span_id: c.spanId,
        parent_span_id: s.parentSpanContext ? s.parentSpanContext.spanId : null, name: s.name,
        start_time_unix_nano: s.startTime, end_time_unix_nano: s.endTime, attributes: s.attributes, status: s.status,
      }) + '\n';
    }
    const b = Buffer.from(out);
    fs.writeSync(this.fd, b);
    this.n += spans.length;
    this.bytes += b.length;
    done({ code: ExportResultCode.SUCCESS });
  }
  shutdown() { fs.closeSync(this.fd); return Promise.resolve(); }
  forceFlush() { return Promise.resolve(); }
}

const yieldNow = () => new Promise((r) => setImmediate(r));
const TYPES = ['RETRIEVER', 'RERANKER', 'CHAT_MODEL', 'PARSER'];
const NAMES = ['retrieve', 'rerank', 'generate', 'parse'];

async function main() {
  const mode = process.argv[2], n = Number(process.argv[3]);
  const ex = mode === 'genai' ? new JsonlExporter(process.argv[4]) : new DropExporter();
  const bsp = new BatchSpanProcessor(ex, { maxQueueSize: 8192, maxExportBatchSize: 512, scheduledDelayMillis: 200 });
  const provider = new BasicTracerProvider({ spanProcessors: [bsp] });
  const tracer = provider.getTracer('bench');
  const spanLoop = async (count) => {
    for (let i = 0; i < count; i++) {
      const s = tracer.startSpan('llm.call');
      s.setAttribute('model', 'gpt-x');
      s.setAttribute('tokens', 42);
      s.end();
      if ((i & 255) === 255) await yieldNow();
    }
  };
  const genaiLoop = async (count) => {
    for (let i = 0; i < count; i++) {
      const root = tracer.startSpan('rag.pipeline');
      root.setAttribute('mlflow.spanType', '"CHAIN"');
      root.setAttribute('mlflow.spanInputs', IN);
      root.setAttribute('request', i);
      const ctx = trace.setSpan(context.active(), root);
      for (let k = 0; k < 4; k++) {
        const c = tracer.startSpan(NAMES[k], {}, ctx);
        c.setAttribute('mlflow.spanType', '"' + TYPES[k] + '"');
        c.setAttribute('mlflow.spanInputs', IN);
        c.setAttribute('mlflow.spanOutputs', OUT);
        c.setAttribute('model', 'gpt-4o-mini');
        c.end();
      }
      root.setAttribute('mlflow.spanOutputs', OUT);
      root.end();
      if (i % 50 === 49) await yieldNow();
    }
  };
  const loop = mode === 'genai' ? genaiLoop : spanLoop;
  await loop(Math.floor(n / 10)); // warm up (JIT)
  await bsp.forceFlush();
  const n0 = ex.n, b0 = ex.bytes;
  const c0 = process.cpuUsage(), w0 = process.hrtime.bigint();
  await loop(n);
  await bsp.forceFlush();
  const w = Number(process.hrtime.bigint() - w0);
  const cu = process.cpuUsage(c0);
  const spans = mode === 'genai' ? 5 * n : n;
  const got = ex.n - n0;
  console.log(`${(w / spans).toFixed(1)} ${((cu.user + cu.system) * 1000 / spans).toFixed(1)} ` +
    `${got ? ((ex.bytes - b0) / got).toFixed(0) : 0} ${spans - got}`);
  await provider.shutdown();
}
main();
