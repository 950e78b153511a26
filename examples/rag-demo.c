/* examples/rag-demo.c: a RAG-style pipeline traced at all three levels.
 *
 *   - function scope (MLT_TRACE_FUNCTION): the pipeline steps, like @mlflow.trace
 *   - block scope (MLT_SPAN_SCOPE): a reranking block, like `with mlflow.start_span()`
 *   - client API (mlt_client_*): an evaluation trace driven by explicit ids
 *
 * Generation streams its answer chunk by chunk (one span event per chunk, the
 * output is the assembled text); one question takes the error path.  Traces go
 * to the embedded default, a JSONL file (MLTRACE_FILE, default traces.jsonl);
 * view them with `mltrace show`.
 */
#include <mltrace/mltrace.h>

#include <stdio.h>
#include <string.h>

typedef struct doc {
  const char *id;
  const char *text;
  double score;
} doc;

static const doc corpus[] = {
    {"d1", "MLflow is an open source platform for the machine learning lifecycle.", 0},
    {"d2", "MLflow Tracing records the inputs, outputs and metadata of each step.", 0},
    {"d3", "libevent is an event notification library.", 0},
    {"d4", "Traces are made of spans; each span has a type such as LLM or RETRIEVER.", 0},
};

/* Retrieval: score documents by shared words (a stand-in for a vector store). */
static int retrieve(const char *query, doc *out, int k) {
  MLT_TRACE_FUNCTION(MLT_SPAN_RETRIEVER);
  mlt_span_set_inputs_fields(mlt_fn_span, (mlt_attr[]){MLT_ATTR_STR("query", query), MLT_ATTR_INT("k", k)}, 2);
  int n = 0;
  for (size_t i = 0; i < sizeof corpus / sizeof *corpus && n < k; i++) {
    doc d = corpus[i];
    d.score = 0;
    char word[32];
    const char *p = query;
    while (sscanf(p, "%31s", word) == 1) {
      if (strlen(word) > 3 && strstr(d.text, word)) d.score += 1.0;
      p = strstr(p, word) + strlen(word);
    }
    if (d.score > 0) out[n++] = d;
  }
  cJSON *docs = cJSON_CreateArray();
  for (int i = 0; i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", out[i].id);
    cJSON_AddNumberToObject(o, "score", out[i].score);
    cJSON_AddItemToArray(docs, o);
  }
  mlt_span_set_outputs(mlt_fn_span, docs); /* takes ownership */
  return n;
}

/* Generation: "streams" tokens, recorded as chunks of the LLM span. */
static int generate(const char *question, const doc *docs, int n, char *answer, size_t cap) {
  MLT_TRACE_FUNCTION_NAMED("generate", MLT_SPAN_CHAT_MODEL);
  char in[512];
  snprintf(in, sizeof in,
           "{\"model\": \"demo-llm\", \"messages\": [{\"role\": \"system\", \"content\": \"Answer from the context.\"}, "
           "{\"role\": \"user\", \"content\": \"%s\"}]}",
           question);
  mlt_span_set_inputs_json(mlt_fn_span, in);
  mlt_span_set_attr_str(mlt_fn_span, "mlflow.llm.model", "demo-llm");
  mlt_span_set_attr_json(mlt_fn_span, "mlflow.message.format", "\"openai\"");
  if (n == 0) {
    mlt_span_record_error(mlt_fn_span, "NoContextError", "no document matched the question");
    return -1;
  }
  answer[0] = '\0';
  const char *src = docs[0].text;
  size_t len = strlen(src);
  for (size_t off = 0; off < len; off += 8) {
    size_t take = len - off < 8 ? len - off : 8;
    mlt_span_add_chunk_text(mlt_fn_span, src + off, take); /* one event per chunk */
    strncat(answer, src + off, cap - strlen(answer) - 1 < take ? cap - strlen(answer) - 1 : take);
  }
  mlt_span_set_attr_json(mlt_fn_span, "mlflow.chat.tokenUsage",
                         "{\"input_tokens\": 42, \"output_tokens\": 17, \"total_tokens\": 59}");
  return 0;
}

static int answer_question(const char *question) {
  MLT_TRACE_FUNCTION_NAMED("answer_question", MLT_SPAN_CHAIN);
  mlt_span_set_inputs_fields(mlt_fn_span, (mlt_attr[]){MLT_ATTR_STR("question", question)}, 1);
  mlt_update_current_trace(MLT_TRACE_UPDATE(.tags = MLT_KV("app", "rag-demo"), .session_id = "demo-session",
                                            .user_id = "demo-user"));
  doc docs[4];
  int n = retrieve(question, docs, 4);
  {
    /* Block scope: rerank, the context-manager style. */
    MLT_SPAN_SCOPE(rr, "rerank", MLT_SPAN_RERANKER);
    mlt_span_set_inputs_fields(rr, (mlt_attr[]){MLT_ATTR_INT("candidates", n)}, 1);
    for (int i = 1; i < n; i++)
      for (int j = i; j > 0 && docs[j].score > docs[j - 1].score; j--) {
        doc t = docs[j];
        docs[j] = docs[j - 1];
        docs[j - 1] = t;
      }
    mlt_span_set_outputs_json(rr, n ? "\"sorted by score\"" : "\"nothing to rank\"");
  }
  char answer[256];
  if (generate(question, docs, n, answer, sizeof answer) != 0) {
    mlt_span_set_status(mlt_fn_span, MLT_STATUS_ERROR, "generation failed");
    return -1;
  }
  mlt_span_set_outputs_text(mlt_fn_span, answer, strlen(answer));
  return 0;
}

/* The client API: explicit ids, as with MlflowClient. */
static void evaluate(void) {
  mlt_client_span root, judge;
  if (mlt_client_start_trace("evaluate", MLT_SPAN_EVALUATOR, "{\"dataset\": \"demo\", \"rows\": 2}", &root) != MLT_OK)
    return;
  mlt_client_start_span(root.trace_id, root.span_id, "judge", MLT_SPAN_LLM, "{\"criteria\": \"relevance\"}", &judge);
  mlt_client_end_span(root.trace_id, judge.span_id, "{\"score\": 0.9}", MLT_STATUS_OK, NULL);
  mlt_client_end_trace(root.trace_id, "{\"mean_score\": 0.9}", MLT_STATUS_OK, NULL);
}

int main(void) {
  int rc = mlt_init(NULL); /* environment and defaults: the local file store */
  if (rc != MLT_OK) {
    fprintf(stderr, "mlt_init: %s\n", mlt_strerror(rc));
    return 1;
  }
  answer_question("What is MLflow Tracing?");
  answer_question("Who won the 1998 world cup?"); /* error path: nothing retrieved */
  evaluate();
  char last[MLT_TRACE_ID_SIZE];
  if (mlt_get_last_active_trace_id(last, sizeof last) == MLT_OK) printf("last trace: %s\n", last);
  rc = mlt_shutdown(5000);
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  printf("exported %llu traces (%llu spans), dropped %llu, failed %llu\n", (unsigned long long)st.traces_exported,
         (unsigned long long)st.spans_exported, (unsigned long long)st.traces_dropped,
         (unsigned long long)st.traces_failed);
  return rc == MLT_OK ? 0 : 1;
}
