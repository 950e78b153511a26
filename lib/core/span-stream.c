/* lib/core/span-stream.c: streamed output -- chunk records (one event per
 * chunk, up to the event cap) and the output reducer that turns a span's
 * chunks into its outputs when it ends.  Core layer: touches the span it was
 * given (its records and chunk counters) and the per-thread counters only.
 */
#include "core/record-internal.h"
#include "core/scope-internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- streaming ------------------------------------------------------- */

static int add_chunk(mlt_span h, int sub, const char *data, size_t len, const char *what) {
  if (!data && len) return mlt__span_report(what, MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, what);
  if (len == MLT_NTS) len = data ? strlen(data) : 0;
  int64_t now = mlt__now_ns();
  if (s->n_chunks < mlt__g_cfg.max_events_per_span) {
    if (s->n_events < mlt__g_cfg.max_events_per_span) s->n_events++;
  } else {
    s->n_events_dropped++;
    mlt__tls *tls = mlt__tls_get();
    if (tls) tls->c.events_dropped++;
    /* Past the event cap a chunk is kept only to compute the default
     * output; with outputs set explicitly (and no reducer) it is not needed. */
    if ((s->flags & MLT__SF_OUTPUTS) && !s->reducer) {
      s->n_chunks++;
      return MLT_OK;
    }
  }
  int rc = mlt__append_value(s, MLT__R_CHUNK, sub, (const char *)&now, 8, data ? data : "", len, 0);
  if (rc) return rc;
  s->n_chunks++;
  s->flags |= MLT__SF_HAS_CHUNKS;
  if (sub != MLT__V_STR) s->flags &= (uint8_t)~MLT__SF_TEXT_ONLY;
  return MLT_OK;
}

int mlt_span_add_chunk_json(mlt_span h, const char *json, size_t len) {
  return add_chunk(h, MLT__V_JSON, json, len, "mlt_span_add_chunk_json");
}
int mlt_span_add_chunk_text(mlt_span h, const char *text, size_t len) {
  return add_chunk(h, MLT__V_STR, text, len, "mlt_span_add_chunk_text");
}

int mlt_span_set_output_reducer(mlt_span h, mlt_output_reducer_fn fn, void *user_data) {
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_output_reducer");
  s->reducer = fn;
  s->reducer_ud = user_data;
  return MLT_OK;
}

