/* lib/cli/store.c: the trace model.  Reads a JSONL store (one MLflow Trace
 * JSON per line) into traces: lines with the same info.trace_id are merged
 * (a trace and its continuations; traces keep the order of their first
 * line), update lines (metadata "mltrace.update": an assessment, a tag set
 * or deleted after the trace finished) are applied in file order, and each
 * span keeps what `list` and `show` print.  A line that is not a JSON object
 * with info.trace_id is reported on stderr and skipped; every other missing
 * key or wrong type is tolerated and shown as "?".  The server reader fills
 * the same model. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- the store --------------------------------------------------------- */

static void span_free(span *s) {
  free(s->name);
  free(s->type);
  free(s->id);
  free(s->parent);
  free(s->status_msg);
  free(s->status_raw);
  free(s->in);
  free(s->out);
  free(s->tokens);
  for (size_t i = 0; i < s->nevs; i++) free(s->evs[i].text);
  free(s->evs);
}

void trace_free(trace *t) {
  free(t->id);
  free(t->request_time);
  free(t->state);
  free(t->name);
  free(t->preview);
  free(t->session);
  free(t->user);
  free(t->tokens);
  for (size_t i = 0; i < t->ntags; i++) {
    free(t->tags[i].key);
    free(t->tags[i].val);
  }
  free(t->tags);
  for (size_t i = 0; i < t->nspans; i++) span_free(&t->spans[i]);
  free(t->spans);
}

void store_free(store *st) {
  for (size_t i = 0; i < st->n; i++) trace_free(&st->v[i]);
  free(st->v);
  map_free(&st->idx);
}

/* Case-insensitive "tr-" prefix stripped. */
const char *strip_tr(const char *s) {
  return strncasecmp(s, "tr-", 3) == 0 ? s + 3 : s;
}

static bool id_matches(const char *id, const char *query) {
  const char *a = strip_tr(id), *q = strip_tr(query);
  return strncasecmp(a, q, strlen(q)) == 0;
}

static void set_once(char **dst, const char *src) {
  if (!*dst && src && src[0]) *dst = dup_trunc(src, STORE_BYTES);
}

static int state_rank(const char *s) {
  if (!s) return -1;
  if (strcmp(s, "ERROR") == 0) return 3;
  if (strcmp(s, "OK") == 0) return 2;
  if (strcmp(s, "IN_PROGRESS") == 0) return 1;
  return 0;
}

void merge_info(trace *t, const cJSON *info) {
  set_once(&t->request_time, jstr(info, "request_time"));
  const char *state = jstr(info, "state");
  if (state && state_rank(state) > state_rank(t->state)) {
    free(t->state);
    t->state = dup_trunc(state, 64);
  }
  int64_t d;
  const cJSON *dv = jget(info, "execution_duration_ms");
  if (jint64(dv, &d) && (!t->has_duration || d > t->duration_ms)) {
    t->duration_ms = d;
    t->has_duration = true;
  }
  const cJSON *md = jget(info, "trace_metadata"), *tags = jget(info, "tags");
  set_once(&t->name, jstr(tags, "mlflow.traceName"));
  set_once(&t->preview, jstr(info, "request_preview"));
  set_once(&t->preview, jstr(md, "mlflow.traceInputs"));
  set_once(&t->session, jstr(md, "mlflow.trace.session"));
  set_once(&t->session, jstr(tags, "mlflow.trace.session"));
  set_once(&t->user, jstr(md, "mlflow.trace.user"));
  set_once(&t->user, jstr(tags, "mlflow.trace.user"));
  if (!t->tokens) t->tokens = token_summary(jstr(md, "mlflow.trace.tokenUsage"));
  const cJSON *it, *tagobj = cJSON_IsObject(tags) ? tags : NULL;
  cJSON_ArrayForEach(it, tagobj) {
    if (!it->string || strncmp(it->string, "mlflow.", 7) == 0) continue;
    if (!cJSON_IsString(it) || !it->valuestring) continue;
    bool dup = false;
    for (size_t i = 0; i < t->ntags && !dup; i++) dup = strcmp(t->tags[i].key, it->string) == 0;
    if (dup || t->ntags >= 64) continue;
    grow(&t->tags, &t->tagcap, t->ntags + 1, sizeof *t->tags);
    t->tags[t->ntags].key = dup_trunc(it->string, 256);
    t->tags[t->ntags].val = dup_trunc(it->valuestring, 256);
    t->ntags++;
  }
}

