/* lib/spool.c: the durable spool (placeholder: off). */
#include "spool-internal.h"
#include "exporter-internal.h"

mlt__spool *mlt__spool_open(const char *kind, const char *target) {
  (void)kind;
  (void)target;
  return NULL;
}
void mlt__spool_close(mlt__spool *s) { (void)s; }
int mlt__spool_put(mlt__spool *s, const char *otlp, size_t otlp_len, uint32_t n, const mlt__buf *const *infos,
                   size_t n_infos) {
  (void)s;
  (void)otlp;
  (void)otlp_len;
  (void)n;
  (void)infos;
  (void)n_infos;
  return -1;
}
int mlt__spool_take(mlt__spool *s, mlt__spool_rec **out) {
  (void)s;
  (void)out;
  return 0;
}
void mlt__spool_done(mlt__spool *s, mlt__spool_rec *rec) {
  (void)s;
  (void)rec;
}
void mlt__spool_replayed_outcome(mlt__spool *s, int outcome, const char *why) {
  (void)s;
  (void)outcome;
  (void)why;
}
uint64_t mlt__spool_waiting(const mlt__spool *s) {
  (void)s;
  return 0;
}
