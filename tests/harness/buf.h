/* tests/harness/buf.h: growable byte buffers, whole-file reads, the test
 * data directory (tests/data: SSE fixtures, CLI stores) and a monotonic
 * clock in milliseconds.  Header-only; every function is static inline. */
#ifndef MLT_TESTS_HARNESS_BUF_H
#define MLT_TESTS_HARNESS_BUF_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tap.h"

/* A NUL-terminated byte buffer; {0} is an empty one.  p is malloc'd (free()
 * it, or th_buf_free()). */
typedef struct th_buf {
  char *p;
  size_t len, cap;
} th_buf;

static inline void th_buf_add(th_buf *b, const void *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) abort();
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static inline void th_buf_str(th_buf *b, const char *s) { th_buf_add(b, s, strlen(s)); }

static inline void th_buf_printf(th_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void th_buf_printf(th_buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  REQUIRE(n >= 0 && (size_t)n < sizeof tmp);
  th_buf_add(b, tmp, (size_t)n);
}

static inline void th_buf_free(th_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* A write callback (libcurl's shape) appending to the th_buf @p ud. */
static inline size_t th_buf_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  th_buf_add(ud, ptr, size * nmemb);
  return size * nmemb;
}

/* The whole file at @p path, NUL-terminated (malloc'd; length in *len when
 * @p len is not NULL), or NULL when it cannot be opened. */
static inline char *th_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  th_buf b = {0};
  char tmp[65536];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) th_buf_add(&b, tmp, n);
  fclose(f);
  if (!b.p) th_buf_add(&b, "", 0);
  if (len) *len = b.len;
  return b.p;
}

/* The tests/data directory: $MLT_TEST_DATA (set by `make check`), else
 * ../data next to this header when that exists, else "tests/data". */
static inline const char *th_data_dir(void) {
  static char dir[4096];
  const char *env = getenv("MLT_TEST_DATA");
  if (env && *env) return env;
  const char *slash = strrchr(__FILE__, '/');
  struct stat st;
  if (slash) {
    snprintf(dir, sizeof dir, "%.*s/../data", (int)(slash - __FILE__), __FILE__);
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return dir;
  }
  return "tests/data";
}

/* Contents of tests/data/<dir>/<name><ext> (malloc'd, NUL-terminated);
 * ends the test when the file cannot be read. */
static inline char *th_fixture(const char *dir, const char *name, const char *ext, size_t *len) {
  char path[4096];
  int m = snprintf(path, sizeof path, "%s/%s/%s%s", th_data_dir(), dir, name, ext ? ext : "");
  REQUIRE(m > 0 && (size_t)m < sizeof path);
  char *p = th_read_file(path, len);
  if (!p) tap_diag("cannot open %s (set MLT_TEST_DATA to the tests/data directory)", path);
  REQUIRE(p != NULL);
  return p;
}

static inline double th_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

#endif /* MLT_TESTS_HARNESS_BUF_H */
