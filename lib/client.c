/* lib/client.c: update_current_trace and the client API (explicit ids). */
#include "span-internal.h"

int mlt_update_trace_ctx(const mlt_context *ctx, const mlt_trace_update *u) {
  if (!ctx || !u) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  if (!(ctx->flags & MLT__CF_SAMPLED)) return MLT_ENOTRECORDING;
  if (!ctx->trace || ctx->epoch != atomic_load(&mlt__g_epoch)) return MLT_ENOTFOUND;
  return mlt__trace_update(ctx->trace, u);
}

int mlt_update_trace(mlt_span span, const mlt_trace_update *u) {
  if (!u) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  if (span.id_ == 0 || mlt__h_is_nonrec(span)) return MLT_ENOTRECORDING;
  uint64_t gs;
  mlt__span *s = mlt__span_get(span, &gs);
  if (!s) return MLT_ESTALE;
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return MLT_ESTALE;
  int rc = mlt__trace_update(t, u);
  mlt__trace_unref(t);
  return rc;
}

int mlt_update_current_trace(const mlt_trace_update *u) {
  if (!u) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt__tls *tls = mlt__tls_get();
  if (!tls) return MLT_ENOMEM;
  if (tls->nonrec_depth) return MLT_ENOTRECORDING;
  mlt_span cur = mlt_current_span();
  if (cur.id_) return mlt_update_trace(cur, u);
  if (tls->attached) return mlt_update_trace_ctx(tls->attached, u);
  return MLT_ENOTFOUND;
}

/* ---- lookups by id ---------------------------------------------------- */

/* Span |sid| of trace (hi, lo): its id maps back to its slot (no registry).
 * On success the trace is referenced (*tp; the caller unrefs it). */
static int find_span(uint64_t hi, uint64_t lo, uint64_t sid, mlt_span *out, mlt__trace **tp) {
  mlt_span h = {mlt__handle_from_id(sid, 0)};
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s || s->span_id != sid) return MLT_ENOTFOUND;
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return MLT_ENOTFOUND;
  if (t->id_hi != hi || t->id_lo != lo) {
    mlt__trace_unref(t);
    return MLT_ENOTFOUND;
  }
  *out = h;
  *tp = t;
  return MLT_OK;
}

/* |h| is the root of a live trace with id (hi, lo): that trace, referenced. */
static mlt__trace *root_trace(mlt_span h, uint64_t hi, uint64_t lo) {
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s) return NULL;
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return NULL;
  if (t->id_hi != hi || t->id_lo != lo || t->root.id_ != h.id_) {
    mlt__trace_unref(t);
    return NULL;
  }
  return t;
}

/* The root of trace (hi, lo).  A trace started here is found from its id;
 * one with a foreign id (remote parent, continuation) through the registry,
 * which also wins over a finished trace with the same id. */
static int find_root(uint64_t hi, uint64_t lo, mlt_span *out, mlt__trace **tp) {
  mlt_span h = {mlt__handle_from_id(lo, 1)};
  mlt__trace *t = root_trace(h, hi, lo);
  if (t && atomic_load_explicit(&t->state, memory_order_acquire) == MLT__T_ACTIVE) goto found;
  mlt_span rh;
  if (mlt__registry_get(hi, lo, 0, &rh) == 0) {
    mlt__trace *rt = root_trace(rh, hi, lo);
    if (rt) {
      if (t) mlt__trace_unref(t);
      t = rt;
      h = rh;
    }
  }
  if (!t) return MLT_ENOTFOUND;
found:
  *out = h;
  *tp = t;
  return MLT_OK;
}

/* For other modules (assess.c): the trace (hi, lo) while it is in memory,
 * referenced (the caller unrefs it), or NULL. */
mlt__trace *mlt__trace_find(uint64_t hi, uint64_t lo) {
  mlt_span h;
  mlt__trace *t = NULL;
  return find_root(hi, lo, &h, &t) == MLT_OK ? t : NULL;
}

int mlt_update_trace_by_id(const char *trace_id, const mlt_trace_update *u) {
  if (!trace_id || !u) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  uint64_t hi, lo;
  if (mlt__parse_trace_id(trace_id, &hi, &lo) != 0) return MLT_EINVAL;
  mlt_span root;
  mlt__trace *t;
  int rc = find_root(hi, lo, &root, &t);
  if (rc) return rc;
  rc = mlt__trace_update(t, u);
  mlt__trace_unref(t);
  return rc;
}

/* Fill |out| for span |h| just started here. */
static int fill_ids(mlt_span h, mlt_client_span *out) {
  out->span = h;
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s) return MLT_ESTALE;
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return MLT_ESTALE;
  int rc = mlt__span_ids(s, gs, t, out->trace_id, out->span_id);
  mlt__trace_unref(t);
  return rc;
}

