/* lib/util/util.c: logging, random ids, hex/base64, UTF-8 helpers, environment.
 *
 * Layer: util -- includes util/ only; knows nothing of spans, exporters or HTTP.
 */
#include "util/common-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>
#ifdef HAVE_GETRANDOM
#include <sys/random.h>
#endif

/* ---- logging --------------------------------------------------------- */

static struct {
  _Atomic int level;
  mlt_log_fn fn;
  void *ud;
  pthread_mutex_t mu;
  int64_t last_ns[MLT__LOGK_COUNT];
  uint64_t suppressed[MLT__LOGK_COUNT];
  mlt_log_level last_level[MLT__LOGK_COUNT];
  char last_msg[MLT__LOGK_COUNT][120]; /* start of the last message shown */
} g_log = {MLT_LOG_WARN, NULL, NULL, PTHREAD_MUTEX_INITIALIZER, {0}, {0}, {0}, {{0}}};

/* Memory a forked child stops using (it is the parent's copy-on-write
 * image) stays referenced from here: reachable, not leaked. */
static void **g_forgotten;
static size_t g_n_forgotten, g_cap_forgotten;

void mlt__forget(void *p) {
  if (!p) return;
  if (g_n_forgotten == g_cap_forgotten) {
    size_t cap = g_cap_forgotten ? g_cap_forgotten * 2 : 64;
    void **n = realloc(g_forgotten, cap * sizeof *n);
    if (!n) return;
    g_forgotten = n;
    g_cap_forgotten = cap;
  }
  g_forgotten[g_n_forgotten++] = p;
}

void mlt__log_atfork_child(void) { pthread_mutex_init(&g_log.mu, NULL); }

void mlt__log_configure(mlt_log_level level, mlt_log_fn fn, void *user_data) {
  pthread_mutex_lock(&g_log.mu);
  atomic_store(&g_log.level, (int)level);
  g_log.fn = fn;
  g_log.ud = user_data;
  memset(g_log.last_ns, 0, sizeof g_log.last_ns);
  memset(g_log.suppressed, 0, sizeof g_log.suppressed);
  pthread_mutex_unlock(&g_log.mu);
}

mlt_log_level mlt__log_level_from_env(mlt_log_level dflt) {
  const char *e = mlt__getenv("MLTRACE_LOG_LEVEL");
  if (!e) return dflt;
  static const char *const names[] = {"off", "error", "warn", "info", "debug"};
  for (int i = 0; i < 5; i++)
    if (strcasecmp(e, names[i]) == 0) return (mlt_log_level)i;
  return dflt;
}

void mlt__log(mlt_log_level level, int kind, const char *fmt, ...) {
  if ((int)level > atomic_load_explicit(&g_log.level, memory_order_relaxed)) return;
  if (kind < 0 || kind >= MLT__LOGK_COUNT) kind = MLT__LOGK_GENERIC;
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  int64_t now = mlt__mono_ns();
  pthread_mutex_lock(&g_log.mu);
  /* Debug messages are not rate limited; everything else at most 1/s/kind. */
  if (level != MLT_LOG_DEBUG && g_log.last_ns[kind] != 0 && now - g_log.last_ns[kind] < 1000000000) {
    g_log.suppressed[kind]++;
    pthread_mutex_unlock(&g_log.mu);
    return;
  }
  g_log.last_ns[kind] = now;
  g_log.last_level[kind] = level;
  size_t keep = MLT_MIN(strlen(msg), sizeof g_log.last_msg[kind] - 1);
  memcpy(g_log.last_msg[kind], msg, keep);
  g_log.last_msg[kind][keep] = '\0';
  uint64_t sup = g_log.suppressed[kind];
  g_log.suppressed[kind] = 0;
  mlt_log_fn fn = g_log.fn;
  void *ud = g_log.ud;
  pthread_mutex_unlock(&g_log.mu);
  if (sup) {
    size_t len = strlen(msg);
    snprintf(msg + len, sizeof msg - len, " (%llu similar messages suppressed)", (unsigned long long)sup);
  }
  if (fn) {
    fn(level, msg, ud);
  } else {
    static const char *const lv[] = {"", "error", "warning", "info", "debug"};
    fprintf(stderr, "mltrace: %s: %s\n", lv[level], msg);
  }
}