static void add_event(span *s, bool exc, char *text) {
  if (s->nevs >= MAX_EVENTS) {
    s->nevents_more++;
    free(text);
    return;
  }
  grow(&s->evs, &s->evcap, s->nevs + 1, sizeof *s->evs);
  s->evs[s->nevs].exc = exc;
  s->evs[s->nevs].text = text;
  s->nevs++;
}

static void extract_span(span *s, const cJSON *js, bool details) {
  const char *name = jstr(js, "name");
  s->name = name ? dup_trunc(name, STORE_BYTES) : NULL;
  s->id = span_key(jget(js, "span_id"));
  s->parent = span_key(jget(js, "parent_span_id"));
  s->has_start = jint64(jget(js, "start_time_unix_nano"), &s->start);
  s->has_end = jint64(jget(js, "end_time_unix_nano"), &s->end);
  if (s->has_end && s->end == 0) s->has_end = false; /* MLflow: 0 means none */

  const cJSON *status = jget(js, "status");
  const cJSON *code = jget(status, "code");
  s->status = ST_UNSET;
  if (cJSON_IsString(code) && code->valuestring) {
    const char *c = code->valuestring;
    if (strncmp(c, "STATUS_CODE_", 12) == 0) c += 12;
    if (strcmp(c, "OK") == 0) s->status = ST_OK;
    else if (strcmp(c, "ERROR") == 0) s->status = ST_ERROR;
    else if (strcmp(c, "UNSET") == 0) s->status = ST_UNSET;
    else s->status = ST_OTHER, s->status_raw = dup_trunc(code->valuestring, 64);
  } else if (cJSON_IsNumber(code)) {
    int64_t c = -1;
    jint64(code, &c);
    s->status = c == 1 ? ST_OK : c == 2 ? ST_ERROR : ST_UNSET;
  }
  const char *msg = jstr(status, "message");
  if (msg && msg[0]) s->status_msg = dup_trunc(msg, STORE_BYTES);

  const cJSON *attrs = jget(js, "attributes");
  s->type = attr_text(jget(attrs, "mlflow.spanType"));
  if (!details) return;
  const cJSON *in = jget(attrs, "mlflow.spanInputs"), *out = jget(attrs, "mlflow.spanOutputs");
  if (in) s->in = json_preview(in);
  if (out) s->out = json_preview(out);
  const char *usage = jstr(attrs, "mlflow.chat.tokenUsage");
  if (usage) s->tokens = token_summary(usage);

  const cJSON *ev, *events = jget(js, "events");
  if (!cJSON_IsArray(events)) events = NULL;
  cJSON_ArrayForEach(ev, events) {
    const char *en = jstr(ev, "name");
    if (!cJSON_IsObject(ev)) continue;
    if (en && strncmp(en, "mlflow.chunk.item.", 18) == 0) {
      s->nchunks++;
      continue;
    }
    sbuf b = {0};
    if (en && strcmp(en, "exception") == 0) {
      const cJSON *ea = jget(ev, "attributes");
      char *ty = attr_text(jget(ea, "exception.type"));
      const char *em = jstr(ea, "exception.message");
      sb_puts(&b, "exception");
      if (ty) sb_puts(&b, ": "), sb_puts(&b, ty);
      if (em) sb_puts(&b, ": "), sb_putn(&b, em, strnlen(em, STORE_BYTES));
      free(ty);
      add_event(s, true, sb_steal(&b));
    } else {
      sb_puts(&b, "event: ");
      if (en) sb_putn(&b, en, strnlen(en, STORE_BYTES));
      else sb_putc(&b, '?');
      add_event(s, false, sb_steal(&b));
    }
  }
}

