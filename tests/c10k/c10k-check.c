/* tests/c10k/c10k-check.c: check every trace examples/c10k-server wrote
 * against what its clients saw (tests/c10k/c10k-load's --out file).
 *
 *   c10k-check --traces traces.jsonl --results results.txt [--expect-traces N]
 *              [--expect-rejected N]
 *
 * For each trace: exactly one root, the request span "GET /ask"; every
 * other span in the same trace id, a child of that root, of a known kind
 * (retrieve x3 from the workers, gather x3 and build_prompt from the loop,
 * chat.completions from curl), and carrying the request id of its own trace
 * (a span that landed in a foreign trace shows the wrong id).  Against the
 * client's record of that request id:
 *  - a complete 200 reply: request span OK, its output == the body the
 *    client received == the LLM span's streamed content == the answer the
 *    upstream gives ("Echo: id=ID q=Q ✓"), every span present;
 *  - a 503: request span ERROR "Overloaded", no LLM call;
 *  - the client hung up: request span ERROR "ClientDisconnected" (or OK when
 *    the reply was complete before the server noticed), the client's bytes
 *    a prefix of the recorded output, the output a prefix of the answer;
 *    the LLM span absent, cancelled, or complete;
 *  - the server closed the connection (SIGTERM): ERROR "ServerShutdown",
 *    with the same prefix rules.
 * Every complete reply has exactly one trace; a hung-up or closed request
 * at most one (it may never have reached the handler); no trace without a
 * request.  --expect-traces: the number of traces the server says it
 * exported (mlt_stats.traces_exported) must be the number in the file.
 * --expect-rejected: the work queue rejections the server counted
 * (mlt_stats.work_queue_rejected) must be the jobs missing from the traces
 * (3 retrieve spans per request, less one per refused job).
 *
 * Prints "name value unit" lines and every failure (the first 20 of each
 * kind); exits 1 when anything is wrong.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "traces.h"

enum { O_OK = 1, O_HANGUP, O_CLOSED };

typedef struct rec {
  uint64_t id; /* 0: empty slot */
  int outcome, status;
  size_t nbytes;
  char *body; /* decoded, NUL-terminated (the first bytes when truncated) */
  size_t body_len;
  int partial_record; /* body longer than recorded */
  int traces;
} rec;

static rec *g_tab;
static size_t g_cap;

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static rec *lookup(uint64_t id, int insert) {
  size_t i = mix(id) & (g_cap - 1);
  while (g_tab[i].id && g_tab[i].id != id) i = (i + 1) & (g_cap - 1);
  if (g_tab[i].id == id) return &g_tab[i];
  return insert ? &g_tab[i] : NULL;
}

static long g_fail_counts[16];
static long g_checks;

enum { F_SPAN, F_TRACE, F_MISSING, F_DUP, F_FOREIGN, F_COUNT };
static const char *const fail_names[] = {"wrong_spans", "wrong_traces", "missing_traces", "duplicate_traces",
                                         "traces_without_request"};

#define CHECK(kind, cond, ...)                                   \
  do {                                                           \
    g_checks++;                                                  \
    if (!(cond)) {                                               \
      if (g_fail_counts[kind]++ < 20) {                          \
        fprintf(stderr, "c10k-check: %s: ", fail_names[kind]);   \
        fprintf(stderr, __VA_ARGS__);                            \
        fputc('\n', stderr);                                     \
      }                                                          \
      ok_ = 0;                                                   \
    }                                                            \
  } while (0)

