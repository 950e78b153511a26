/* lib/core/spanopts.c: span start options (<mltrace/span_options.h>): explicit
 * start and end times, links, description, log level, sampling ratio for
 * one root.
 *
 * The starts go through span.c's general start (mlt__span_start_ex), which
 * takes the start time and the sampling threshold in mlt__start_opts; links,
 * description and log level are records appended to the new span by its
 * owner, as the setters of span-set.c do.  A link is a LINK record followed by
 * its attributes as FIELD children (the layout of an event); the description
 * is the attribute mlflow.spanDescription and the level the attribute
 * mlflow.spanLogLevel (an integer), as MLflow's LiveSpan sets them.  The
 * serializers (serialize.c, otlp.c) write the links and compute the level
 * from the records in order, as MLflow does at span end.
 *
 * Layer: core -- appends records to spans its caller owns; includes core/ and util/.
 */
#include "core/scope-internal.h"

/* ---- helpers ---------------------------------------------------------- */

/* The open span of |h| (its owner calls), or NULL with *rc the reason; a
 * stale or ended handle is counted as misuse, as every span call does. */
static mlt__span *open_span(mlt_span h, const char *what, int *rc) {
  uint64_t gs;
  mlt__span *s = mlt__span_get(h, &gs);
  if (MLT_LIKELY(s && MLT__GS_STATE(gs) == MLT__S_OPEN)) return s;
  if (s || mlt__h_moved(h))
    *rc = MLT_EENDED;
  else if (h.id_ == 0 || mlt__h_is_nonrec(h))
    *rc = MLT_ENOTRECORDING;
  else
    *rc = mlt__running() ? MLT_ESTALE : MLT_ENOTINIT;
  if (*rc == MLT_EENDED || *rc == MLT_ESTALE) mlt__count_misuse(what, *rc);
  return NULL;
}

/* 0 (MLflow's rule) or one of SpanLogLevel's values. */
static int valid_level(int level) { return level >= 0 && level <= 50 && level % 10 == 0; }

/* The ids a link names (MLT_OK), or MLT_EINVAL. */
static int link_ids(const mlt_link *l, uint64_t *hi, uint64_t *lo, uint64_t *sid) {
  if (!l) return MLT_EINVAL;
  if (l->ctx) {
    *hi = l->ctx->trace_hi;
    *lo = l->ctx->trace_lo;
    *sid = l->ctx->span_id;
    if (!(*hi | *lo) || !*sid) return MLT_EINVAL;
  } else if (mlt__parse_trace_id(l->trace_id, hi, lo) != 0 || mlt__parse_span_id(l->span_id, sid) != 0) {
    return MLT_EINVAL;
  }
  if (l->n_attrs && !l->attrs) return MLT_EINVAL;
  for (size_t i = 0; i < l->n_attrs; i++)
    if (!l->attrs[i].key || (unsigned)l->attrs[i].type > MLT_ATTR_JSON) return MLT_EINVAL;
  return MLT_OK;
}

static int options_size_ok(const mlt_span_options *so) {
  return so->struct_size >= offsetof(mlt_span_options, sampling_ratio) + sizeof so->sampling_ratio;
}

/* ---- options ---------------------------------------------------------- */

int mlt__span_options_read(const mlt_span_options *so, mlt__start_opts *o, int strict) {
  if (!so) return MLT_OK;
  if (!options_size_ok(so)) {
    if (strict) return MLT_EINVAL;
    mlt__count_misuse("span options: struct_size (use MLT_SPAN_OPTIONS(); options ignored)", MLT_EINVAL);
    return MLT_OK;
  }
  if (so->start_time_ns < 0) {
    if (strict) return MLT_EINVAL;
    mlt__count_misuse("span options: start_time_ns < 0 (the span starts now)", MLT_EINVAL);
  } else {
    o->start_ns = so->start_time_ns;
  }
  if (so->sampling_override) {
    double r = so->sampling_ratio;
    if (!(r >= 0.0 && r <= 1.0)) { /* NaN included */
      if (strict) return MLT_EINVAL;
      mlt__count_misuse("span options: sampling_ratio outside 0..1 (ignored)", MLT_EINVAL);
    } else {
      o->flags |= MLT__SO_SAMPLE;
      o->sample_threshold = r >= 1.0 ? (UINT64_C(1) << 53) : (uint64_t)(r * 9007199254740992.0);
    }
  }
  if (strict) {
    if (!valid_level((int)so->log_level)) return MLT_EINVAL;
    if (so->n_links && !so->links) return MLT_EINVAL;
    for (size_t i = 0; i < so->n_links; i++) {
      uint64_t hi, lo, sid;
      if (link_ids(&so->links[i], &hi, &lo, &sid) != MLT_OK) return MLT_EINVAL;
    }
  }
  return MLT_OK;
}