/* ---- random ---------------------------------------------------------- */

/* wyrand: a 64-bit generator with good statistical quality; seeded once per
 * thread from the kernel (one syscall per thread, never per span). */
static MLT_TLS uint64_t tls_rng;
static MLT_TLS int tls_rng_seeded;

static uint64_t seed_rng(void) {
  uint64_t seed = 0;
#ifdef HAVE_GETRANDOM
  if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) seed = 0;
#endif
  seed ^= (uint64_t)mlt__now_ns() * UINT64_C(0x9E3779B97F4A7C15);
  seed ^= (uint64_t)(uintptr_t)&tls_rng;
  seed ^= (uint64_t)getpid() << 32;
  return seed;
}

uint64_t mlt__rand64(void) {
  if (MLT_UNLIKELY(!tls_rng_seeded)) {
    tls_rng = seed_rng();
    tls_rng_seeded = 1;
  }
  tls_rng += UINT64_C(0xa0761d6478bd642f);
  __uint128_t m = (__uint128_t)tls_rng * (tls_rng ^ UINT64_C(0xe7037ed1a0b428db));
  return (uint64_t)(m >> 64) ^ (uint64_t)m;
}

/* ---- ids ------------------------------------------------------------- */

uint64_t mlt__g_idkey[3];
static pthread_once_t idkey_once = PTHREAD_ONCE_INIT;

static void idkeys_make(void) {
  uint64_t k = 0;
  while (!k) k = mlt__rand64();
  mlt__g_idkey[0] = k;
  /* so that handle 0 (never valid) is the one that maps to id 0 */
  mlt__g_idkey[1] = mlt__idmix(k);
  /* the span id of a handle with generation 0 (never valid) */
  mlt__g_idkey[2] = mlt__id_from_handle(UINT64_C(0xFFFFFFFF));
}

void mlt__idkeys_init(void) { pthread_once(&idkey_once, idkeys_make); }

/* ---- hex / base64 ---------------------------------------------------- */

#include "util/hex-internal.h"

void mlt__hex64(uint64_t v, char out[16]) { hex64(v, out); }

/* The ids this thread formatted last (see mlt__id_memo in
 * common-internal.h). */
MLT_TLS mlt__id_memo mlt__g_id_memo;
#define id_memo mlt__g_id_memo

void mlt__format_trace_id(uint64_t hi, uint64_t lo, char out[MLT_TRACE_ID_SIZE]) {
  out[0] = 't';
  out[1] = 'r';
  out[2] = '-';
  trace_hex(hi, lo, out + 3);
  out[35] = '\0';
}

void mlt__format_ids(uint64_t hi, uint64_t lo, uint64_t span_id, char trace_out[MLT_TRACE_ID_SIZE],
                     char span_out[MLT_SPAN_ID_SIZE]) {
  mlt__format_ids_inline(hi, lo, span_id, trace_out, span_out);
}

#ifdef MLT__SWAR_HEX
/* 8 hex digits (either case) at s to their value; -1 when one is not a hex
 * digit.  Bytes are checked in parallel: each must be a digit or (with the
 * case bit set) a letter a-f. */
static inline int64_t unhex8(const char *s) {
  uint64_t w;
  memcpy(&w, s, 8);
  const uint64_t hi = UINT64_C(0x8080808080808080), ones = UINT64_C(0x0101010101010101);
  if (w & hi) return -1;
  uint64_t digit = (w + ones * (0x80 - '0')) & ~(w + ones * (0x80 - '9' - 1)) & hi;
  uint64_t l = w | ones * 0x20;
  uint64_t letter = (l + ones * (0x80 - 'a')) & ~(l + ones * (0x80 - 'f' - 1)) & hi;
  if ((digit | letter) != hi) return -1;
  uint64_t v = (w & ones * 0x0F) + (letter >> 7) * 9;
  /* byte 0 (the first digit) is the most significant nibble */
  v = ((v & UINT64_C(0x000F000F000F000F)) << 4) | ((v >> 8) & UINT64_C(0x000F000F000F000F));
  v = ((v & UINT64_C(0x000000FF000000FF)) << 8) | ((v >> 16) & UINT64_C(0x000000FF000000FF));
  v = ((v & UINT64_C(0x000000000000FFFF)) << 16) | (v >> 32);
  return (int64_t)v;
}
#endif

