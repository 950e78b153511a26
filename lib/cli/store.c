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
  free(t->link);
  for (size_t i = 0; i < t->ntags; i++) {
    free(t->tags[i].key);
    free(t->tags[i].val);
  }
  free(t->tags);
  for (size_t i = 0; i < t->nspans; i++) span_free(&t->spans[i]);
  free(t->spans);
  for (size_t i = 0; i < t->nas; i++) {
    free(t->as[i].name);
    free(t->as[i].value);
    free(t->as[i].source);
    free(t->as[i].span);
    free(t->as[i].rationale);
  }
  free(t->as);
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

static void set_tag(trace *t, const char *key, const char *val, bool override) {
  for (size_t i = 0; i < t->ntags; i++) {
    if (strcmp(t->tags[i].key, key) != 0) continue;
    if (override) {
      free(t->tags[i].val);
      t->tags[i].val = dup_trunc(val, 256);
    }
    return;
  }
  if (t->ntags >= 64) return;
  grow(&t->tags, &t->tagcap, t->ntags + 1, sizeof *t->tags);
  t->tags[t->ntags].key = dup_trunc(key, 256);
  t->tags[t->ntags].val = dup_trunc(val, 256);
  t->ntags++;
}

static void delete_tag(trace *t, const char *key) {
  for (size_t i = 0; i < t->ntags; i++) {
    if (strcmp(t->tags[i].key, key) != 0) continue;
    free(t->tags[i].key);
    free(t->tags[i].val);
    memmove(&t->tags[i], &t->tags[i + 1], (t->ntags - i - 1) * sizeof *t->tags);
    t->ntags--;
    return;
  }
}

/* One Assessment JSON (file store or REST: the same field names). */
static void add_assessment(trace *t, const cJSON *a) {
  if (!cJSON_IsObject(a) || cJSON_IsFalse(jget(a, "valid")) || t->nas >= 64) return;
  assessment x = {0};
  const char *name = jstr(a, "assessment_name");
  x.name = dup_trunc(name ? name : "?", 256);
  const cJSON *fb = jget(a, "feedback"), *ex = jget(a, "expectation");
  x.expectation = ex != NULL;
  const cJSON *val = fb ? jget(fb, "value") : jget(ex, "value");
  const cJSON *ser = jget(ex, "serialized_value");
  if (ser && jstr(ser, "value")) {
    cJSON tmp = {0};
    tmp.type = cJSON_String;
    tmp.valuestring = (char *)jstr(ser, "value");
    x.value = json_preview(&tmp);
  } else if (val && !cJSON_IsNull(val)) {
    sbuf b = {0};
    print_json(&b, val);
    cJSON tmp = {0};
    tmp.type = cJSON_String;
    tmp.valuestring = b.p ? b.p : (char *)"";
    x.value = json_preview(&tmp);
    free(b.p);
  }
  const cJSON *err = jget(fb, "error");
  if (err) {
    sbuf b = {0};
    const char *code = jstr(err, "error_code"), *msg = jstr(err, "error_message");
    sb_puts(&b, code ? code : "error");
    if (msg) sb_puts(&b, ": "), sb_putn(&b, msg, strnlen(msg, STORE_BYTES));
    free(x.value);
    x.value = sb_steal(&b);
    x.error = true;
  }
  const cJSON *src = jget(a, "source");
  const char *st = jstr(src, "source_type"), *sid = jstr(src, "source_id");
  if (st || sid) {
    sbuf b = {0};
    if (st) sb_puts(&b, st);
    if (st && sid) sb_putc(&b, ' ');
    if (sid) sb_putn(&b, sid, strnlen(sid, 256));
    x.source = sb_steal(&b);
  }
  x.span = span_key(jget(a, "span_id"));
  const char *r = jstr(a, "rationale");
  if (r && r[0]) x.rationale = dup_trunc(r, STORE_BYTES);
  grow(&t->as, &t->ascap, t->nas + 1, sizeof *t->as);
  t->as[t->nas++] = x;
}

static void add_assessments(trace *t, const cJSON *info) {
  const cJSON *a, *arr = jget(info, "assessments");
  if (!cJSON_IsArray(arr)) return;
  cJSON_ArrayForEach(a, arr) add_assessment(t, a);
}

