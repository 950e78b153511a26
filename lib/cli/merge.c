/* lib/cli/merge.c: `mltrace merge [FILE]`: print a JSONL store with one
 * complete MLflow Trace JSON line per trace, for readers that load each
 * line with Trace.from_json() and know nothing of mltrace's extra lines.
 *
 * The first line of a trace is its base.  Later lines with the same
 * info.trace_id are either continuations (spans of the trace that ended
 * after it was exported: their spans are appended to the base) or update
 * lines (metadata "mltrace.update", written for feedback, expectations and
 * tags given after the trace finished: their assessments are appended to
 * info.assessments, their tag set or deleted), applied in file order.  An
 * update line whose trace is not in the file is printed as it is.  Traces
 * keep the order of their first line; numbers keep their exact text.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  cJSON *base;     /* first non-update line */
  cJSON **updates; /* in file order */
  size_t nup, upcap;
} mtrace;

static cJSON *info_of(cJSON *doc) { return cJSON_GetObjectItemCaseSensitive(doc, "info"); }

static cJSON *obj_member(cJSON *obj, const char *key, bool array) {
  cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (array ? cJSON_IsArray(m) : cJSON_IsObject(m)) return m;
  cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
  m = array ? cJSON_CreateArray() : cJSON_CreateObject();
  if (!m) die_oom();
  cJSON_AddItemToObject(obj, key, m);
  return m;
}

static void apply_update(cJSON *base, cJSON *up) {
  cJSON *bi = info_of(base), *ui = info_of(up);
  const cJSON *md = jget(ui, "trace_metadata");
  const char *kind = jstr(md, "mltrace.update");
  if (!strcmp(kind, "delete_tag")) {
    const char *k = jstr(md, "mltrace.deletedTag");
    if (k) cJSON_DeleteItemFromObjectCaseSensitive(obj_member(bi, "tags", false), k);
  }
  cJSON *tags = cJSON_GetObjectItemCaseSensitive(ui, "tags");
  if (cJSON_IsObject(tags) && tags->child) {
    cJSON *bt = obj_member(bi, "tags", false);
    while (tags->child) {
      cJSON *t = cJSON_DetachItemViaPointer(tags, tags->child);
      cJSON_DeleteItemFromObjectCaseSensitive(bt, t->string);
      cJSON_AddItemToObject(bt, t->string, t);
    }
  }
  cJSON *as = cJSON_GetObjectItemCaseSensitive(ui, "assessments");
  if (cJSON_IsArray(as) && as->child) {
    cJSON *ba = obj_member(bi, "assessments", true);
    while (as->child) cJSON_AddItemToArray(ba, cJSON_DetachItemViaPointer(as, as->child));
  }
}

static void append_spans(cJSON *base, cJSON *cont) {
  cJSON *spans = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cont, "data"), "spans");
  if (!cJSON_IsArray(spans) || !spans->child) return;
  cJSON *bd = obj_member(base, "data", false);
  cJSON *bs = obj_member(bd, "spans", true);
  while (spans->child) cJSON_AddItemToArray(bs, cJSON_DetachItemViaPointer(spans, spans->child));
}

int cmd_merge(const char *path) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  const char *fname = strcmp(path, "-") == 0 ? "<stdin>" : path;
  if (!f) {
    fprintf(stderr, "mltrace: cannot open %s: %s\n", path, strerror(errno));
    return 2;
  }
  mtrace *v = NULL;
  size_t n = 0, cap = 0, lineno = 0, bad = 0;
  strmap idx = {0};
  char **ids = NULL;
  size_t idcap = 0;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t got;
  while ((got = getline(&line, &lcap, f)) >= 0) {
    size_t len = (size_t)got;
    lineno++;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    line[len] = '\0';
    char *p = line;
    if (lineno == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3, len -= 3;
    size_t k = 0;
    while (k < len && (p[k] == ' ' || p[k] == '\t')) k++;
    if (k == len) continue;
    cJSON *doc = memchr(p, '\0', len) ? NULL : cJSON_ParseWithLength(p, len);
    const char *tid = jstr(info_of(doc), "trace_id");
    if (!cJSON_IsObject(doc) || !tid || !tid[0]) {
      fprintf(stderr, "mltrace: %s: line %zu: not a trace (skipped)\n", fname, lineno);
      bad++;
      cJSON_Delete(doc);
      continue;
    }
    attach_number_text(doc, p, len);
    size_t ti;
    if (!map_get(&idx, tid, &ti)) {
      grow(&v, &cap, n + 1, sizeof *v);
      grow(&ids, &idcap, n + 1, sizeof *ids);
      ti = n++;
      memset(&v[ti], 0, sizeof v[ti]);
      ids[ti] = xstrdup(tid);
      map_insert(&idx, ids[ti], ti);
    }
    mtrace *t = &v[ti];
    if (jstr(jget(info_of(doc), "trace_metadata"), "mltrace.update")) {
      grow(&t->updates, &t->upcap, t->nup + 1, sizeof *t->updates);
      t->updates[t->nup++] = doc;
    } else if (!t->base) {
      t->base = doc;
    } else {
      append_spans(t->base, doc);
      cJSON_Delete(doc);
    }
  }
  bool read_error = ferror(f);
  free(line);
  if (f != stdin) fclose(f);
  sbuf b = {0};
  for (size_t i = 0; i < n; i++) {
    mtrace *t = &v[i];
    for (size_t u = 0; u < t->nup; u++) {
      if (t->base) {
        apply_update(t->base, t->updates[u]);
      } else {
        print_json(&b, t->updates[u]);
        sb_putc(&b, '\n');
        fwrite(b.p, 1, b.n, stdout);
        b.n = 0;
      }
      cJSON_Delete(t->updates[u]);
    }
    free(t->updates);
    if (t->base) {
      print_json(&b, t->base);
      sb_putc(&b, '\n');
      fwrite(b.p, 1, b.n, stdout);
      b.n = 0;
      cJSON_Delete(t->base);
    }
    free(ids[i]);
  }
  free(b.p);
  free(v);
  free(ids);
  map_free(&idx);
  if (read_error) {
    fprintf(stderr, "mltrace: cannot read %s\n", fname);
    return 2;
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "mltrace: write error: %s\n", strerror(errno));
    return 2;
  }
  return bad ? 1 : 0;
}