#ifdef MLT__SSE_HEX
/* The 16 hex digits (either case) in |v| as 8 bytes in the low half of the
 * result (per 16-bit lane: first digit << 4 | second); *ok gets 0xFF in
 * each byte that is a hex digit. */
static MLT_ALWAYS_INLINE __m128i hex_pairs(__m128i v, __m128i *ok) {
  __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)), _mm_cmpgt_epi8(_mm_set1_epi8('9' + 1), v));
  __m128i l = _mm_or_si128(v, _mm_set1_epi8(0x20));
  __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)), _mm_cmpgt_epi8(_mm_set1_epi8('f' + 1), l));
  *ok = _mm_or_si128(digit, letter);
  __m128i val = _mm_add_epi8(_mm_and_si128(v, _mm_set1_epi8(0x0F)), _mm_and_si128(letter, _mm_set1_epi8(9)));
  return _mm_or_si128(_mm_and_si128(_mm_slli_epi16(val, 4), _mm_set1_epi16(0x00F0)), _mm_srli_epi16(val, 8));
}

/* 16 hex digits (either case) at s, all readable: 0 and the value, or -1. */
static int unhex16(const char *s, uint64_t *out) {
  __m128i ok, pairs = hex_pairs(_mm_loadu_si128((const __m128i *)(const void *)s), &ok);
  if (_mm_movemask_epi8(ok) != 0xFFFF) return -1;
  uint64_t bytes = (uint64_t)_mm_cvtsi128_si64(_mm_packus_epi16(pairs, pairs));
  *out = __builtin_bswap64(bytes);
  return 0;
}

/* 32 hex digits (loaded as a, b): the two halves in one pass. */
static MLT_ALWAYS_INLINE int unhex32(__m128i a, __m128i b, uint64_t *hi, uint64_t *lo) {
  __m128i oka, okb;
  __m128i pa = hex_pairs(a, &oka);
  __m128i pb = hex_pairs(b, &okb);
  if (_mm_movemask_epi8(_mm_and_si128(oka, okb)) != 0xFFFF) return -1;
  __m128i both = _mm_packus_epi16(pa, pb);
  *hi = __builtin_bswap64((uint64_t)_mm_cvtsi128_si64(both));
  *lo = __builtin_bswap64((uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(both, both)));
  return 0;
}
#endif

int mlt__parse_hex(const char *s, size_t n, uint64_t *out) {
#ifdef MLT__SSE_HEX
  if (n == 16) return unhex16(s, out);
#endif
  uint64_t v = 0;
  size_t i = 0;
#ifdef MLT__SWAR_HEX
  for (; i + 8 <= n; i += 8) {
    int64_t x = unhex8(s + i);
    if (x < 0) return -1;
    v = v << 32 | (uint64_t)x;
  }
#endif
  for (; i < n; i++) {
    char c = s[i];
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return -1;
    v = (v << 4) | (uint64_t)d;
  }
  *out = v;
  return 0;
}

int mlt__parse_trace_id(const char *s, uint64_t *hi, uint64_t *lo) {
  if (!s) return -1;
  if (s[0] == 't' && s[1] == 'r' && s[2] == '-') s += 3;
  /* strnlen: never reads past the terminator; after it, all 32 digits are
   * readable */
  if (strnlen(s, 33) != 32) return -1;
  const mlt__id_memo *m = &id_memo;
#ifdef MLT__SSE_HEX
  __m128i a = _mm_loadu_si128((const __m128i *)(const void *)s);
  __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
  __m128i same = _mm_and_si128(_mm_cmpeq_epi8(a, _mm_loadu_si128((const __m128i *)(const void *)(m->trace + 3))),
                               _mm_cmpeq_epi8(b, _mm_loadu_si128((const __m128i *)(const void *)(m->trace + 19))));
  if (_mm_movemask_epi8(same) == 0xFFFF) {
    *hi = m->hi;
    *lo = m->lo;
  } else if (unhex32(a, b, hi, lo))
    return -1;
#else
  if (!memcmp(s, m->trace + 3, 32)) {
    *hi = m->hi;
    *lo = m->lo;
  } else if (mlt__parse_hex(s, 16, hi) || mlt__parse_hex(s + 16, 16, lo))
    return -1;
#endif
  return (*hi | *lo) ? 0 : -1;
}