static int hexval(int c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

static int load_results(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    perror(path);
    return -1;
  }
  size_t n = 0;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) n++;
  g_cap = 1024;
  while (g_cap < n * 2) g_cap *= 2;
  g_tab = calloc(g_cap, sizeof *g_tab);
  rewind(f);
  ssize_t len;
  while ((len = getline(&line, &cap, f)) > 0) {
    unsigned long long id;
    char outcome[16];
    int status;
    size_t nbytes;
    int off = 0;
    if (sscanf(line, "%llu %15s %d %zu %n", &id, outcome, &status, &nbytes, &off) < 4 || id == 0) continue;
    rec *r = lookup(id, 1);
    if (r->id) {
      fprintf(stderr, "c10k-check: request id %llu twice in %s\n", id, path);
      continue;
    }
    r->id = id;
    r->outcome = !strcmp(outcome, "ok") ? O_OK : !strcmp(outcome, "hangup") ? O_HANGUP : O_CLOSED;
    r->status = status;
    r->nbytes = nbytes;
    const char *hex = line + off;
    size_t hl = strspn(hex, "0123456789abcdef");
    r->body = malloc(hl / 2 + 1);
    for (size_t i = 0; i + 1 < hl; i += 2) r->body[i / 2] = (char)(hexval(hex[i]) << 4 | hexval(hex[i + 1]));
    r->body_len = hl / 2;
    r->body[r->body_len] = '\0';
    r->partial_record = hex[hl] == '+';
  }
  free(line);
  fclose(f);
  return 0;
}

/* An attribute's value, parsed (attributes hold JSON text); caller frees. */
static cJSON *attr_json(const cJSON *span, const char *key) {
  const char *v = tu_attr(span, key);
  return v ? cJSON_Parse(v) : NULL;
}

static int attr_str_is(const cJSON *span, const char *key, const char *want) {
  cJSON *j = attr_json(span, key);
  int ok = cJSON_IsString(j) && strcmp(j->valuestring, want) == 0;
  cJSON_Delete(j);
  return ok;
}

static int is_ok(const cJSON *span) { return tu_status_code(span) && !strcmp(tu_status_code(span), "STATUS_CODE_OK"); }
static int err_is(const cJSON *span, const char *type) {
  const char *c = tu_status_code(span);
  size_t n = strlen(type);
  return c && !strcmp(c, "STATUS_CODE_ERROR") && !strncmp(tu_status_msg(span), type, n) && tu_status_msg(span)[n] == ':';
}

static int is_prefix(const char *p, size_t pn, const char *s, size_t sn) { return pn <= sn && memcmp(p, s, pn) == 0; }

static long g_late_chunks, g_refused_jobs;
static long g_traces, g_spans, g_llm_cancelled, g_client_disc, g_shutdown, g_overloaded;

