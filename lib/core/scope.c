/* lib/core/scope.c: scoped trace context, like mlflow.tracing.context() (see
 * <mltrace/scope.h> and scope-internal.h).
 *
 * Entering a scope builds an immutable scope object that already holds the
 * enclosing scope's values (MLflow merges its dicts the same way: inner keys
 * win) and pushes it on the thread's attach stack (context.c), so scopes and
 * context attaches nest strictly together.  Contexts captured while it is in
 * effect keep a reference to it; attaching one brings it back.  A span start
 * on a thread with a scope takes the general start (span.c,
 * mlt__span_start_ex), which returns MLT_SPAN_NONE in a disabled scope and
 * otherwise calls mlt__scope_started() below.
 *
 * Layer: core -- touches the thread's attach stack (context.c) and trace-level
 * entries (trace.c); includes core/ and util/.
 */
#include "core/scope-internal.h"

#include <stdlib.h>

static void kv_free(char **kv) {
  if (!kv) return;
  for (char **p = kv; *p; p++) free(*p);
  free(kv);
}

void mlt__scope_release(mlt__scope *sc) {
  if (!sc || atomic_fetch_sub_explicit(&sc->refs, 1, memory_order_acq_rel) != 1) return;
  kv_free(sc->tags);
  kv_free(sc->meta);
  free(sc->session);
  free(sc->user);
  free(sc);
}

/* Pairs in a NULL-terminated key/value list; -1 when odd. */
static long kv_pairs(const char *const *kv) {
  size_t n = 0;
  if (kv)
    while (kv[n]) n++;
  return n % 2 ? -1 : (long)(n / 2);
}

static int is_key(const char *k, const char *want) { return k && want && !strcmp(k, want); }

/* Is |key| set by a later pair of own[from..n) or by a pair of |own| at all
 * (|from| 0)? */
static int key_in(const char *const *own, long n, long from, const char *key) {
  for (long i = from; i < n; i++)
    if (!strcmp(own[2 * i], key)) return 1;
  return 0;
}

/* outer's pairs whose keys |own| does not set, then own's (the last of a
 * repeated key), skipping the metadata keys |skip1| / |skip2|.  Returns the
 * owned list (NULL: empty), or sets *err. */
static char **kv_merge(char *const *outer, const char *const *own, long n_own, const char *skip1,
                       const char *skip2, int *err) {
  long n_outer = kv_pairs((const char *const *)outer);
  size_t cap = (size_t)(n_outer + n_own) * 2 + 1, k = 0;
  if (cap == 1) return NULL;
  char **out = calloc(cap, sizeof *out);
  if (!out) goto oom;
  for (long i = 0; i < n_outer; i++) {
    if (key_in(own, n_own, 0, outer[2 * i])) continue;
    if (!(out[k++] = mlt__strdup(outer[2 * i])) || !(out[k++] = mlt__strdup(outer[2 * i + 1]))) goto oom;
  }
  for (long i = 0; i < n_own; i++) {
    const char *key = own[2 * i], *val = own[2 * i + 1];
    if (is_key(key, skip1) || is_key(key, skip2) || key_in(own, n_own, i + 1, key)) continue;
    if (!(out[k++] = mlt__strdup(key)) || !(out[k++] = mlt__strdup(val))) goto oom;
  }
  if (k == 0) {
    free(out);
    return NULL;
  }
  return out;
oom:
  kv_free(out);
  *err = 1;
  return NULL;
}

/* The value of metadata key |key| in |own| (the last one), or NULL. */
static const char *kv_get(const char *const *own, long n, const char *key) {
  const char *v = NULL;
  for (long i = 0; i < n; i++)
    if (!strcmp(own[2 * i], key)) v = own[2 * i + 1];
  return v;
}

