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

static int lookup(const char *trace_id, const char *span_id, mlt_span *out) {
  uint64_t hi, lo, sid = 0;
  if (mlt__parse_trace_id(trace_id, &hi, &lo) != 0) return MLT_EINVAL;
  if (span_id && mlt__parse_span_id(span_id, &sid) != 0) return MLT_EINVAL;
  if (mlt__registry_get(hi, lo, sid, out) != 0) return MLT_ENOTFOUND;
  return MLT_OK;
}

int mlt_update_trace_by_id(const char *trace_id, const mlt_trace_update *u) {
  if (!trace_id || !u) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt_span root;
  int rc = lookup(trace_id, NULL, &root);
  if (rc) return rc;
  rc = mlt_update_trace(root, u);
  return rc == MLT_ESTALE ? MLT_ENOTFOUND : rc;
}

static int fill_ids(mlt_span h, mlt_client_span *out) {
  out->span = h;
  int rc = mlt_span_get_trace_id(h, out->trace_id, sizeof out->trace_id);
  if (!rc) rc = mlt_span_get_span_id(h, out->span_id, sizeof out->span_id);
  return rc;
}

int mlt_client_start_trace(const char *name, mlt_span_type type, const char *inputs_json, mlt_client_span *out) {
  if (!out) return MLT_EINVAL;
  memset(out, 0, sizeof *out);
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt_span h = mlt_span_start_in(NULL, name ? name : "trace", type);
  out->span = h;
  if (h.id_ == 0 || mlt__h_is_nonrec(h)) return MLT_ENOTRECORDING;
  if (inputs_json) mlt_span_set_inputs_json(h, inputs_json);
  return fill_ids(h, out);
}

int mlt_client_start_span(const char *trace_id, const char *parent_span_id, const char *name, mlt_span_type type,
                          const char *inputs_json, mlt_client_span *out) {
  if (!out) return MLT_EINVAL;
  memset(out, 0, sizeof *out);
  if (!trace_id || !parent_span_id) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt_span parent;
  int rc = lookup(trace_id, parent_span_id, &parent);
  if (rc) return rc;
  uint64_t gs;
  mlt__span *p = mlt__span_get(parent, &gs);
  if (!p) return MLT_ENOTFOUND;
  mlt__trace *t = mlt__trace_acquire_from_span(p, MLT__GS_GEN(gs));
  if (!t) return MLT_ENOTFOUND;
  if (atomic_load(&t->state) != MLT__T_ACTIVE || !MLT__ENABLED()) {
    mlt__trace_unref(t);
    return MLT__ENABLED() ? MLT_ENOTFOUND : MLT_ENOTRECORDING;
  }
  mlt__tls *tls = mlt__tls_get();
  mlt_span h = tls ? mlt__span_start_common(tls, NULL, p, name ? name : "span", type, 0) : (mlt_span){0};
  mlt__trace_unref(t);
  out->span = h;
  if (h.id_ == 0 || mlt__h_is_nonrec(h)) return MLT_ENOTRECORDING;
  if (inputs_json) mlt_span_set_inputs_json(h, inputs_json);
  return fill_ids(h, out);
}

static int finish_span(mlt_span h, const char *outputs_json, mlt_span_status status, const char *message) {
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (!s) return MLT_ENOTFOUND;
  if (MLT__GS_STATE(gs) != MLT__S_OPEN) return MLT_EENDED;
  if (outputs_json) mlt_span_set_outputs_json(h, outputs_json);
  if (status != MLT_STATUS_UNSET || message) mlt_span_set_status(h, status, message);
  return mlt_span_end(h);
}

int mlt_client_end_span(const char *trace_id, const char *span_id, const char *outputs_json, mlt_span_status status,
                        const char *status_message) {
  if (!trace_id || !span_id || (unsigned)status > MLT_STATUS_ERROR) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt_span h;
  int rc = lookup(trace_id, span_id, &h);
  if (rc) return rc;
  return finish_span(h, outputs_json, status, status_message);
}

int mlt_client_end_trace(const char *trace_id, const char *outputs_json, mlt_span_status status,
                         const char *status_message) {
  if (!trace_id || (unsigned)status > MLT_STATUS_ERROR) return MLT_EINVAL;
  if (!mlt__running()) return MLT_ENOTINIT;
  mlt_span root;
  int rc = lookup(trace_id, NULL, &root);
  if (rc) return rc;
  uint64_t gs;
  mlt__span *s = mlt__span_get(root, &gs);
  if (!s) return MLT_ENOTFOUND;
  mlt__trace *t = mlt__trace_acquire_from_span(s, MLT__GS_GEN(gs));
  if (!t) return MLT_ENOTFOUND;
  if (atomic_load(&t->state) != MLT__T_ACTIVE) {
    mlt__trace_unref(t);
    return MLT_EENDED;
  }
  rc = finish_span(root, outputs_json, status, status_message);
  if (rc == MLT_ENOTFOUND) rc = MLT_EENDED;
  /* Children still open are ended now: the trace is complete. */
  if (atomic_load(&t->state) == MLT__T_ACTIVE) {
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
  int rc = lookup(trace_id, span_id, out);
  if (rc) return rc;
  uint64_t gs;
  if (!mlt__span_get(*out, &gs)) {
    out->id_ = 0;
    return MLT_ENOTFOUND;
  }
  return MLT_OK;
}