static void clear_out(mlt_client_span *out) {
  out->trace_id[0] = '\0';
  out->span_id[0] = '\0';
  out->span.id_ = 0;
}

int mlt_client_start_trace(const char *name, mlt_span_type type, const char *inputs_json, mlt_client_span *out) {
  if (!out) return MLT_EINVAL;
  clear_out(out);
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt__start_opts o = {NULL, NULL, name ? name : "trace", MLT_NTS, NULL, 0, type, 0};
  mlt_span h = mlt__span_client_start(&o);
  out->span = h;
  if (h.id_ == 0 || mlt__h_is_nonrec(h)) return MLT_ENOTRECORDING;
  if (inputs_json) mlt__span_client_inputs(h, inputs_json);
  return fill_ids(h, out);
}

int mlt_client_start_span(const char *trace_id, const char *parent_span_id, const char *name, mlt_span_type type,
                          const char *inputs_json, mlt_client_span *out) {
  if (!out) return MLT_EINVAL;
  clear_out(out);
  if (!trace_id || !parent_span_id) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  uint64_t hi, lo, sid;
  if (mlt__parse_trace_id(trace_id, &hi, &lo) != 0 || mlt__parse_span_id(parent_span_id, &sid) != 0)
    return MLT_EINVAL;
  mlt_span parent;
  mlt__trace *t;
  int rc = find_span(hi, lo, sid, &parent, &t);
  if (rc) return rc;
  if (atomic_load_explicit(&t->state, memory_order_acquire) != MLT__T_ACTIVE || !MLT__ENABLED()) {
    mlt__trace_unref(t);
    return MLT__ENABLED() ? MLT_ENOTFOUND : MLT_ENOTRECORDING;
  }
  uint64_t gs;
  mlt__span *p = mlt__span_get(parent, &gs);
  mlt_span h = {0};
  if (p) {
    mlt__start_opts o = {NULL, p, name ? name : "span", MLT_NTS, NULL, 0, type, 0};
    h = mlt__span_client_start(&o);
  }
  mlt__trace_unref(t);
  out->span = h;
  if (h.id_ == 0 || mlt__h_is_nonrec(h)) return p ? MLT_ENOTRECORDING : MLT_ENOTFOUND;
  if (inputs_json) mlt__span_client_inputs(h, inputs_json);
  return fill_ids(h, out);
}

int mlt_client_end_span(const char *trace_id, const char *span_id, const char *outputs_json, mlt_span_status status,
                        const char *status_message) {
  if (!trace_id || !span_id || (unsigned)status > MLT_STATUS_ERROR) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  uint64_t hi, lo, sid;
  if (mlt__parse_trace_id(trace_id, &hi, &lo) != 0 || mlt__parse_span_id(span_id, &sid) != 0) return MLT_EINVAL;
  mlt_span h;
  mlt__trace *t;
  int rc = find_span(hi, lo, sid, &h, &t);
  if (rc) return rc;
  rc = mlt__span_client_finish(h, outputs_json, status, status_message);
  mlt__trace_unref(t);
  return rc;
}

int mlt_client_end_trace(const char *trace_id, const char *outputs_json, mlt_span_status status,
                         const char *status_message) {
  if (!trace_id || (unsigned)status > MLT_STATUS_ERROR) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  uint64_t hi, lo;
  if (mlt__parse_trace_id(trace_id, &hi, &lo) != 0) return MLT_EINVAL;
  mlt_span root;
  mlt__trace *t;
  int rc = find_root(hi, lo, &root, &t);
  if (rc) return rc;
  if (atomic_load_explicit(&t->state, memory_order_acquire) != MLT__T_ACTIVE) {
    mlt__trace_unref(t);
    return MLT_EENDED;
  }
  rc = mlt__span_client_finish(root, outputs_json, status, status_message);
  if (rc == MLT_ENOTFOUND) rc = MLT_EENDED;
  /* Children still open are ended now: the trace is complete. */
  if (atomic_load_explicit(&t->state, memory_order_acquire) == MLT__T_ACTIVE) {
    mlt__trace_force_finish(t, 3, "span was still open when its trace ended (end_trace)");
    if (rc == MLT_EENDED) rc = MLT_OK; /* root had ended; the trace is ended now */
  }
  mlt__trace_unref(t);
  return rc;
}

int mlt_client_get_span(const char *trace_id, const char *span_id, mlt_span *out) {
  if (!out) return MLT_EINVAL;
  out->id_ = 0;
  if (!trace_id || !span_id) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  uint64_t hi, lo, sid;
  if (mlt__parse_trace_id(trace_id, &hi, &lo) != 0 || mlt__parse_span_id(span_id, &sid) != 0) return MLT_EINVAL;
  mlt__trace *t;
  int rc = find_span(hi, lo, sid, out, &t);
  if (rc) {
    out->id_ = 0;
    return rc;
  }
  mlt__trace_unref(t);
  return MLT_OK;
}