void mlt__span_options_apply(mlt_span h, const mlt_span_options *so) {
  if (!so || !options_size_ok(so) || h.id_ == 0 || mlt__h_is_nonrec(h)) return;
  if (so->description) mlt_span_set_description(h, so->description);
  if (so->log_level != MLT_SPAN_LEVEL_DEFAULT && mlt_span_set_log_level(h, so->log_level) == MLT_EINVAL)
    mlt__count_misuse("span options: log_level (ignored)", MLT_EINVAL);
  if (so->n_links && !so->links) {
    mlt__count_misuse("span options: n_links without links (ignored)", MLT_EINVAL);
    return;
  }
  for (size_t i = 0; i < so->n_links; i++)
    if (mlt_span_add_link(h, &so->links[i]) == MLT_EINVAL)
      mlt__count_misuse("span options: a link without valid ids (skipped, as MLflow does)", MLT_EINVAL);
}

/* ---- starts ----------------------------------------------------------- */

static mlt_span start_with(int mode, const mlt_context *pctx, mlt_span parent, mlt__start_opts *o,
                           const mlt_span_options *so) {
  if (!MLT__ENABLED()) return (mlt_span){0};
  mlt__span_options_read(so, o, 0);
  mlt_span h = mlt__span_start_ex(mode, pctx, parent, o);
  mlt__span_options_apply(h, so);
  return h;
}

mlt_span mlt_span_start_with(const char *name, mlt_span_type type, const mlt_span_options *so) {
  mlt__start_opts o = {.name = name, .name_len = MLT_NTS, .type = type};
  return start_with(MLT__SM_HERE, NULL, (mlt_span){0}, &o, so);
}

mlt_span mlt_span_start_in_with(const mlt_context *parent, const char *name, mlt_span_type type,
                                const mlt_span_options *so) {
  mlt__start_opts o = {.name = name, .name_len = MLT_NTS, .type = type};
  return start_with(MLT__SM_IN, parent, (mlt_span){0}, &o, so);
}

mlt_span mlt_span_start_child_with(mlt_span parent, const char *name, mlt_span_type type,
                                   const mlt_span_options *so) {
  mlt__start_opts o = {.name = name, .name_len = MLT_NTS, .type = type};
  return start_with(MLT__SM_CHILD, NULL, parent, &o, so);
}

mlt_span mlt__span_start_fn_with(const char *func, size_t func_len, const char *name, size_t name_len,
                                 mlt_span_type type, const mlt_span_options *so) {
  mlt__start_opts o = {.name = name, .name_len = name_len, .type = type};
  if (func) {
    if (func_len == MLT_NTS) func_len = strlen(func);
    o.func = func;
    o.func_len = func_len;
    if (!name) { /* one record for both */
      o.name = func;
      o.name_len = func_len;
      o.flags = MLT__SO_FUNC_NAME;
    }
  }
  return start_with(MLT__SM_HERE, NULL, (mlt_span){0}, &o, so);
}

/* ---- setters ---------------------------------------------------------- */

int mlt_span_end_at(mlt_span h, int64_t end_ns) { return mlt__span_end_at(h, end_ns); }

int mlt_span_add_link(mlt_span h, const mlt_link *l) {
  uint64_t hi, lo, sid;
  if (link_ids(l, &hi, &lo, &sid) != MLT_OK) return MLT_EINVAL;
  int rc = MLT_OK;
  mlt__span *s = open_span(h, "mlt_span_add_link", &rc);
  if (!s) return rc;
  if (s->n_links >= MLT__MAX_LINKS) {
    if (s->n_links_dropped < UINT16_MAX) s->n_links_dropped++;
    return MLT_EFULL;
  }
  rc = mlt__append_link(s, hi, lo, sid, l->attrs, l->n_attrs);
  if (rc == MLT_OK) s->n_links++;
  return rc;
}

int mlt_span_set_description(mlt_span h, const char *description) {
  if (!description) return MLT_EINVAL;
  return mlt_span_set_attr_str(h, "mlflow.spanDescription", description);
}

int mlt_span_set_log_level(mlt_span h, mlt_span_level level) {
  if (!valid_level((int)level)) return MLT_EINVAL;
  /* 0 records "not set": the serializers then apply MLflow's rule */
  return mlt_span_set_attr_int(h, "mlflow.spanLogLevel", (int64_t)level);
}
