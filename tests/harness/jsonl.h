/* tests/harness/jsonl.h: a JSONL trace store (MLTRACE_FILE, one
 * Trace.to_json() per line) read back with cJSON: every line parsed (a line
 * that is not JSON ends the test), the whole text kept (to search it), and
 * JSON texts decoded on request kept until tu_jsonl_free().  Accessors of
 * the traces: traces.h.  Header-only. */
#ifndef MLT_TESTS_HARNESS_JSONL_H
#define MLT_TESTS_HARNESS_JSONL_H

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "tap.h"
#include "traces.h"

typedef struct tu_jsonl {
  char *text;    /* the whole file ("" when it does not exist) */
  cJSON **trace; /* one per line, in file order */
  int n, cap;
  cJSON **keep; /* decoded JSON texts, freed with the store */
  int nkeep, capkeep;
} tu_jsonl;

static inline void tu_jsonl__push(cJSON ***v, int *n, int *cap, cJSON *j) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    *v = realloc(*v, (size_t)*cap * sizeof **v);
    if (!*v) abort();
  }
  (*v)[(*n)++] = j;
}

/* Read the store at @p path into @p s (a missing file reads as empty). */
static inline void tu_jsonl_read(tu_jsonl *s, const char *path) {
  memset(s, 0, sizeof *s);
  s->text = th_read_file(path, NULL);
  if (!s->text) s->text = strdup("");
  char *copy = strdup(s->text), *save = NULL;
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    cJSON *t = cJSON_Parse(line);
    if (!t) tap_diag("not JSON: %.200s", line);
    REQUIRE(t != NULL);
    tu_jsonl__push(&s->trace, &s->n, &s->cap, t);
  }
  free(copy);
}

static inline void tu_jsonl_free(tu_jsonl *s) {
  for (int i = 0; i < s->n; i++) cJSON_Delete(s->trace[i]);
  for (int i = 0; i < s->nkeep; i++) cJSON_Delete(s->keep[i]);
  free(s->trace);
  free(s->keep);
  free(s->text);
  memset(s, 0, sizeof *s);
}

/* A JSON text decoded (kept until tu_jsonl_free()); NULL for NULL or for
 * text that is not JSON. */
static inline cJSON *tu_jsonl_decode(tu_jsonl *s, const char *json) {
  if (!json) return NULL;
  cJSON *j = cJSON_Parse(json);
  if (j) tu_jsonl__push(&s->keep, &s->nkeep, &s->capkeep, j);
  return j;
}

/* The decoded outputs of a span when they are a string, else NULL. */
static inline const char *tu_jsonl_output_text(tu_jsonl *s, const cJSON *span) {
  cJSON *o = tu_jsonl_decode(s, tu_attr(span, "mlflow.spanOutputs"));
  return cJSON_IsString(o) ? o->valuestring : NULL;
}

/* choices[0].message.content of an LLM span's outputs (a chat.completion). */
static inline const char *tu_jsonl_llm_content(tu_jsonl *s, const cJSON *span) {
  cJSON *o = tu_jsonl_decode(s, tu_attr(span, "mlflow.spanOutputs"));
  cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
  return tu_str(cJSON_GetObjectItemCaseSensitive(c0, "message"), "content");
}

#endif /* MLT_TESTS_HARNESS_JSONL_H */