static void check_trace(cJSON *t) {
  int ok_ = 1;
  g_traces++;
  cJSON *spans = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "data"), "spans");
  const char *trace_id = tu_str(cJSON_GetObjectItemCaseSensitive(t, "info"), "trace_id");
  cJSON *root = NULL, *s;
  int roots = 0;
  cJSON_ArrayForEach(s, spans) {
    g_spans++;
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "parent_span_id"))) {
      roots++;
      root = s;
    }
  }
  CHECK(F_TRACE, roots == 1, "%s: %d roots", trace_id, roots);
  if (roots != 1) return;
  CHECK(F_TRACE, tu_str(root, "name") && !strcmp(tu_str(root, "name"), "GET /ask"), "%s: root is %s", trace_id,
        tu_str(root, "name"));
  cJSON *in = attr_json(root, "mlflow.spanInputs");
  const char *uri = tu_str(in, "uri");
  const char *idp = uri ? strstr(uri, "id=") : NULL;
  const char *qp = uri ? strstr(uri, "&q=") : NULL;
  char id[32] = "", q[128] = "";
  if (idp) snprintf(id, sizeof id, "%.*s", (int)strcspn(idp + 3, "&"), idp + 3);
  if (qp) {
    snprintf(q, sizeof q, "%s", qp + 3);
    for (char *c = q; *c; c++)
      if (*c == '+') *c = ' ';
  }
  cJSON_Delete(in);
  uint64_t rid = strtoull(id, NULL, 10);
  rec *r = rid ? lookup(rid, 0) : NULL;
  CHECK(F_FOREIGN, r != NULL, "%s: request id \"%s\" was never sent", trace_id, id);
  if (!r) return;
  r->traces++;
  CHECK(F_DUP, r->traces == 1, "request %s has %d traces", id, r->traces);
  char answer[256];
  snprintf(answer, sizeof answer, "Echo: id=%s q=%s \xE2\x9C\x93", id, q);

  const char *root_tid = tu_str(root, "trace_id"), *root_id = tu_str(root, "span_id");
  int n_retrieve = 0, n_gather = 0, n_build = 0, n_llm = 0, shards = 0;
  cJSON *llm = NULL;
  cJSON_ArrayForEach(s, spans) {
    const char *name = tu_str(s, "name");
    CHECK(F_SPAN, root_tid && tu_str(s, "trace_id") && !strcmp(tu_str(s, "trace_id"), root_tid),
          "%s: span %s in trace %s", trace_id, name, tu_str(s, "trace_id"));
    if (s == root) continue;
    CHECK(F_SPAN, tu_str(s, "parent_span_id") && !strcmp(tu_str(s, "parent_span_id"), root_id),
          "%s: span %s under %s, not the request span", trace_id, name, tu_str(s, "parent_span_id"));
    if (!name) name = "";
    if (!strcmp(name, "retrieve")) {
      n_retrieve++;
      cJSON *ri = attr_json(s, "mlflow.spanInputs");
      const char *rid_s = tu_str(ri, "id");
      cJSON *sh = cJSON_GetObjectItemCaseSensitive(ri, "shard");
      CHECK(F_SPAN, rid_s && !strcmp(rid_s, id), "%s: retrieve span of request %s in the trace of %s", trace_id,
            rid_s, id);
      if (cJSON_IsNumber(sh) && sh->valueint >= 0 && sh->valueint < 3) shards |= 1 << sh->valueint;
      cJSON_Delete(ri);
      CHECK(F_SPAN, is_ok(s), "%s: retrieve span %s", trace_id, tu_status_msg(s));
    } else if (!strcmp(name, "gather") || !strcmp(name, "build_prompt")) {
      if (name[0] == 'g')
        n_gather++;
      else
        n_build++;
      CHECK(F_SPAN, attr_str_is(s, "ask.id", id), "%s: %s span not of request %s", trace_id, name, id);
      CHECK(F_SPAN, is_ok(s), "%s: %s span %s", trace_id, name, tu_status_msg(s));
    } else if (!strcmp(name, "chat.completions")) {
      n_llm++;
      llm = s;
      cJSON *li = attr_json(s, "mlflow.spanInputs");
      cJSON *m1 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(li, "messages"), 1);
      const char *content = tu_str(m1, "content");
      char want[48];
      snprintf(want, sizeof want, "id=%s ", id);
      CHECK(F_SPAN, content && !strncmp(content, want, strlen(want)), "%s: LLM span asked \"%s\", not request %s",
            trace_id, content, id);
      cJSON_Delete(li);
    } else {
      CHECK(F_SPAN, 0, "%s: unexpected span \"%s\"", trace_id, name);
    }
  }
  CHECK(F_TRACE, n_retrieve <= 3 && n_gather <= 3 && n_build <= 1 && n_llm <= 1, "%s: %d/%d/%d/%d spans", trace_id,
        n_retrieve, n_gather, n_build, n_llm);
  CHECK(F_TRACE, n_retrieve == __builtin_popcount(shards), "%s: shards repeated", trace_id);
  /* A job the queue accepted always runs (the queue drains at shutdown) and
   * records its retrieve span; a refused one never does. */
  g_refused_jobs += 3 - n_retrieve;

  /* The request span's output (the reply text as written). */
  cJSON *out = attr_json(root, "mlflow.spanOutputs");
  const char *o = cJSON_IsString(out) ? out->valuestring : "";
  size_t on = strlen(o);
  const char *llm_text = NULL;
  cJSON *lo = llm ? attr_json(llm, "mlflow.spanOutputs") : NULL;
  cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(lo, "choices"), 0),
                                                "message");
  llm_text = tu_str(msg, "content");
  /* The reply the client should get: the LLM's answer, or "busy" when the
   * work queue refused one of its jobs (some retrieve span is missing). */
  if (n_retrieve < 3 && n_llm == 0) snprintf(answer, sizeof answer, "busy\n");
  size_t answer_len = strlen(answer);

  if (r->outcome == O_OK && r->status == 200) {
    CHECK(F_TRACE, is_ok(root), "%s: request %s complete but span %s", trace_id, id, tu_status_msg(root));
    CHECK(F_TRACE, !r->partial_record && on == r->body_len && memcmp(o, r->body, on) == 0,
          "%s: output \"%s\" but the client received \"%s\"", trace_id, o, r->body);
    CHECK(F_TRACE, r->body_len == answer_len && memcmp(r->body, answer, answer_len) == 0,
          "%s: client received \"%s\", expected \"%s\"", trace_id, r->body, answer);
    CHECK(F_TRACE, n_retrieve == 3 && n_gather == 3 && n_build == 1 && n_llm == 1, "%s: %d/%d/%d/%d spans", trace_id,
          n_retrieve, n_gather, n_build, n_llm);
    CHECK(F_TRACE, llm && is_ok(llm), "%s: LLM span %s", trace_id, llm ? tu_status_msg(llm) : "missing");
    CHECK(F_TRACE, llm_text && !strcmp(llm_text, o), "%s: LLM content \"%s\" != output \"%s\"", trace_id, llm_text, o);
  } else if (r->outcome == O_OK && r->status == 503) {
    g_overloaded += err_is(root, "Overloaded");
    CHECK(F_TRACE, err_is(root, "Overloaded"), "%s: 503 but span %s", trace_id, tu_status_msg(root));
    CHECK(F_TRACE, n_llm == 0 && n_retrieve < 3, "%s: 503 after %d retrievals and %d LLM calls", trace_id, n_retrieve,
          n_llm);
    CHECK(F_TRACE, on == r->body_len && memcmp(o, r->body, on) == 0 && !strcmp(o, "busy\n"),
          "%s: 503 output \"%s\", the client received \"%s\"", trace_id, o, r->body);
  } else if (r->outcome == O_HANGUP || r->outcome == O_CLOSED) {
    const char *want = r->outcome == O_HANGUP ? "ClientDisconnected" : "ServerShutdown";
    if (r->outcome == O_HANGUP && is_ok(root)) {
      /* The server wrote the whole reply before it saw the hang-up. */
      CHECK(F_TRACE, on == answer_len && memcmp(o, answer, on) == 0, "%s: complete output \"%s\"", trace_id, o);
    } else {
      CHECK(F_TRACE, err_is(root, want), "%s: %s request ended %s", trace_id,
            r->outcome == O_HANGUP ? "hung-up" : "server-closed", tu_status_msg(root));
      if (err_is(root, want)) *(r->outcome == O_HANGUP ? &g_client_disc : &g_shutdown) += 1;
    }
    CHECK(F_TRACE, is_prefix(r->body, r->body_len, o, on), "%s: client received \"%s\", not a prefix of \"%s\"",
          trace_id, r->body, o);
    CHECK(F_TRACE, is_prefix(o, on, answer, answer_len), "%s: output \"%s\" is not a prefix of the answer", trace_id, o);
    if (llm && !is_ok(llm)) {
      g_llm_cancelled += err_is(llm, "CancelledError");
      CHECK(F_TRACE, err_is(llm, "CancelledError"), "%s: LLM span %s", trace_id, tu_status_msg(llm));
    }
    if (llm && !is_ok(root)) {
      /* The upstream call is cancelled as the request span ends: no token
       * reaches the LLM span after that.  (Times are JSON numbers, parsed
       * as doubles: 256 ns steps; a token is microseconds apart.) */
      const cJSON *end = cJSON_GetObjectItemCaseSensitive(root, "end_time_unix_nano"), *ev;
      long late = 0;
      cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(llm, "events")) {
        const char *en = tu_str(ev, "name");
        const cJSON *tm = cJSON_GetObjectItemCaseSensitive(ev, "time_unix_nano");
        if (en && !strncmp(en, "mlflow.chunk.item.", 18) && cJSON_IsNumber(tm) && cJSON_IsNumber(end) &&
            tm->valuedouble > end->valuedouble + 1000)
          late++;
      }
      g_late_chunks += late;
      CHECK(F_TRACE, late == 0, "%s: %ld LLM chunks after the request span ended", trace_id, late);
    }
    if (llm_text && is_ok(root)) CHECK(F_TRACE, !strcmp(llm_text, o), "%s: LLM content != output", trace_id);
  } else {
    CHECK(F_TRACE, 0, "%s: request %s: unexpected client outcome (status %d)", trace_id, id, r->status);
  }
  cJSON_Delete(lo);
  cJSON_Delete(out);
  (void)ok_;
}

