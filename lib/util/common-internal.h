/* lib/util/common-internal.h: included first by every libmltrace source file.
 * Private: never installed. */
#ifndef MLT_COMMON_INTERNAL_H
#define MLT_COMMON_INTERNAL_H

#include "config.h"

/* Inside the library the public names are the real functions, never the
 * inline fast-path macros of <mltrace/span.h>. */
#define MLT__BUILDING_LIB 1

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <mltrace/mltrace.h>

#define MLT_LIKELY(x) __builtin_expect(!!(x), 1)
#define MLT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MLT_UNUSED __attribute__((unused))
#define MLT_NOINLINE __attribute__((noinline))
#define MLT_ALWAYS_INLINE inline __attribute__((always_inline))
#define MLT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MLT_TLS __thread __attribute__((tls_model("initial-exec")))
/* On a declaration of a library-internal variable: the compiler then
 * addresses it directly instead of through the GOT (-fvisibility=hidden
 * covers definitions only). */
#define MLT_INTERNAL_VAR __attribute__((visibility("hidden")))

#define MLT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MLT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define MLT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- time ---- */
static inline int64_t mlt__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
/* The CLOCK_REALTIME time |ns| from now, as pthread_cond_timedwait() wants
 * it (the flush waits: at most |ns|, then they re-check their deadline on
 * the monotonic clock). */
static inline struct timespec mlt__realtime_after(int64_t ns) {
  int64_t abs = mlt__now_ns() + ns;
  return (struct timespec){.tv_sec = (time_t)(abs / 1000000000), .tv_nsec = (long)(abs % 1000000000)};
}
static inline int64_t mlt__mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- logging (util.c) ---- */
/* Rate-limited per call site kind: at most one message per second per
 * |kind| (a small integer < MLT__LOGK_COUNT); suppressed messages are counted
 * and reported with the next one. */
enum {
  MLT__LOGK_GENERIC = 0,
  MLT__LOGK_MISUSE,
  MLT__LOGK_DROP,
  MLT__LOGK_EXPORT,
  MLT__LOGK_EXPORT2,
  MLT__LOGK_ENV,
  MLT__LOGK_TIMEOUT,
  MLT__LOGK_JSON,
  MLT__LOGK_WORKQ, /* thread.c: work queue rejections */
  MLT__LOGK_SUMMARY, /* shutdown summary (pipeline.c) */
  MLT__LOGK_SPOOL,   /* durable spool (spool.c) */
  MLT__LOGK_COUNT
};
void mlt__log(mlt_log_level level, int kind, const char *fmt, ...) MLT_PRINTF(3, 4);
void mlt__log_configure(mlt_log_level level, mlt_log_fn fn, void *user_data);
mlt_log_level mlt__log_level_from_env(mlt_log_level dflt);
/* Emit one line per message kind whose last messages were suppressed by the
 * rate limit (their count and the last text shown), then reset the counts
 * (mlt_shutdown()). */
void mlt__log_flush_suppressed(void);

/* ---- random (util.c): per-thread generator, seeded once per thread ---- */
uint64_t mlt__rand64(void);

/* Span ids and the low half of the trace ids this process mints are a keyed
 * permutation (bijection, secret per-process key) of the span slot handle:
 * they look random, never repeat among live spans, and a client API call by
 * id finds its span by inverting the permutation, with no registry.  0 maps
 * to 0, so no valid handle gives a 0 id.  (util.c) */
extern uint64_t mlt__g_idkey[3] MLT_INTERNAL_VAR;
void mlt__idkeys_init(void);
static inline uint64_t mlt__idmix(uint64_t x) {
  x *= UINT64_C(0xd6e8feb86659fd93);
  return x ^ (x >> 32);
}
static inline uint64_t mlt__idunmix(uint64_t x) {
  x ^= x >> 32;
  return x * UINT64_C(0xcfee444d8b59a89b); /* inverse of 0xd6e8feb86659fd93 mod 2^64 */
}
/* Span ids: a keyed bijection of the handle.  The low half of a minted
 * trace id: its root's span id xor a third key (the id of a handle that is
 * never valid, so that it is never 0). */