/* "1.234s" (REST execution_duration) in ms. */
static bool duration_ms(const char *s, int64_t *ms) {
  if (!s) return false;
  char *e;
  errno = 0;
  double d = strtod(s, &e);
  if (e == s || errno || strcmp(e, "s") != 0 || d < 0 || d > 9e15) return false;
  *ms = (int64_t)(d * 1000 + 0.5);
  return true;
}

void merge_info(trace *t, const cJSON *info) {
  const cJSON *md = jget(info, "trace_metadata"), *tags = jget(info, "tags");
  const char *update = jstr(md, "mltrace.update");
  const cJSON *it, *tagobj = cJSON_IsObject(tags) ? tags : NULL;
  if (update) {
    /* An update line (<mltrace/assessment.h>): only its change applies. */
    if (strcmp(update, "delete_tag") == 0) {
      const char *k = jstr(md, "mltrace.deletedTag");
      if (k) delete_tag(t, k);
    }
    cJSON_ArrayForEach(it, tagobj) {
      if (it->string && cJSON_IsString(it) && it->valuestring && strncmp(it->string, "mlflow.", 7) != 0)
        set_tag(t, it->string, it->valuestring, true);
    }
    add_assessments(t, info);
    return;
  }
  set_once(&t->request_time, jstr(info, "request_time"));
  const char *state = jstr(info, "state");
  if (state && state_rank(state) > state_rank(t->state)) {
    free(t->state);
    t->state = dup_trunc(state, 64);
  }
  int64_t d;
  const cJSON *dv = jget(info, "execution_duration_ms");
  if ((jint64(dv, &d) || duration_ms(jstr(info, "execution_duration"), &d)) && (!t->has_duration || d > t->duration_ms)) {
    t->duration_ms = d;
    t->has_duration = true;
  }
  set_once(&t->name, jstr(tags, "mlflow.traceName"));
  set_once(&t->preview, jstr(info, "request_preview"));
  set_once(&t->preview, jstr(md, "mlflow.traceInputs"));
  set_once(&t->session, jstr(md, "mlflow.trace.session"));
  set_once(&t->session, jstr(tags, "mlflow.trace.session"));
  set_once(&t->user, jstr(md, "mlflow.trace.user"));
  set_once(&t->user, jstr(tags, "mlflow.trace.user"));
  if (!t->tokens) t->tokens = token_summary(jstr(md, "mlflow.trace.tokenUsage"));
  const char *stats = jstr(md, "mlflow.trace.sizeStats");
  if (stats && t->span_hint < 0) {
    cJSON *sd = cJSON_Parse(stats);
    int64_t n;
    if (jint64(jget(sd, "num_spans"), &n) && n >= 0 && n < 100000000) t->span_hint = (long)n;
    cJSON_Delete(sd);
  }
  cJSON_ArrayForEach(it, tagobj) {
    if (!it->string || strncmp(it->string, "mlflow.", 7) == 0) continue;
    if (!cJSON_IsString(it) || !it->valuestring) continue;
    set_tag(t, it->string, it->valuestring, false);
  }
  add_assessments(t, info);
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

trace *store_trace(store *st, const char *tid) {
  size_t ti;
  if (!map_get(&st->idx, tid, &ti)) {
    grow(&st->v, &st->cap, st->n + 1, sizeof *st->v);
    ti = st->n++;
    memset(&st->v[ti], 0, sizeof st->v[ti]);
    st->v[ti].id = xstrdup(tid);
    st->v[ti].span_hint = -1;
    map_insert(&st->idx, st->v[ti].id, ti);
  }
  return &st->v[ti];
}

void add_spans(trace *t, const cJSON *spans, bool details) {
  const cJSON *js;
  if (!cJSON_IsArray(spans)) return;
  cJSON_ArrayForEach(js, spans) {
    if (!cJSON_IsObject(js)) continue;
    grow(&t->spans, &t->spancap, t->nspans + 1, sizeof *t->spans);
    span *s = &t->spans[t->nspans];
    memset(s, 0, sizeof *s);
    s->seq = t->nspans++;
    extract_span(s, js, details);
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
    trace *t = store_trace(st, tid);
    merge_info(t, info);
    add_spans(t, jget(jget(root, "data"), "spans"), st->details);
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

