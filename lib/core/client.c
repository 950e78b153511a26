/* lib/core/client.c: update_current_trace and the client API (explicit ids).
 *
 * Layer: core -- uses spans (span.c), traces (trace.c), start options
 * (spanopts.c); includes core/ and util/.
 */
#include "core/scope-internal.h"

int mlt_update_trace_ctx(const mlt_context *ctx, const mlt_trace_update *u) {
  if (!ctx || !u) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  if (ctx->flags & MLT__CF_NOSPAN) return MLT_ENOTFOUND; /* only a scope: no trace */
  if (!(ctx->flags & MLT__CF_SAMPLED)) return MLT_ENOTRECORDING;
  if (!ctx->trace || ctx->epoch != atomic_load(&mlt__g_epoch)) return MLT_ENOTFOUND;
  return mlt__trace_update(ctx->trace, u);
}

int mlt_update_trace(mlt_span span, const mlt_trace_update *u) {
  if (!u) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  if (span.id_ == 0 || mlt__h_is_nonrec(span)) return MLT_ENOTRECORDING;
  mlt__trace *t = mlt__handle_trace(span);
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
  mlt_span h = {mlt__handle_from_id(sid)};
  mlt__trace *t = mlt__handle_trace(h); /* (also an ended span moved out of its slot: compact.c) */
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
static MLT_ALWAYS_INLINE mlt__trace *root_trace(mlt_span h, uint64_t hi, uint64_t lo) {
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
  mlt_span h = {mlt__handle_from_id(mlt__span_id_from_trace_lo(lo))};
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

static void clear_out(mlt_client_span *out) {
  out->trace_id[0] = '\0';
  out->span_id[0] = '\0';
  out->span.id_ = 0;
}

/* The bodies below are inlined twice: the plain calls (options NULL, end
 * time 0: constant-folded) and the _with / _at twins. */
static MLT_ALWAYS_INLINE int start_trace(const char *name, mlt_span_type type, const char *inputs_json,
                                         const mlt_span_options *so, mlt_client_span *out) {
  if (!out) return MLT_EINVAL;
  clear_out(out);
  mlt__start_opts x = {0};
  if (so && mlt__span_options_read(so, &x, 1) != MLT_OK) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  int rc = so ? mlt__span_client_start_with(name ? name : "trace", type, NULL, out, &x)
              : mlt__span_client_start(name ? name : "trace", type, NULL, out);
  if (rc != MLT_OK && rc != MLT_ENOMEM) return rc;
  if (inputs_json) mlt__span_client_inputs(out->span, inputs_json);
  if (so) mlt__span_options_apply(out->span, so);
  return rc;
}

int mlt__client_start_trace_general(const char *name, mlt_span_type type, const char *inputs_json,
                                    mlt_client_span *out) {
  return start_trace(name, type, inputs_json, NULL, out);
}

/* mlt_client_start_trace() is defined in lib/core/span.c: the common root
 * start in one frame (an alias of mlt__span_client_start_trace), which comes
 * back to the general path above for anything else. */

int mlt_client_start_trace_with(const char *name, mlt_span_type type, const char *inputs_json,
                                const mlt_span_options *so, mlt_client_span *out) {
  return start_trace(name, type, inputs_json, so, out);
}

static MLT_ALWAYS_INLINE int start_span(const char *trace_id, const char *parent_span_id, const char *name,
                                        mlt_span_type type, const char *inputs_json, const mlt_span_options *so,
                                        mlt_client_span *out) {
  if (!out) return MLT_EINVAL;
  clear_out(out);
  if (!trace_id || !parent_span_id) return MLT_EINVAL;
  mlt__start_opts x = {0};
  if (so && mlt__span_options_read(so, &x, 1) != MLT_OK) return MLT_EINVAL;
  x.flags &= ~MLT__SO_SAMPLE; /* a child joins its trace */
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
  if (!p) { /* an ended parent, moved out of its slot: its trace is |t| */
    struct mlt_context pc;
    mlt__context_on_stack(&pc, t, sid);
    x.parent_ctx = &pc;
    rc = mlt__span_client_start_with(name ? name : "span", type, NULL, out, &x);
  } else {
    rc = so ? mlt__span_client_start_with(name ? name : "span", type, p, out, &x)
            : mlt__span_client_start(name ? name : "span", type, p, out);
  }
  mlt__trace_unref(t);
  if (rc != MLT_OK && rc != MLT_ENOMEM) return rc;
  if (inputs_json) mlt__span_client_inputs(out->span, inputs_json);
  if (so) mlt__span_options_apply(out->span, so);
  return rc;
}

int mlt_client_start_span(const char *trace_id, const char *parent_span_id, const char *name, mlt_span_type type,
                          const char *inputs_json, mlt_client_span *out) {
  return start_span(trace_id, parent_span_id, name, type, inputs_json, NULL, out);
}

int mlt_client_start_span_with(const char *trace_id, const char *parent_span_id, const char *name,
                               mlt_span_type type, const char *inputs_json, const mlt_span_options *so,
                               mlt_client_span *out) {
  return start_span(trace_id, parent_span_id, name, type, inputs_json, so, out);
}

static MLT_ALWAYS_INLINE int end_span(const char *trace_id, const char *span_id, const char *outputs_json,
                                      mlt_span_status status, const char *status_message, int64_t end_ns) {
  if (!trace_id || !span_id || (unsigned)status > MLT_STATUS_ERROR || end_ns < 0) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  uint64_t hi, lo, sid;
  if (mlt__parse_trace_id(trace_id, &hi, &lo) != 0 || mlt__parse_span_id(span_id, &sid) != 0) return MLT_EINVAL;
  mlt_span h;
  mlt__trace *t;
  int rc = find_span(hi, lo, sid, &h, &t);
  if (rc) return rc;
  rc = end_ns ? mlt__span_client_finish_at(h, outputs_json, status, status_message, end_ns)
              : mlt__span_client_finish(h, outputs_json, status, status_message);
  mlt__trace_unref(t);
  return rc;
}

int mlt_client_end_span(const char *trace_id, const char *span_id, const char *outputs_json, mlt_span_status status,
                        const char *status_message) {
  return end_span(trace_id, span_id, outputs_json, status, status_message, 0);
}

int mlt_client_end_span_at(const char *trace_id, const char *span_id, const char *outputs_json,
                           mlt_span_status status, const char *status_message, int64_t end_ns) {
  return end_span(trace_id, span_id, outputs_json, status, status_message, end_ns);
}

static MLT_ALWAYS_INLINE int end_trace(const char *trace_id, const char *outputs_json, mlt_span_status status,
                                       const char *status_message, int64_t end_ns) {
  if (!trace_id || (unsigned)status > MLT_STATUS_ERROR || end_ns < 0) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  uint64_t hi, lo;
  if (mlt__parse_trace_id(trace_id, &hi, &lo) != 0) return MLT_EINVAL;
  int rc;
  if (!outputs_json && !status_message && status != MLT_STATUS_ERROR && !end_ns &&
      MLT_LIKELY((rc = mlt__span_client_end_root(hi, lo, status)) != MLT__CLIENT_SLOW))
    return rc;
  mlt_span root;
  mlt__trace *t;
  rc = find_root(hi, lo, &root, &t);
  if (rc) return rc;
  if (atomic_load_explicit(&t->state, memory_order_acquire) != MLT__T_ACTIVE) {
    mlt__trace_unref(t);
    return MLT_EENDED;
  }
  rc = end_ns ? mlt__span_client_finish_at(root, outputs_json, status, status_message, end_ns)
              : mlt__span_client_finish(root, outputs_json, status, status_message);
  if (rc == MLT_ENOTFOUND) rc = MLT_EENDED;
  /* Children still open are ended now (at the trace's end time): the trace
   * is complete. */
  if (atomic_load_explicit(&t->state, memory_order_acquire) == MLT__T_ACTIVE) {
    mlt__trace_force_finish_at(t, 3, "span was still open when its trace ended (end_trace)", end_ns);
    if (rc == MLT_EENDED) rc = MLT_OK; /* root had ended; the trace is ended now */
  }
  mlt__trace_unref(t);
  return rc;
}

int mlt__client_end_trace_general(const char *trace_id, const char *outputs_json, mlt_span_status status,
                                  const char *status_message) {
  return end_trace(trace_id, outputs_json, status, status_message, 0);
}

/* mlt_client_end_trace() is defined in lib/core/span.c: the id this thread
 * was just given in one pass (an alias of mlt__span_client_end_trace), which
 * comes back to the general path above for anything else. */
int mlt_client_end_trace_at(const char *trace_id, const char *outputs_json, mlt_span_status status,
                            const char *status_message, int64_t end_ns) {
  return end_trace(trace_id, outputs_json, status, status_message, end_ns);
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
