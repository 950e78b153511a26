/* lib/core/context.c: explicit contexts, attach/detach, W3C traceparent.
 *
 * Layer: core -- touches traces' reference counts and the thread's attach
 * stack and scope; includes core/ and util/.
 */
#include "core/scope-internal.h"

#include <stdlib.h>

static uint32_t epoch_now(void) { return atomic_load_explicit(&mlt__g_epoch, memory_order_relaxed); }

/* Takes over one reference on |t| (may be NULL). */
struct mlt_context *mlt__context_new(mlt__trace *t, uint64_t hi, uint64_t lo, uint64_t span_id, int flags) {
  struct mlt_context *c = malloc(sizeof *c);
  if (!c) {
    if (t) mlt__trace_unref(t);
    return NULL;
  }
  atomic_init(&c->refs, 1);
  c->flags = (uint8_t)flags;
  c->epoch = epoch_now();
  c->trace_hi = hi;
  c->trace_lo = lo;
  c->span_id = span_id;
  c->trace = t;
  c->scope = NULL;
  return c;
}

mlt_context *mlt_context_retain(mlt_context *ctx) {
  if (ctx) atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
  return ctx;
}

void mlt_context_release(mlt_context *ctx) {
  if (!ctx || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1) return;
  mlt__scope_release(ctx->scope); /* plain memory: no library state involved */
  /* After mlt_shutdown() the trace link is dead memory: do not touch it. */
  if (ctx->trace && ctx->epoch == epoch_now() && atomic_load(&mlt__g_state) != MLT__G_OFF) {
    if (ctx->flags & MLT__CF_HOLD) mlt__trace_leave(ctx->trace);
    mlt__trace_unref(ctx->trace);
  }
  free(ctx);
}

/* The scope in effect on this thread (lib/core/scope.c), or NULL. */
static mlt__scope *thread_scope(void) {
  mlt__tls *tls = mlt__tls_get();
  return tls ? tls->scope : NULL;
}

/* |c| (may be NULL) keeps scope |sc|. */
static mlt_context *with_scope(mlt_context *c, mlt__scope *sc) {
  if (c && sc) c->scope = mlt__scope_retain(sc);
  return c;
}

mlt_context *mlt_context_capture(mlt_span h) {
  if (!mlt__running()) return NULL;
  mlt__scope *sc = thread_scope();
  if (mlt__h_is_nonrec(h)) return with_scope(mlt__context_new(NULL, 0, 0, 0, 0), sc);
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s) { /* ended and moved out of its slot (compact.c)? */
    mlt__trace *mt;
    if (!mlt__moved_find(h, &mt, NULL)) return NULL;
    /* (the new context takes over the trace reference) */
    return with_scope(mlt__context_new(mt, mt->id_hi, mt->id_lo, mlt__id_from_handle(h.id_), MLT__CF_SAMPLED), sc);
  }
  int open = MLT__GS_STATE(gs) == MLT__S_OPEN;
  if (open && s->ctx && s->ctx->scope == sc) return mlt_context_retain(s->ctx);
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return NULL;
  /* the span id from the handle: an ended span's slot may be taken by
   * another span meanwhile (compact.c) */
  mlt_context *c = with_scope(mlt__context_new(t, t->id_hi, t->id_lo, mlt__id_from_handle(h.id_), MLT__CF_SAMPLED), sc);
  /* Cache it on an open span (owner thread): later captures are free. */
  if (c && open && !s->ctx) s->ctx = mlt_context_retain(c);
  return c;
}

mlt_context *mlt_context_current(void) {
  if (!mlt__running()) return NULL;
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return NULL;
  if (tls->nonrec_depth) return with_scope(mlt__context_new(NULL, 0, 0, 0, 0), tls->scope);
  mlt_span cur = mlt_current_span();
  if (cur.id_) return mlt_context_capture(cur);
  mlt_context *a = tls->attached;
  if (!tls->scope || (a && a->scope == tls->scope)) return mlt_context_retain(a);
  /* A scope entered since the attach (or no context at all): the same
   * place, with the scope in effect now. */
  mlt_context *c;
  if (!a)
    c = mlt__context_new(NULL, 0, 0, 0, MLT__CF_NOSPAN);
  else {
    mlt__trace *t = a->trace && a->epoch == epoch_now() ? a->trace : NULL;
    if (t) mlt__trace_ref(t);
    c = mlt__context_new(t, a->trace_hi, a->trace_lo, a->span_id, a->flags & ~MLT__CF_HOLD);
  }
  return with_scope(c, tls->scope);
}

