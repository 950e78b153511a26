/* lib/core/scope-internal.h: the scoped context (mlflow.tracing.context) and the
 * span start options of issue 12 part B (lib/core/scope.c, lib/core/spanopts.c).
 *
 * A scope is an immutable, reference-counted object holding what applies to
 * every trace started while it is in effect: tags, metadata, session, user
 * (already merged with the scopes it is nested in, inner values winning, as
 * MLflow's context() merges its dicts) and whether tracing is on.  A thread
 * has at most one scope in effect (mlt__tls.scope, borrowed from the attach
 * frame that brought it: mlt_trace_scope_enter() or attaching a context that
 * carries one); a context captured on a thread keeps a reference to that
 * thread's scope, so the scope travels wherever the context is attached.
 * A span start on a thread with no scope pays one load and a branch.
 */
#ifndef MLT_SCOPE_INTERNAL_H
#define MLT_SCOPE_INTERNAL_H

#include "core/span-internal.h"

enum { MLT__SCOPE_INHERIT = 0, MLT__SCOPE_ON = 1, MLT__SCOPE_OFF = 2 };

typedef struct mlt__scope {
  _Atomic int32_t refs;
  uint8_t enabled;         /* MLT__SCOPE_*, resolved against the outer scope */
  char **tags;             /* key, value, ..., NULL (owned) */
  char **meta;             /* key, value, ..., NULL (owned) */
  char *session, *user;    /* or NULL (owned) */
  uint32_t n_entries;      /* trace entries it makes: tag and metadata pairs, session, user */
} mlt__scope;

static inline int mlt__scope_off(const mlt__scope *sc) { return sc->enabled == MLT__SCOPE_OFF; }
static inline mlt__scope *mlt__scope_retain(mlt__scope *sc) {
  if (sc) atomic_fetch_add_explicit(&sc->refs, 1, memory_order_relaxed);
  return sc;
}
void mlt__scope_release(mlt__scope *sc);
/* A span |h| was just started under scope |sc| (on this thread): when it is
 * the root of a new trace, the scope's tags, metadata, session and user go
 * to the trace (before anything the application updates, which wins). */
void mlt__scope_started(mlt__scope *sc, mlt_span h);
/* Push a scope frame on this thread's attach stack (context.c): |sc| (its
 * reference moves to the frame) is in effect until the frame is popped. */
int mlt__scope_frame_push(mlt__scope *sc, mlt_attach_token *tok);

/* ---- span start options (lib/core/spanopts.c) ---- */
/* The start time and sampling of |so| into |o| (|so| NULL: nothing).
 * |strict| (client API): any invalid option (bad struct_size, start time < 0,
 * sampling ratio outside 0..1, unknown log level, a link without valid ids)
 * gives MLT_EINVAL.  Otherwise invalid options are reported (log, misuse
 * counter) and left out, and the result is MLT_OK. */
int mlt__span_options_read(const mlt_span_options *so, mlt__start_opts *o, int strict);
/* Links, description and log level of |so| on span |h| just started
 * (invalid ones reported and skipped). */
void mlt__span_options_apply(mlt_span h, const mlt_span_options *so);

#endif /* MLT_SCOPE_INTERNAL_H */