int mlt__parse_span_id(const char *s, uint64_t *id) {
  if (!s || strnlen(s, 17) != 16) return -1;
  const mlt__id_memo *m = &id_memo;
  if (!memcmp(s, m->span, 16))
    *id = m->sid;
  else if (mlt__parse_hex(s, 16, id))
    return -1;
  return *id ? 0 : -1;
}

size_t mlt__base64(const uint8_t *in, size_t n, char *out) {
  static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = tb[v >> 18];
    out[o++] = tb[(v >> 12) & 63];
    out[o++] = tb[(v >> 6) & 63];
    out[o++] = tb[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
    out[o++] = tb[v >> 18];
    out[o++] = tb[(v >> 12) & 63];
    out[o++] = i + 1 < n ? tb[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

/* ---- UTF-8 ----------------------------------------------------------- */

size_t mlt__utf8_cut(const char *s, size_t n) {
  /* Back up over at most 3 continuation bytes to the lead byte; cut before
   * it unless the sequence is complete. */
  if (n == 0) return 0;
  size_t i = n;
  int back = 0;
  while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
    i--;
    back++;
  }
  if (i == 0) return n;
  unsigned char lead = (unsigned char)s[i - 1];
  size_t need;
  if (lead < 0x80)
    return n;
  else if ((lead & 0xE0) == 0xC0)
    need = 2;
  else if ((lead & 0xF0) == 0xE0)
    need = 3;
  else if ((lead & 0xF8) == 0xF0)
    need = 4;
  else
    return n; /* invalid lead: nothing to protect */
  return ((size_t)back + 1 >= need) ? n : i - 1;
}

size_t mlt__utf8_prefix_chars(const char *s, size_t n, size_t max_chars, size_t *chars) {
  size_t i = 0, c = 0;
  while (i < n && c < max_chars) {
    unsigned char b = (unsigned char)s[i];
    size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
    if (i + len > n) len = 1;
    for (size_t k = 1; k < len; k++)
      if (((unsigned char)s[i + k] & 0xC0) != 0x80) {
        len = 1;
        break;
      }
    i += len;
    c++;
  }
  if (chars) *chars = c;
  return i;
}

/* ---- environment / strings ------------------------------------------- */

const char *mlt__getenv(const char *name) {
  const char *v = getenv(name);
  return (v && *v) ? v : NULL;
}

char *mlt__strdup(const char *s) { return s ? strdup(s) : NULL; }

char *mlt__strndup(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

const char *mlt__program_name(void) {
  return program_invocation_short_name ? program_invocation_short_name : "c-program";
}

void mlt__log_flush_suppressed(void) {
  for (int k = 0; k < MLT__LOGK_COUNT; k++) {
    pthread_mutex_lock(&g_log.mu);
    uint64_t sup = g_log.suppressed[k];
    g_log.suppressed[k] = 0;
    mlt_log_level level = g_log.last_level[k] ? g_log.last_level[k] : MLT_LOG_WARN;
    char last[sizeof g_log.last_msg[k]];
    memcpy(last, g_log.last_msg[k], sizeof last);
    mlt_log_fn fn = g_log.fn;
    void *ud = g_log.ud;
    pthread_mutex_unlock(&g_log.mu);
    if (!sup || (int)level > atomic_load(&g_log.level)) continue;
    char msg[256];
    snprintf(msg, sizeof msg, "%llu more message(s) like this one were suppressed: %s", (unsigned long long)sup,
             last);
    if (fn) {
      fn(level, msg, ud);
    } else {
      static const char *const lv[] = {"", "error", "warning", "info", "debug"};
      fprintf(stderr, "mltrace: %s: %s\n", lv[level], msg);
    }
  }
}
