/* lib/export/spool-internal.h: the durable spool of the network exporters
 * (lib/export/spool.c).  Export thread only. */
#ifndef MLT_SPOOL_INTERNAL_H
#define MLT_SPOOL_INTERNAL_H

#include "util/json-internal.h"

typedef struct mlt__spool mlt__spool;

/* One record: the traces of one OTLP request.  |otlp| is the request body
 * (empty: the spans are stored already, only TraceInfos are left);
 * infos[i] is trace i's StartTraceV3 part (empty: none needed). */
typedef struct mlt__spool_rec {
  uint32_t n_traces;
  mlt__buf otlp;
  mlt__buf *infos; /* n_traces entries */
  /* where it came from (spool.c) */
  struct mlt__spool_seg *seg;
  uint64_t off;
} mlt__spool_rec;

/* Where and how much to spool (from the resolved options, given to the
 * network exporters when they start). */
typedef struct mlt__spool_settings {
  int enabled;
  const char *dir;    /* NULL or "": the default directory */
  uint64_t max_bytes; /* 0: 1 GiB */
} mlt__spool_settings;

/* The spool of one destination: |kind| ("mlflow", "otlp") and |target|
 * (what identifies the destination: URL, experiment) name a directory under
 * |st|'s spool directory.  NULL when the spool is off.  Nothing is created on
 * disk until the first record is written. */
mlt__spool *mlt__spool_open(const char *kind, const char *target, const mlt__spool_settings *st);
void mlt__spool_close(mlt__spool *s);
/* Append one record (|n| traces); 0 on success, -1 when it could not be
 * written (the caller then counts the traces as failed).  Evicts the
 * oldest records when the spool would pass its byte bound. */
int mlt__spool_put(mlt__spool *s, const char *otlp, size_t otlp_len, uint32_t n, const mlt__buf *const *infos,
                   size_t n_infos);
/* Take the next record to deliver (this run's, or left by an earlier run):
 * 1 with *out filled, 0 when there is none.  The record stays on disk until
 * mlt__spool_done(). */
int mlt__spool_take(mlt__spool *s, mlt__spool_rec **out);
/* Give a taken record back undelivered (it is taken again later); frees
 * it. */
void mlt__spool_release(mlt__spool *s, mlt__spool_rec *rec);
/* A taken record was delivered (or its traces were re-spooled or given
 * up): forget it, and free it. */
void mlt__spool_done(mlt__spool *s, mlt__spool_rec *rec);
/* Count the outcome of one replayed trace (replayed, or evicted when it
 * failed for good). */
void mlt__spool_replayed_outcome(mlt__spool *s, int outcome, const char *why);
/* Bytes of records not yet taken, in the segments this process knows (0
 * for NULL). */
uint64_t mlt__spool_waiting(const mlt__spool *s);
/* In the child of fork(): close the parent's spool files (pipeline.c). */
void mlt__spool_atfork_child(void);

#endif /* MLT_SPOOL_INTERNAL_H */
