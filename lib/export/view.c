/* lib/export/view.c: the span processor's view (redaction before export).  Setters
 * append records to the span's log; the digest keeps the last one.  It runs
 * in the pipeline, on the export thread before any exporter sees the trace,
 * so it is on the pipeline side: it may write spans (core/span-internal.h). */
#include "core/span-internal.h"
#include "export/exporter-internal.h"

static const char *cstr(mlt_span_view *v, const char *p, size_t n, size_t *len) {
  mlt__buf_reset(&v->tmp);
  mlt__buf_put(&v->tmp, p, n);
  if (len) *len = n;
  return mlt__buf_cstr(&v->tmp);
}

const char *mlt_span_view_name(const mlt_span_view *cv) {
  mlt_span_view *v = (mlt_span_view *)cv;
  if (!v) return NULL;
  mlt__digest *d = mlt__scratch_digest();
  mlt__digest_span(d, v->s);
  return cstr(v, d->name, d->name_len, NULL);
}

const char *mlt_span_view_type(const mlt_span_view *cv) {
  mlt_span_view *v = (mlt_span_view *)cv;
  if (!v) return NULL;
  mlt__digest *d = mlt__scratch_digest();
  mlt__digest_span(d, v->s);
  return cstr(v, d->type, d->type_len, NULL);
}

static const char *value_text(mlt_span_view *v, const mlt__rec *r, size_t *len) {
  if (!r) {
    if (len) *len = 0;
    return NULL;
  }
  mlt__buf_reset(&v->tmp);
  mlt__value_json(&v->tmp, r);
  if (len) *len = v->tmp.len;
  return mlt__buf_cstr(&v->tmp);
}

const char *mlt_span_view_inputs(mlt_span_view *v, size_t *len) {
  if (!v) return NULL;
  mlt__digest *d = mlt__scratch_digest();
  mlt__digest_span(d, v->s);
  return value_text(v, d->inputs, len);
}

const char *mlt_span_view_outputs(mlt_span_view *v, size_t *len) {
  if (!v) return NULL;
  mlt__digest *d = mlt__scratch_digest();
  mlt__digest_span(d, v->s);
  return value_text(v, d->outputs, len);
}

const char *mlt_span_view_attr(mlt_span_view *v, const char *key, size_t *len) {
  if (!v || !key) return NULL;
  mlt__digest *d = mlt__scratch_digest();
  mlt__digest_span(d, v->s);
  size_t kl = strlen(key);
  for (size_t i = 0; i < d->n_attrs; i++)
    if (d->attrs[i]->key_len == kl && !memcmp(mlt__rec_key(d->attrs[i]), key, kl))
      return value_text(v, d->attrs[i], len);
  if (len) *len = 0;
  return NULL;
}

static int set_io(mlt_span_view *v, int kind, const char *json) {
  if (!v) return MLT_EINVAL;
  if (!json) return mlt__append_value(v->s, kind, MLT__V_NONE, NULL, 0, NULL, 0, 0);
  return mlt__append_value(v->s, kind, MLT__V_JSON, NULL, 0, json, strlen(json), 0);
}

int mlt_span_view_set_inputs_json(mlt_span_view *v, const char *json) { return set_io(v, MLT__R_INPUTS, json); }
int mlt_span_view_set_outputs_json(mlt_span_view *v, const char *json) { return set_io(v, MLT__R_OUTPUTS, json); }

int mlt_span_view_set_attr_str(mlt_span_view *v, const char *key, const char *value) {
  if (!v || !key || !value) return MLT_EINVAL;
  return mlt__append_value(v->s, MLT__R_ATTR, MLT__V_STR, key, strlen(key), value, strlen(value), 0);
}

int mlt_span_view_remove_attr(mlt_span_view *v, const char *key) {
  if (!v || !key) return MLT_EINVAL;
  return mlt__append_value(v->s, MLT__R_REMOVE_ATTR, MLT__V_NONE, key, strlen(key), NULL, 0, 0);
}

int mlt_span_view_drop_events(mlt_span_view *v) {
  if (!v) return MLT_EINVAL;
  v->s->n_events_dropped = 0;
  return mlt__append_value(v->s, MLT__R_DROP_EVENTS, MLT__V_NONE, NULL, 0, NULL, 0, 0);
}