mlt_context *mlt_context_hold(mlt_context *ctx) {
  if (!ctx) return NULL;
  if (ctx->trace && ctx->epoch == epoch_now() && mlt__running() && mlt__trace_join(ctx->trace)) {
    mlt__trace_ref(ctx->trace);
    mlt_context *h = mlt__context_new(ctx->trace, ctx->trace_hi, ctx->trace_lo, ctx->span_id,
                                      ctx->flags | MLT__CF_HOLD);
    if (h) return with_scope(h, ctx->scope);
    /* allocation failed: give the join back */
    mlt__trace_leave(ctx->trace);
    return mlt_context_retain(ctx);
  }
  return mlt_context_retain(ctx);
}

int mlt_context_get_trace_id(const mlt_context *ctx, char *buf, size_t size) {
  if (!ctx || !buf) return MLT_EINVAL;
  if (size < MLT_TRACE_ID_SIZE) return MLT_ERANGE;
  if (!(ctx->trace_hi | ctx->trace_lo)) {
    buf[0] = '\0';
    return MLT_EINVAL;
  }
  mlt__format_trace_id(ctx->trace_hi, ctx->trace_lo, buf);
  return MLT_OK;
}

int mlt_context_get_span_id(const mlt_context *ctx, char *buf, size_t size) {
  if (!ctx || !buf) return MLT_EINVAL;
  if (size < MLT_SPAN_ID_SIZE) return MLT_ERANGE;
  if (!ctx->span_id) {
    buf[0] = '\0';
    return MLT_EINVAL;
  }
  mlt__hex64(ctx->span_id, buf);
  buf[16] = '\0';
  return MLT_OK;
}

int mlt_context_is_sampled(const mlt_context *ctx) { return ctx && (ctx->flags & MLT__CF_SAMPLED) ? 1 : 0; }

/* ---- attach / detach ------------------------------------------------- */

mlt_attach_token mlt_context_attach(mlt_context *ctx) {
  mlt_attach_token tok = {0, 0};
  if (!mlt__running()) return tok;
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return tok;
  if (tls->depth >= MLT__MAX_ATTACH) {
    /* Too deep to remember: counted, and undone by the matching detach. */
    tls->overflow_attach++;
    tok.depth_ = MLT__MAX_ATTACH + tls->overflow_attach;
    tok.serial_ = UINT32_MAX;
    return tok;
  }
  mlt__attach_frame *f = &tls->frames[tls->depth];
  f->ctx = mlt_context_retain(ctx);
  f->saved_cur = tls->cur;
  f->saved_nonrec = tls->nonrec_depth;
  f->saved_scope = tls->scope;
  f->own_scope = NULL;
  f->serial = ++tls->serial;
  tls->depth++;
  tls->cur.id_ = 0;
  tls->nonrec_depth = 0;
  tls->attached = ctx;
  /* The context's scope comes along; one without keeps the thread's. */
  if (ctx && ctx->scope) tls->scope = ctx->scope;
  tok.depth_ = tls->depth;
  tok.serial_ = f->serial;
  return tok;
}

int mlt__scope_frame_push(mlt__scope *sc, mlt_attach_token *tok) {
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return MLT_ENOMEM;
  if (tls->depth >= MLT__MAX_ATTACH || tls->overflow_attach) return MLT_EFULL;
  mlt__attach_frame *f = &tls->frames[tls->depth];
  /* The attached context and current span stay as they are. */
  f->ctx = mlt_context_retain(tls->attached);
  f->saved_cur = tls->cur;
  f->saved_nonrec = tls->nonrec_depth;
  f->saved_scope = tls->scope;
  f->own_scope = sc;
  f->serial = ++tls->serial;
  tls->depth++;
  tls->scope = sc;
  tok->depth_ = tls->depth;
  tok->serial_ = f->serial;
  return MLT_OK;
}