static void report_malformed(store *st, size_t lineno, const char *why, const char *near,
                             size_t nearlen) {
  st->malformed++;
  sbuf b = {0};
  sb_printf(&b, "mltrace: %s: line %zu: not valid trace JSON: %s", st->fname, lineno, why);
  if (near) {
    sb_puts(&b, " near \"");
    put_text(&b, near, nearlen, 24, 0);
    sb_putc(&b, '"');
  }
  sb_putc(&b, '\n');
  fflush(stdout);
  fputs(b.p, stderr);
  free(b.p);
}

static void process_line(store *st, char *line, size_t len, size_t lineno) {
  if (memchr(line, '\0', len)) {
    report_malformed(st, lineno, "contains a NUL byte", NULL, 0);
    return;
  }
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithOpts(line, &end, 1);
  if (!root) {
    char why[64];
    size_t col = end && end >= line && end <= line + len ? (size_t)(end - line) : 0;
    snprintf(why, sizeof why, "parse error at column %zu", col + 1);
    report_malformed(st, lineno, why, line + col, len - col);
    return;
  }
  const cJSON *info = jget(root, "info");
  const char *tid = jstr(info, "trace_id");
  if (!tid) tid = jstr(info, "request_id"); /* V2 layout */
  if (!cJSON_IsObject(root)) {
    report_malformed(st, lineno, "not a JSON object", NULL, 0);
  } else if (!cJSON_IsObject(info)) {
    report_malformed(st, lineno, "missing \"info\" object", NULL, 0);
  } else if (!tid || !tid[0]) {
    report_malformed(st, lineno, "missing info.trace_id", NULL, 0);
  } else if (!st->query || id_matches(tid, st->query)) {
    attach_number_text(root, line, len);
    size_t ti;
    if (!map_get(&st->idx, tid, &ti)) {
      grow(&st->v, &st->cap, st->n + 1, sizeof *st->v);
      ti = st->n++;
      memset(&st->v[ti], 0, sizeof st->v[ti]);
      st->v[ti].id = xstrdup(tid);
      map_insert(&st->idx, st->v[ti].id, ti);
    }
    trace *t = &st->v[ti];
    merge_info(t, info);
    const cJSON *spans = jget(jget(root, "data"), "spans"), *js;
    if (!cJSON_IsArray(spans)) spans = NULL;
    cJSON_ArrayForEach(js, spans) {
      if (!cJSON_IsObject(js)) continue;
      grow(&t->spans, &t->spancap, t->nspans + 1, sizeof *t->spans);
      span *s = &t->spans[t->nspans];
      memset(s, 0, sizeof *s);
      s->seq = t->nspans++;
      extract_span(s, js, st->details);
    }
  }
  cJSON_Delete(root);
}

/* Reads the store; returns false (after a message) if it cannot be read. */
bool read_store(store *st, const char *path) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  st->fname = strcmp(path, "-") == 0 ? "<stdin>" : path;
  if (!f) {
    fprintf(stderr, "mltrace: cannot open %s: %s\n", path, strerror(errno));
    return false;
  }
  char *line = NULL;
  size_t cap = 0, lineno = 0;
  ssize_t got;
  errno = 0;
  while ((got = getline(&line, &cap, f)) >= 0) {
    size_t len = (size_t)got;
    lineno++;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    line[len] = '\0';
    char *p = line;
    if (lineno == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3, len -= 3;
    size_t k = 0;
    while (k < len && (p[k] == ' ' || p[k] == '\t')) k++;
    if (k == len) continue; /* blank line */
    process_line(st, p, len, lineno);
  }
  bool ok = !ferror(f);
  int err = errno;
  free(line);
  if (f != stdin) fclose(f);
  if (!ok) {
    fprintf(stderr, "mltrace: cannot read %s: %s\n", st->fname, strerror(err ? err : EIO));
    return false;
  }
  st->lines = lineno;
  return true;
}