static inline uint64_t mlt__id_from_handle(uint64_t h) { return mlt__idmix(h ^ mlt__g_idkey[0]) ^ mlt__g_idkey[1]; }
static inline uint64_t mlt__handle_from_id(uint64_t id) {
  return mlt__idunmix(id ^ mlt__g_idkey[1]) ^ mlt__g_idkey[0];
}
static inline uint64_t mlt__trace_lo_from_span_id(uint64_t span_id) { return span_id ^ mlt__g_idkey[2]; }
static inline uint64_t mlt__span_id_from_trace_lo(uint64_t lo) { return lo ^ mlt__g_idkey[2]; }

/* ---- encoding helpers (util.c) ---- */
void mlt__hex64(uint64_t v, char out[16]);
/* "tr-" + 32 hex + NUL into out (MLT_TRACE_ID_SIZE bytes). */
void mlt__format_trace_id(uint64_t hi, uint64_t lo, char out[MLT_TRACE_ID_SIZE]);
/* Both ids of a span: "tr-" + 32 hex + NUL, and 16 hex + NUL. */
void mlt__format_ids(uint64_t hi, uint64_t lo, uint64_t span_id, char trace_out[MLT_TRACE_ID_SIZE],
                     char span_out[MLT_SPAN_ID_SIZE]);
/* The ids this thread formatted last, as digits and values: a client call
 * that passes back the id it was just given (start_trace, then start_span /
 * end_span / end_trace with that id) compares the digits instead of
 * parsing them.  A pure memo of the text <-> value mapping (no pointer to a
 * trace or span), so it is never stale; each thread has its own (written
 * by mlt__format_trace_id / mlt__format_ids, util.c).  All zero at first:
 * NUL digits never match a string of 32 (or 16) characters. */
typedef struct mlt__id_memo {
  _Alignas(16) char trace[48]; /* "tr-" + the 32 digits (+ unused) */
  _Alignas(16) char span[16];
  uint64_t hi, lo, sid;
  uint64_t root; /* the root's handle when the client root start formatted the trace id, else 0: a hint,
                    checked like any handle */
} mlt__id_memo;
extern MLT_TLS mlt__id_memo mlt__g_id_memo MLT_INTERNAL_VAR;
/* 1, the value and the root hint (or 0) when |s| is "tr-" + the 32 digits
 * this thread formatted last, else 0 (then parse it; an all-zero id is
 * never remembered from a trace and is refused by the parse).  No read
 * past the terminator of |s|: its length is known first (strlen, which
 * stops there; glibc's is cheaper than its strnlen), then its 35 bytes are
 * compared at once. */
static inline int mlt__trace_id_memo(const char *s, uint64_t *hi, uint64_t *lo, uint64_t *root) {
  if (!s || strlen(s) != 35) return 0;
  const mlt__id_memo *m = &mlt__g_id_memo;
  if (memcmp(s, m->trace, 35) != 0) return 0;
  *hi = m->hi;
  *lo = m->lo;
  *root = m->root;
  return 1;
}
/* Parse "tr-<32 hex>" or "<32 hex>"; returns 0 on success. */
int mlt__parse_trace_id(const char *s, uint64_t *hi, uint64_t *lo);
/* Parse 16 hex digits; returns 0 on success (0 ids rejected). */
int mlt__parse_span_id(const char *s, uint64_t *id);
int mlt__parse_hex(const char *s, size_t n, uint64_t *out);
/* Base64 of |n| bytes into out (needs 4*ceil(n/3)+1), returns length. */
size_t mlt__base64(const uint8_t *in, size_t n, char *out);
static inline void mlt__be64(uint64_t v, uint8_t out[8]) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (uint8_t)v;
    v >>= 8;
  }
}
/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence (the cut point for truncation). */
size_t mlt__utf8_cut(const char *s, size_t n);
/* Byte offset after |max_chars| code points (or n when shorter); *chars gets
 * the number of code points counted (invalid bytes count as one). */
size_t mlt__utf8_prefix_chars(const char *s, size_t n, size_t max_chars, size_t *chars);

/* Keep |p| referenced for good (fork child: state it must not free). */
void mlt__forget(void *p);
/* The logger's state reset in the child of fork() (called by the
 * pipeline's handler, lib/export/pipeline.c). */
void mlt__log_atfork_child(void);

/* ---- env helpers (util.c) ---- */
const char *mlt__getenv(const char *name); /* NULL when unset or empty */
char *mlt__strdup(const char *s);
char *mlt__strndup(const char *s, size_t n);
const char *mlt__program_name(void);

#endif /* MLT_COMMON_INTERNAL_H */