/* Undo the innermost frame (|scope|: a scope frame is expected). */
static int frame_pop(mlt_attach_token tok, int scope) {
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return MLT_ENOMEM;
  if (!scope && tok.serial_ == UINT32_MAX && tls->overflow_attach &&
      tok.depth_ == MLT__MAX_ATTACH + tls->overflow_attach) {
    tls->overflow_attach--;
    return MLT_OK;
  }
  if (tok.depth_ == 0 || tok.depth_ != tls->depth || tls->overflow_attach ||
      tls->frames[tls->depth - 1].serial != tok.serial_ || !tls->frames[tls->depth - 1].own_scope != !scope) {
    mlt__count_misuse(scope ? "mlt_trace_scope_exit (not the innermost scope or attach of this thread)"
                            : "mlt_context_detach (not the innermost attach of this thread)",
                      MLT_EMISMATCH);
    return MLT_EMISMATCH;
  }
  mlt__attach_frame *f = &tls->frames[--tls->depth];
  if (!scope) { /* a scope frame leaves the current span alone */
    tls->cur = f->saved_cur;
    tls->nonrec_depth = f->saved_nonrec;
  }
  tls->attached = tls->depth ? tls->frames[tls->depth - 1].ctx : NULL;
  tls->scope = f->saved_scope;
  mlt_context *c = f->ctx;
  mlt__scope *own = f->own_scope;
  f->ctx = NULL;
  f->own_scope = NULL;
  mlt_context_release(c);
  mlt__scope_release(own);
  return MLT_OK;
}

int mlt_context_detach(mlt_attach_token tok) { return frame_pop(tok, 0); }

int mlt_trace_scope_exit(mlt_attach_token tok) {
  if (tok.depth_ == 0 && tok.serial_ == 0) return MLT_OK;
  return frame_pop(tok, 1);
}

void mlt_context_run(mlt_context *ctx, void (*fn)(void *arg), void *arg) {
  if (!fn) return;
  mlt_attach_token tok = mlt_context_attach(ctx);
  fn(arg);
  if (tok.depth_) mlt_context_detach(tok);
}

/* ---- traceparent ----------------------------------------------------- */

int mlt_context_to_traceparent(const mlt_context *ctx, char *buf, size_t size) {
  if (!ctx || !buf) return MLT_EINVAL;
  if (size < MLT_TRACEPARENT_SIZE) return MLT_ERANGE;
  if (!(ctx->trace_hi | ctx->trace_lo) || !ctx->span_id) {
    buf[0] = '\0';
    return MLT_EINVAL;
  }
  memcpy(buf, "00-", 3);
  mlt__hex64(ctx->trace_hi, buf + 3);
  mlt__hex64(ctx->trace_lo, buf + 19);
  buf[35] = '-';
  mlt__hex64(ctx->span_id, buf + 36);
  buf[52] = '-';
  buf[53] = '0';
  buf[54] = (ctx->flags & MLT__CF_SAMPLED) ? '1' : '0';
  buf[55] = '\0';
  return MLT_OK;
}

static int lower_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

int mlt_context_from_traceparent(const char *header, mlt_context **out) {
  if (!out) return MLT_EINVAL;
  *out = NULL;
  if (!header) return MLT_EINVAL;
  while (*header == ' ' || *header == '\t') header++;
  size_t n = strlen(header);
  while (n && (header[n - 1] == ' ' || header[n - 1] == '\t')) n--;
  if (n < 55 || header[2] != '-' || header[35] != '-' || header[52] != '-') return MLT_EPARSE;
  if (!lower_hex(header, 2) || !lower_hex(header + 3, 32) || !lower_hex(header + 36, 16) ||
      !lower_hex(header + 53, 2))
    return MLT_EPARSE;
  if (!memcmp(header, "ff", 2)) return MLT_EPARSE;
  if (!memcmp(header, "00", 2) && n != 55) return MLT_EPARSE;
  if (n > 55 && header[55] != '-') return MLT_EPARSE;
  uint64_t hi, lo, sid, flags;
  mlt__parse_hex(header + 3, 16, &hi);
  mlt__parse_hex(header + 19, 16, &lo);
  mlt__parse_hex(header + 36, 16, &sid);
  mlt__parse_hex(header + 53, 2, &flags);
  if (!(hi | lo) || !sid) return MLT_EPARSE;
  mlt_context *c = mlt__context_new(NULL, hi, lo, sid, MLT__CF_REMOTE | ((flags & 1) ? MLT__CF_SAMPLED : 0));
  if (!c) return MLT_ENOMEM;
  *out = c;
  return MLT_OK;
}
