/* lib/context.c: explicit contexts, attach/detach, W3C traceparent. */
#include "span-internal.h"

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
  return c;
}

mlt_context *mlt_context_retain(mlt_context *ctx) {
  if (ctx) atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
  return ctx;
}

void mlt_context_release(mlt_context *ctx) {
  if (!ctx || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1) return;
  /* After mlt_shutdown() the trace link is dead memory: do not touch it. */
  if (ctx->trace && ctx->epoch == epoch_now() && atomic_load(&mlt__g_state) != MLT__G_OFF) {
    if (ctx->flags & MLT__CF_HOLD) mlt__trace_leave(ctx->trace);
    mlt__trace_unref(ctx->trace);
  }
  free(ctx);
}

mlt_context *mlt_context_capture(mlt_span h) {
  if (!mlt__running()) return NULL;
  if (mlt__h_is_nonrec(h)) return mlt__context_new(NULL, 0, 0, 0, 0);
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s) return NULL;
  int open = MLT__GS_STATE(gs) == MLT__S_OPEN;
  if (open && s->ctx) return mlt_context_retain(s->ctx);
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return NULL;
  mlt_context *c = mlt__context_new(t, t->id_hi, t->id_lo, s->span_id, MLT__CF_SAMPLED);
  /* Cache it on an open span (owner thread): later captures are free. */
  if (c && open && !s->ctx) s->ctx = mlt_context_retain(c);
  return c;
}

mlt_context *mlt_context_current(void) {
  if (!mlt__running()) return NULL;
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return NULL;
  if (tls->nonrec_depth) return mlt__context_new(NULL, 0, 0, 0, 0);
  mlt_span cur = mlt_current_span();
  if (cur.id_) return mlt_context_capture(cur);
  return mlt_context_retain(tls->attached);
}

mlt_context *mlt_context_hold(mlt_context *ctx) {
  if (!ctx) return NULL;
  if (ctx->trace && ctx->epoch == epoch_now() && mlt__running() && mlt__trace_join(ctx->trace)) {
    mlt__trace_ref(ctx->trace);
    mlt_context *h = mlt__context_new(ctx->trace, ctx->trace_hi, ctx->trace_lo, ctx->span_id,
                                      ctx->flags | MLT__CF_HOLD);
    if (h) return h;
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
  f->serial = ++tls->serial;
  tls->depth++;
  tls->cur.id_ = 0;
  tls->nonrec_depth = 0;
  tls->attached = ctx;
  tok.depth_ = tls->depth;
  tok.serial_ = f->serial;
  return tok;
}

int mlt_context_detach(mlt_attach_token tok) {
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return MLT_ENOMEM;
  if (tok.serial_ == UINT32_MAX && tls->overflow_attach && tok.depth_ == MLT__MAX_ATTACH + tls->overflow_attach) {
    tls->overflow_attach--;
    return MLT_OK;
  }
  if (tok.depth_ == 0 || tok.depth_ != tls->depth || tls->overflow_attach ||
      tls->frames[tls->depth - 1].serial != tok.serial_) {
    mlt__count_misuse("mlt_context_detach (not the innermost attach of this thread)", MLT_EMISMATCH);
    return MLT_EMISMATCH;
  }
  mlt__attach_frame *f = &tls->frames[--tls->depth];
  tls->cur = f->saved_cur;
  tls->nonrec_depth = f->saved_nonrec;
  tls->attached = tls->depth ? tls->frames[tls->depth - 1].ctx : NULL;
  mlt_context *c = f->ctx;
  f->ctx = NULL;
  mlt_context_release(c);
  return MLT_OK;
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