int main(int argc, char **argv) {
  const char *traces = NULL, *results = NULL;
  long expect = -1, expect_rejected = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--traces"))
      traces = argv[i + 1];
    else if (!strcmp(argv[i], "--results"))
      results = argv[i + 1];
    else if (!strcmp(argv[i], "--expect-traces"))
      expect = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--expect-rejected"))
      expect_rejected = atol(argv[i + 1]);
  }
  if (!traces || !results) {
    fprintf(stderr, "usage: c10k-check --traces FILE --results FILE [--expect-traces N] [--expect-rejected N]\n");
    return 2;
  }
  if (load_results(results) != 0) return 2;
  FILE *f = fopen(traces, "r");
  if (!f) {
    perror(traces);
    return 2;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int ok_ = 1;
  long lines = 0;
  (void)ok_;
  while ((len = getline(&line, &cap, f)) > 0) {
    lines++;
    cJSON *t = cJSON_ParseWithLength(line, (size_t)len);
    CHECK(F_TRACE, t != NULL, "line %ld of %s is not JSON", lines, traces);
    if (t) check_trace(t);
    cJSON_Delete(t);
  }
  free(line);
  fclose(f);
  long ok_requests = 0, hung = 0, closed = 0, untraced_hangups = 0;
  for (size_t i = 0; i < g_cap; i++) {
    rec *r = &g_tab[i];
    if (!r->id) continue;
    if (r->outcome == O_OK) {
      ok_requests++;
      CHECK(F_MISSING, r->traces == 1, "request %llu (HTTP %d) has %d traces", (unsigned long long)r->id, r->status,
            r->traces);
    } else {
      r->outcome == O_HANGUP ? hung++ : closed++;
      if (!r->traces) untraced_hangups++;
    }
    free(r->body);
  }
  free(g_tab);
  if (expect >= 0) CHECK(F_MISSING, expect == g_traces, "the server exported %ld traces, the file has %ld", expect, g_traces);
  if (expect_rejected >= 0)
    CHECK(F_MISSING, expect_rejected == g_refused_jobs,
          "the server counted %ld work queue rejections, the traces show %ld refused jobs", expect_rejected,
          g_refused_jobs);
  long wrong = 0;
  for (int k = 0; k < F_COUNT; k++) wrong += g_fail_counts[k];
  printf("check_traces %ld traces\n", g_traces);
  printf("check_spans %ld spans\n", g_spans);
  printf("check_checks %ld checks\n", g_checks);
  printf("check_requests_complete %ld requests\n", ok_requests);
  printf("check_requests_hung_up %ld requests\n", hung);
  printf("check_requests_closed_by_server %ld requests\n", closed);
  printf("check_untraced_abandoned %ld requests\n", untraced_hangups);
  printf("check_client_disconnected_spans %ld spans\n", g_client_disc);
  printf("check_server_shutdown_spans %ld spans\n", g_shutdown);
  printf("check_overloaded_spans %ld spans\n", g_overloaded);
  printf("check_llm_cancelled %ld spans\n", g_llm_cancelled);
  printf("check_llm_chunks_after_request_end %ld chunks\n", g_late_chunks);
  printf("check_refused_jobs %ld jobs\n", g_refused_jobs);
  for (int k = 0; k < F_COUNT; k++) printf("check_%s %ld\n", fail_names[k], g_fail_counts[k]);
  return wrong ? 1 : 0;
}