/* A new scope: |outer| (may be NULL) with |in| on top. */
static int scope_new(const mlt__scope *outer, const mlt_trace_scope *in, mlt__scope **out) {
  long n_tags = kv_pairs(in->tags), n_meta = kv_pairs(in->metadata);
  if (n_tags < 0 || n_meta < 0) return MLT_EINVAL;
  mlt__scope *sc = calloc(1, sizeof *sc);
  if (!sc) return MLT_ENOMEM;
  atomic_init(&sc->refs, 1);
  int err = 0;
  sc->enabled = in->enabled != MLT_SCOPE_INHERIT ? (uint8_t)in->enabled
                : outer                          ? outer->enabled
                                                 : MLT__SCOPE_INHERIT;
  sc->tags = kv_merge(outer ? outer->tags : NULL, in->tags, n_tags, NULL, NULL, &err);
  /* session and user are metadata keys in MLflow: the fields win over the
   * keys, the inner scope over the outer */
  static const char k_sess[] = "mlflow.trace.session", k_user[] = "mlflow.trace.user";
  if (!err) sc->meta = kv_merge(outer ? outer->meta : NULL, in->metadata, n_meta, k_sess, k_user, &err);
  const char *sess = in->session_id ? in->session_id : kv_get(in->metadata, n_meta, k_sess);
  const char *user = in->user ? in->user : kv_get(in->metadata, n_meta, k_user);
  if (!sess && outer) sess = outer->session;
  if (!user && outer) user = outer->user;
  if (!err && sess && !(sc->session = mlt__strdup(sess))) err = 1;
  if (!err && user && !(sc->user = mlt__strdup(user))) err = 1;
  if (err) {
    mlt__scope_release(sc);
    return MLT_ENOMEM;
  }
  sc->n_entries = (uint32_t)(kv_pairs((const char *const *)sc->tags) + kv_pairs((const char *const *)sc->meta)) +
                  (sc->session != NULL) + (sc->user != NULL);
  *out = sc;
  return MLT_OK;
}

int mlt_trace_scope_enter(const mlt_trace_scope *in, mlt_attach_token *tok) {
  if (!tok) return MLT_EINVAL;
  tok->depth_ = tok->serial_ = 0;
  if (!in || in->struct_size < offsetof(mlt_trace_scope, user) + sizeof in->user ||
      (unsigned)in->enabled > MLT_SCOPE_DISABLED)
    return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return MLT_ENOMEM;
  mlt__scope *sc;
  int rc = scope_new(tls->scope, in, &sc);
  if (rc) return rc;
  rc = mlt__scope_frame_push(sc, tok);
  if (rc) {
    mlt__scope_release(sc);
    tok->depth_ = tok->serial_ = 0;
    if (rc == MLT_EFULL) mlt__count_misuse("mlt_trace_scope_enter (64 scopes and attaches nested)", rc);
  }
  return rc;
}

mlt_attach_token mlt__trace_scope_begin(const mlt_trace_scope *in) {
  mlt_attach_token tok = {0, 0};
  int rc = mlt_trace_scope_enter(in, &tok);
  if (rc != MLT_OK && rc != MLT_ENOTINIT)
    mlt__log(MLT_LOG_WARN, MLT__LOGK_MISUSE, "MLT_TRACING_CONTEXT: %s (the scope is not applied)",
             mlt_strerror(rc));
  return tok;
}

static mlt__tinfo *entry(mlt__tinfo *e, int kind, char *key, char *value) {
  e->kind = (uint8_t)kind;
  e->borrowed = 1;
  e->key = key;
  e->value = value;
  e->next = e + 1;
  return e + 1;
}

/* The scope's entries go to the new trace as one block (one allocation):
 * entries whose strings are the scope's (borrowed), then the TI_SCOPE entry
 * that holds a reference on the scope and frees the block with the trace.
 * They are the trace's oldest entries, so anything the application updates
 * later wins, as with MLflow's context(). */
void mlt__scope_started(mlt__scope *sc, mlt_span h) {
  if (!sc->n_entries || h.id_ == 0 || mlt__h_is_nonrec(h)) return;
  /* Just started on this thread: open, and nobody else has the handle. */
  mlt__span *s = mlt__slot_at((uint32_t)h.id_ - 1);
  if (!atomic_load_explicit(&s->is_root, memory_order_relaxed)) return; /* joined a trace */
  mlt__trace *t = atomic_load_explicit(&s->trace, memory_order_relaxed);
  uint32_t n = sc->n_entries;
  mlt__tinfo *blk = calloc(n + 1, sizeof *blk);
  int rc = MLT_ENOMEM;
  if (blk) {
    mlt__tinfo *e = blk + 1;
    for (char **kv = sc->tags; kv && *kv; kv += 2) e = entry(e, MLT__TI_TAG, kv[0], kv[1]);
    for (char **kv = sc->meta; kv && *kv; kv += 2) e = entry(e, MLT__TI_META, kv[0], kv[1]);
    if (sc->session) e = entry(e, MLT__TI_SESSION, NULL, sc->session);
    if (sc->user) e = entry(e, MLT__TI_USER, NULL, sc->user);
    e[-1].next = blk; /* the owner last */
    blk->kind = MLT__TI_SCOPE;
    blk->scope = mlt__scope_retain(sc);
    rc = mlt__trace_info_link(t, blk + 1, blk, n + 1);
    if (rc != MLT_OK) {
      blk->next = NULL;
      mlt__scope_release(sc);
      free(blk);
    }
  }
  if (rc != MLT_OK)
    mlt__log(MLT_LOG_WARN, MLT__LOGK_GENERIC, "scoped context not applied to a new trace: %s", mlt_strerror(rc));
}
