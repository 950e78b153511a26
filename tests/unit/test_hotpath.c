/* tests/unit/test_hotpath.c: the hot path's fast paths give what the
 * general paths give: literal and computed keys and values of every length
 * around the fast-path limits, typed values, truncation, function scope,
 * ids that map back to spans (client API without a registry, any case of hex
 * digits), the last finished trace across threads, values that overflow the
 * inline log. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int attr_is(cJSON *span, const char *key, const char *json) {
  const char *v = tu_attr(span, key);
  if (!v || strcmp(v, json) != 0) {
    tap_diag("attribute %s: got %s, want %s", key, v ? v : "(none)", json);
    return 0;
  }
  return 1;
}

/* A JSON string literal of |s| (plain ASCII here). */
static const char *jstr(const char *s) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ & 7];
  snprintf(b, 512, "\"%s\"", s);
  return b;
}

#define LIT_KEYS(X)                                                                               \
  X("", "v0") X("a", "v1") X("ab", "v2") X("abc", "v3") X("abcd", "v4") X("abcdefg", "v7")         \
  X("abcdefgh", "v8") X("abcdefghijklmno", "v15") X("abcdefghijklmnop", "v16")                     \
  X("abcdefghijklmnopq", "v17") X("abcdefghijklmnopqrstuvwxyz01234", "v31")                         \
  X("abcdefghijklmnopqrstuvwxyz012345", "v32") X("abcdefghijklmnopqrstuvwxyz0123456", "v33")        \
  X("abcdefghijklmnopqrstuvwxyz0123456789abcd", "v40")

TEST(literal_and_computed_keys_agree) {
  tu_init();
  mlt_span s = mlt_span_start("lit", MLT_SPAN_TOOL);
  mlt_span r = mlt_span_start("run", MLT_SPAN_TOOL);
#define SET(k, v)                                                                                 \
  CHECK_EQ_INT(mlt_span_set_attr_str(s, "s" k, v), MLT_OK);                                       \
  CHECK_EQ_INT(mlt_span_set_attr_int(s, "i" k, 7), MLT_OK);                                       \
  CHECK_EQ_INT(mlt_span_set_attr_bool(s, "b" k, 1), MLT_OK);                                      \
  CHECK_EQ_INT(mlt_span_set_attr_double(s, "d" k, 0.5), MLT_OK);                                  \
  {                                                                                               \
    char kk[64], vv[64];                                                                          \
    snprintf(kk, sizeof kk, "s%s", k);                                                            \
    snprintf(vv, sizeof vv, "%s", v);                                                             \
    CHECK_EQ_INT(mlt_span_set_attr_str(r, kk, vv), MLT_OK);                                       \
    kk[0] = 'i';                                                                                  \
    CHECK_EQ_INT(mlt_span_set_attr_int(r, kk, 7), MLT_OK);                                        \
    kk[0] = 'b';                                                                                  \
    CHECK_EQ_INT(mlt_span_set_attr_bool(r, kk, 1), MLT_OK);                                       \
    kk[0] = 'd';                                                                                  \
    CHECK_EQ_INT((mlt_span_set_attr_double)(r, kk, 0.5), MLT_OK);                                 \
  }
  LIT_KEYS(SET)
#undef SET
  /* values of every length around the fast path's 32 bytes */
  char val[80];
  for (int n = 0; n < 70; n++) {
    memset(val, 'x', (size_t)n);
    val[n] = '\0';
    char key[16];
    snprintf(key, sizeof key, "len%d", n);
    CHECK_EQ_INT(mlt_span_set_attr_str(s, key, val), MLT_OK);
    CHECK_EQ_INT(mlt_span_set_attr_str_n(r, key, val, (size_t)n), MLT_OK);
  }
  /* setting a key again replaces the value */
  CHECK_EQ_INT(mlt_span_set_attr_str(s, "sab", "second"), MLT_OK);
  CHECK_EQ_INT(mlt_span_set_attr_str(r, "sab", "second"), MLT_OK);
  mlt_span_end(r);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *ls = tu_span(t, "lit"), *rs = tu_span(t, "run");
  REQUIRE(ls && rs);
#define CHK(k, v)                                                                                 \
  CHECK(attr_is(ls, "s" k, strcmp(k, "ab") ? jstr(v) : "\"second\""));                            \
  CHECK(attr_is(rs, "s" k, strcmp(k, "ab") ? jstr(v) : "\"second\""));                            \
  CHECK(attr_is(ls, "i" k, "7") && attr_is(rs, "i" k, "7"));                                      \
  CHECK(attr_is(ls, "b" k, "true") && attr_is(rs, "b" k, "true"));                                \
  CHECK(attr_is(ls, "d" k, "0.5") && attr_is(rs, "d" k, "0.5"));
  LIT_KEYS(CHK)
#undef CHK
  for (int n = 0; n < 70; n++) {
    char key[16];
    snprintf(key, sizeof key, "len%d", n);
    memset(val, 'x', (size_t)n);
    val[n] = '\0';
    CHECK(attr_is(ls, key, jstr(val)));
    CHECK(attr_is(rs, key, jstr(val)));
  }
  tu_done();
}

/* Literal keys (known lengths: the packed-key path for 1..8 bytes, the
 * known-length path beyond) with values known only at run time (passed
 * NUL-terminated, measured by the library): every length around the fast
 * path's limit records the same value. */
TEST(literal_keys_runtime_values) {
  tu_init();
  static const int lens[] = {0, 1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 69};
  enum { N = sizeof lens / sizeof *lens };
  char val[80], name[16];
  for (int i = 0; i < N; i++) {
    memset(val, 'a' + i, (size_t)lens[i]);
    val[lens[i]] = '\0';
    snprintf(name, sizeof name, "nts%d", lens[i]);
    mlt_span x = mlt_span_start(name, MLT_SPAN_TOOL);
    CHECK_EQ_INT(mlt_span_set_attr_str(x, "k8", val), MLT_OK);
    CHECK_EQ_INT(mlt_span_set_attr_str(x, "a.longer.literal.key", val), MLT_OK);
    mlt_span_end(x);
  }
  REQUIRE_EQ_INT(tu_flush_count(), N);
  for (int i = 0; i < N; i++) {
    memset(val, 'a' + i, (size_t)lens[i]);
    val[lens[i]] = '\0';
    snprintf(name, sizeof name, "nts%d", lens[i]);
    cJSON *t = tu_trace_named(name);
    cJSON *sp = t ? tu_span(t, name) : NULL;
    REQUIRE(sp != NULL);
    CHECK(attr_is(sp, "k8", jstr(val)));
    CHECK(attr_is(sp, "a.longer.literal.key", jstr(val)));
  }
  tu_done();
}

TEST(null_key_and_value_rejected) {
  tu_init();
  mlt_span s = mlt_span_start("x", MLT_SPAN_TOOL);
  CHECK_EQ_INT(mlt_span_set_attr_str(s, NULL, "v"), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_set_attr_str(s, "k", NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_set_attr_int(s, NULL, 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_set_attr_bool(s, NULL, 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_set_attr_double(s, NULL, 1), MLT_EINVAL);
  const char *nk = NULL;
  CHECK_EQ_INT(mlt_span_set_attr_str(s, nk, "v"), MLT_EINVAL);
  CHECK_EQ_INT((mlt_span_set_attr_str)(s, "k", NULL), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_set_attr_str_n(s, "k", NULL, 3), MLT_EINVAL);
  CHECK_EQ_INT(mlt_span_set_attr_str_n(s, "k", NULL, 0), MLT_OK);
  /* packed keys (what the macros pass for a literal of 1..8 bytes): a
   * length outside 1..8 is reported as a NULL key */
  uint64_t k8 = mlt__k8("key", 3);
  CHECK_EQ_INT(mlt__attr_i64_k(s, k8, 0, 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt__attr_i64_k(s, k8, 9, 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt__attr_str_k(s, k8, 0, "v", 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt__attr_f64_k(s, k8, MLT_NTS, 1.0), MLT_EINVAL);
  CHECK_EQ_INT(mlt__attr_bool_k(s, k8, 9, 1), MLT_EINVAL);
  CHECK_EQ_INT(mlt__attr_str_k(s, k8, 3, NULL, MLT_NTS), MLT_EINVAL);
  CHECK_EQ_INT(mlt__attr_str_k(s, k8, 3, "v", 1), MLT_OK);
  mlt_context *hold = tu_hold(s);
  mlt_span_end(s);
  CHECK_EQ_INT(mlt__attr_i64_k(s, k8, 3, 1), MLT_EENDED);
  CHECK_EQ_INT(mlt__attr_bool_k(MLT_SPAN_NONE, k8, 3, 1), MLT_ENOTRECORDING);
  /* ended, NONE and non-recording handles */
  CHECK_EQ_INT(mlt_span_set_attr_str(s, "k", "v"), MLT_EENDED);
  mlt_context_release(hold);
  CHECK_EQ_INT(mlt_span_set_attr_int(MLT_SPAN_NONE, "k", 1), MLT_ENOTRECORDING);
  CHECK_EQ_INT(mlt__attr_i64(MLT_SPAN_NONE, "k", 1, 1), MLT_ENOTRECORDING);
  tu_done();
}

TEST(fast_path_values_still_truncated) {
  mlt_options *o = tu_options();
  REQUIRE_EQ_INT(mlt_options_set_max_value_bytes(o, 64), MLT_OK); /* the minimum */
  tu_start(o);
  /* 70-byte literals: longer than the limit, lengths known to the compiler */
  mlt_span s = mlt_span_start("0123456789012345678901234567890123456789012345678901234567890123456789", MLT_SPAN_TOOL);
  mlt_span_set_attr_str(s, "short", "0123456789");
  mlt_span_set_attr_str(s, "long", "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij");
  mlt_span_set_attr_int(s, "n", 5);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *sp = cJSON_GetArrayItem(tu_spans(t), 0);
  CHECK(attr_is(sp, "short", "\"0123456789\""));
  const char *lv = tu_attr(sp, "long");
  CHECK(lv && strlen(lv) > 65 && lv[65] == '.' && strstr(lv, "[truncated by mltrace: 70 bytes]"));
  CHECK(attr_is(sp, "n", "5"));
  const char *nm = tu_str(sp, "name");
  CHECK(nm && strlen(nm) == 64); /* names are cut without a marker */
  CHECK_EQ_INT((int)tu_stats().values_truncated, 2);
  tu_done();
}

static int traced_leaf(int x) {
  MLT_TRACE_FUNCTION(MLT_SPAN_TOOL);
  mlt_span_set_attr_str(mlt_fn_span, "model", "gpt-x");
  mlt_span_set_attr_int(mlt_fn_span, "tokens", 42);
  return x + 1;
}

static void traced_named(void) {
  MLT_TRACE_FUNCTION_NAMED("custom name", MLT_SPAN_CHAIN);
  mlt_span_set_name(mlt_fn_span, "renamed");
  traced_leaf(1);
}

static void drop_fn_attr(mlt_span_view *v, void *ud) {
  (void)ud;
  if (strcmp(mlt_span_view_name(v), "traced_leaf") == 0) mlt_span_view_remove_attr(v, "mlflow.spanFunctionName");
}

TEST(function_scope_records_function_name) {
  tu_init();
  traced_named();
  traced_leaf(2);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  cJSON *t = tu_trace_named("renamed");
  REQUIRE(t != NULL);
  cJSON *outer = tu_span(t, "renamed"), *leaf = tu_span(t, "traced_leaf");
  REQUIRE(outer && leaf);
  CHECK(attr_is(outer, "mlflow.spanFunctionName", "\"traced_named\""));
  CHECK(attr_is(leaf, "mlflow.spanFunctionName", "\"traced_leaf\""));
  CHECK(attr_is(leaf, "model", "\"gpt-x\""));
  CHECK(attr_is(leaf, "tokens", "42"));
  tu_done();
  /* a span processor sees (and may remove) the attribute */
  mlt_options *o = tu_options();
  mlt_options_set_span_processor(o, drop_fn_attr, NULL);
  tu_start(o);
  traced_leaf(3);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *sp = tu_span(tu_trace(0), "traced_leaf");
  REQUIRE(sp != NULL);
  CHECK(tu_attr(sp, "mlflow.spanFunctionName") == NULL);
  CHECK(attr_is(sp, "model", "\"gpt-x\""));
  tu_done();
}

TEST(span_ids_unique_and_linked) {
  tu_init();
  enum { N = 3000 };
  mlt_span root = mlt_span_start("root", MLT_SPAN_CHAIN);
  for (int i = 0; i < N; i++) {
    mlt_span c = mlt_span_start("child", MLT_SPAN_TOOL);
    mlt_span_end(c);
  }
  char rid[MLT_SPAN_ID_SIZE];
  CHECK_EQ_INT(mlt_span_get_span_id(root, rid, sizeof rid), MLT_OK);
  mlt_span_end(root);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *spans = tu_spans(tu_trace(0));
  REQUIRE_EQ_INT(cJSON_GetArraySize(spans), N + 1);
  /* ids are base64 of 8 bytes: compare as strings */
  const char **ids = calloc(N + 1, sizeof *ids);
  const char *root_b64 = NULL;
  int k = 0;
  cJSON *s;
  cJSON_ArrayForEach(s, spans) {
    ids[k] = tu_str(s, "span_id");
    CHECK(ids[k] && strcmp(ids[k], "AAAAAAAAAAA=") != 0);
    if (strcmp(tu_str(s, "name"), "root") == 0) root_b64 = ids[k];
    k++;
  }
  REQUIRE(root_b64 != NULL);
  int dup = 0;
  for (int i = 0; i < k; i++)
    for (int j = i + 1; j < k; j++)
      if (strcmp(ids[i], ids[j]) == 0) dup++;
  CHECK_EQ_INT(dup, 0);
  cJSON_ArrayForEach(s, spans) {
    if (strcmp(tu_str(s, "name"), "child") == 0) CHECK_EQ_STR(tu_str(s, "parent_span_id"), root_b64);
  }
  free(ids);
  tu_done();
}

static void upper_hex(char *s) {
  for (; *s; s++)
    if (*s >= 'a' && *s <= 'f') *s = (char)(*s - 'a' + 'A');
}

TEST(client_ids_any_case_and_malformed) {
  tu_init();
  mlt_client_span root, child;
  REQUIRE_EQ_INT(mlt_client_start_trace("r", MLT_SPAN_CHAIN, NULL, &root), MLT_OK);
  CHECK_EQ_INT((int)strlen(root.trace_id), 35);
  CHECK_EQ_INT((int)strlen(root.span_id), 16);
  char tid[MLT_TRACE_ID_SIZE], sid[MLT_SPAN_ID_SIZE];
  memcpy(tid, root.trace_id, sizeof tid);
  memcpy(sid, root.span_id, sizeof sid);
  upper_hex(tid + 3);
  upper_hex(sid);
  REQUIRE_EQ_INT(mlt_client_start_span(tid, sid, "c", MLT_SPAN_TOOL, NULL, &child), MLT_OK);
  /* the id without its "tr-" prefix */
  mlt_span h;
  CHECK_EQ_INT(mlt_client_get_span(root.trace_id + 3, child.span_id, &h), MLT_OK);
  CHECK(h.id_ == child.span.id_);
  /* malformed ids */
  char bad[64];
  snprintf(bad, sizeof bad, "%s", root.trace_id);
  bad[20] = 'g';
  CHECK_EQ_INT(mlt_client_get_span(bad, child.span_id, &h), MLT_EINVAL);
  bad[20] = '\0';
  CHECK_EQ_INT(mlt_client_get_span(bad, child.span_id, &h), MLT_EINVAL);
  snprintf(bad, sizeof bad, "%sa", root.trace_id);
  CHECK_EQ_INT(mlt_client_get_span(bad, child.span_id, &h), MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_get_span(root.trace_id, "123", &h), MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_get_span(root.trace_id, "0000000000000000", &h), MLT_EINVAL);
  CHECK_EQ_INT(mlt_client_get_span(root.trace_id, "zzzzzzzzzzzzzzzz", &h), MLT_EINVAL);
  /* a span id of this trace with another trace's id, and the reverse */
  mlt_client_span other;
  REQUIRE_EQ_INT(mlt_client_start_trace("o", MLT_SPAN_CHAIN, NULL, &other), MLT_OK);
  CHECK_EQ_INT(mlt_client_get_span(other.trace_id, child.span_id, &h), MLT_ENOTFOUND);
  CHECK_EQ_INT(mlt_client_end_span(root.trace_id, other.span_id, NULL, MLT_STATUS_OK, NULL), MLT_ENOTFOUND);
  /* random ids are not found (nor do they crash) */
  unsigned seed = 7;
  for (int i = 0; i < 2000; i++) {
    char rs[17];
    for (int j = 0; j < 16; j++) rs[j] = "0123456789abcdef"[rand_r(&seed) & 15];
    rs[16] = '\0';
    int rc = mlt_client_get_span(root.trace_id, rs, &h);
    CHECK(rc == MLT_ENOTFOUND || (rc == MLT_OK && (h.id_ == root.span.id_ || h.id_ == child.span.id_)));
  }
  CHECK_EQ_INT(mlt_client_end_span(tid, child.span_id, "{\"ok\": true}", MLT_STATUS_OK, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(tid, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(other.trace_id, NULL, MLT_STATUS_ERROR, "bad"), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  CHECK_EQ_INT(mlt_client_get_span(root.trace_id, root.span_id, &h), MLT_ENOTFOUND);
  CHECK_EQ_INT(mlt_client_end_trace(root.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_ENOTFOUND);
  tu_done();
}

/* The ids a thread formatted last are remembered as text and compared
 * instead of parsed (lib/util/util.c, id_memo): every edge of that memo
 * gives what a full parse and lookup give. */
static char *heap_copy(const char *s, size_t n) { /* exactly n bytes + NUL: over-reads are caught */
  char *p = malloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

typedef struct memo_peer {
  const char *end_tid; /* a trace id to end here (NULL: none) */
  int end_rc;
  mlt_client_span started; /* a trace started here (left open) */
  int start_rc;
} memo_peer;

static void *memo_peer_main(void *p) {
  memo_peer *m = p;
  /* a fresh thread: the memo is empty; an all-zero id is still invalid */
  char zero[MLT_TRACE_ID_SIZE] = "tr-00000000000000000000000000000000";
  m->start_rc = mlt_client_end_trace(zero, NULL, MLT_STATUS_OK, NULL) == MLT_EINVAL ? 0 : -1;
  if (m->end_tid) m->end_rc = mlt_client_end_trace(m->end_tid, NULL, MLT_STATUS_OK, NULL);
  int rc = mlt_client_start_trace("peer", MLT_SPAN_CHAIN, NULL, &m->started);
  if (m->start_rc == 0) m->start_rc = rc;
  return NULL;
}

TEST(client_id_memo_edges) {
  tu_init();
  mlt_client_span a, c;
  REQUIRE_EQ_INT(mlt_client_start_trace("a", MLT_SPAN_CHAIN, NULL, &a), MLT_OK);
  /* ids shorter than 32 digits (and without the prefix), each in a block of
   * its exact size, and one digit too many */
  for (size_t n = 0; n < 35; n++) {
    char *p = heap_copy(a.trace_id, n);
    CHECK_EQ_INT(mlt_client_start_span(p, a.span_id, "c", MLT_SPAN_TOOL, NULL, &c), MLT_EINVAL);
    free(p);
    if (n < 32) {
      p = heap_copy(a.trace_id + 3, n);
      CHECK_EQ_INT(mlt_client_start_span(p, a.span_id, "c", MLT_SPAN_TOOL, NULL, &c), MLT_EINVAL);
      free(p);
    }
    if (n < 16) {
      p = heap_copy(a.span_id, n);
      CHECK_EQ_INT(mlt_client_start_span(a.trace_id, p, "c", MLT_SPAN_TOOL, NULL, &c), MLT_EINVAL);
      free(p);
    }
  }
  char longer[64];
  snprintf(longer, sizeof longer, "%s0", a.trace_id);
  CHECK_EQ_INT(mlt_client_start_span(longer, a.span_id, "c", MLT_SPAN_TOOL, NULL, &c), MLT_EINVAL);
  snprintf(longer, sizeof longer, "%s0", a.span_id);
  CHECK_EQ_INT(mlt_client_start_span(a.trace_id, longer, "c", MLT_SPAN_TOOL, NULL, &c), MLT_EINVAL);
  /* each digit changed: another id (not found) or not hex (invalid) --
   * never the remembered one */
  for (int i = 0; i < 32; i++) {
    char *p = heap_copy(a.trace_id, 35);
    p[3 + i] = p[3 + i] == '0' ? '1' : '0';
    CHECK_EQ_INT(mlt_client_start_span(p, a.span_id, "c", MLT_SPAN_TOOL, NULL, &c), MLT_ENOTFOUND);
    p[3 + i] = 'g';
    CHECK_EQ_INT(mlt_client_start_span(p, a.span_id, "c", MLT_SPAN_TOOL, NULL, &c), MLT_EINVAL);
    free(p);
  }
  for (int i = 0; i < 16; i++) {
    char *p = heap_copy(a.span_id, 16);
    p[i] = p[i] == '0' ? '1' : '0';
    CHECK_EQ_INT(mlt_client_start_span(a.trace_id, p, "c", MLT_SPAN_TOOL, NULL, &c), MLT_ENOTFOUND);
    p[i] = 'x';
    CHECK_EQ_INT(mlt_client_start_span(a.trace_id, p, "c", MLT_SPAN_TOOL, NULL, &c), MLT_EINVAL);
    free(p);
  }
  /* uppercase: the same ids (parsed, not remembered) */
  char tid[MLT_TRACE_ID_SIZE], sid[MLT_SPAN_ID_SIZE];
  memcpy(tid, a.trace_id, sizeof tid);
  memcpy(sid, a.span_id, sizeof sid);
  upper_hex(tid + 3);
  upper_hex(sid);
  mlt_client_span a1;
  REQUIRE_EQ_INT(mlt_client_start_span(tid, sid, "upper", MLT_SPAN_TOOL, NULL, &a1), MLT_OK);
  CHECK_EQ_STR(a1.trace_id, a.trace_id);
  /* the memo now holds a1's ids (same trace id, the child's span id) */
  CHECK_EQ_INT(mlt_client_end_span(a1.trace_id, a1.span_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_span(a1.trace_id, a1.span_id, NULL, MLT_STATUS_OK, NULL), MLT_EENDED);
  /* another thread: its memo is its own; it ends this thread's trace by
   * id, and starts one this thread ends by id */
  memo_peer m = {.end_tid = a.trace_id};
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, memo_peer_main, &m) == 0);
  pthread_join(th, NULL);
  CHECK_EQ_INT(m.end_rc, MLT_OK);
  REQUIRE_EQ_INT(m.start_rc, MLT_OK);
  /* a's id is still the remembered one here: a is ended */
  int rc = mlt_client_end_trace(a.trace_id, NULL, MLT_STATUS_OK, NULL);
  CHECK(rc == MLT_EENDED || rc == MLT_ENOTFOUND);
  CHECK_EQ_INT(mlt_client_start_span(a.trace_id, a.span_id, "late", MLT_SPAN_TOOL, NULL, &c), MLT_ENOTFOUND);
  CHECK_EQ_INT(mlt_client_end_trace(m.started.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  /* slots and traces reused after the end: the old ids (remembered or not)
   * reach nothing, the new ones their own trace */
  for (int i = 0; i < 64; i++) {
    mlt_client_span b;
    REQUIRE_EQ_INT(mlt_client_start_trace("b", MLT_SPAN_CHAIN, NULL, &b), MLT_OK);
    CHECK(strcmp(b.trace_id, a.trace_id) != 0);
    CHECK_EQ_INT(mlt_client_end_trace(a.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_ENOTFOUND);
    CHECK_EQ_INT(mlt_client_start_span(m.started.trace_id, m.started.span_id, "x", MLT_SPAN_TOOL, NULL, &c),
                 MLT_ENOTFOUND);
    if (i & 1) { /* the remembered digits without the "tr-" prefix: parsed, the same trace */
      CHECK_EQ_INT(mlt_client_end_trace(b.trace_id + 3, NULL, MLT_STATUS_OK, NULL), MLT_OK);
      CHECK_EQ_INT(mlt_client_end_trace(b.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_EENDED);
      continue;
    }
    CHECK_EQ_INT(mlt_client_end_span(b.trace_id, b.span_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
    rc = mlt_client_end_trace(b.trace_id, NULL, MLT_STATUS_OK, NULL);
    CHECK(rc == MLT_EENDED || rc == MLT_ENOTFOUND);
  }
  REQUIRE_EQ_INT(tu_flush_count(), 66); /* counted since tu_init() */
  /* the remembered root handle of an id whose slot was reused since (by
   * spans that format no id): stale, so the id reaches nothing */
  mlt_client_span d;
  REQUIRE_EQ_INT(mlt_client_start_trace("d", MLT_SPAN_CHAIN, NULL, &d), MLT_OK);
  CHECK_EQ_INT(mlt_span_end(d.span), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 67);
  for (int i = 0; i < 8; i++) {
    MLT_SPAN_SCOPE(s, "reuse", MLT_SPAN_CHAIN);
    mlt_span_set_attr_int(s, "i", i);
  }
  rc = mlt_client_end_trace(d.trace_id, NULL, MLT_STATUS_OK, NULL);
  CHECK(rc == MLT_EENDED || rc == MLT_ENOTFOUND);
  /* an id formatted by mlt_span_get_trace_id (remembered without a root
   * handle): ended by id all the same */
  mlt_span e = mlt_span_start("e", MLT_SPAN_CHAIN);
  char eid[MLT_TRACE_ID_SIZE];
  REQUIRE_EQ_INT(mlt_span_get_trace_id(e, eid, sizeof eid), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(eid, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  rc = mlt_span_end(e);
  CHECK(rc == MLT_EENDED || rc == MLT_ESTALE);
  REQUIRE_EQ_INT(tu_flush_count(), 76);
  tu_done();
}

TEST(foreign_trace_ids_found_through_registry) {
  tu_init();
  mlt_context *remote = NULL;
  REQUIRE_EQ_INT(
      mlt_context_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &remote), MLT_OK);
  mlt_span s = mlt_span_start_in(remote, "server", MLT_SPAN_CHAIN);
  char tid[MLT_TRACE_ID_SIZE], sid[MLT_SPAN_ID_SIZE];
  REQUIRE_EQ_INT(mlt_span_get_trace_id(s, tid, sizeof tid), MLT_OK);
  CHECK_EQ_STR(tid, "tr-4bf92f3577b34da6a3ce929d0e0e4736");
  REQUIRE_EQ_INT(mlt_span_get_span_id(s, sid, sizeof sid), MLT_OK);
  mlt_client_span c;
  CHECK_EQ_INT(mlt_client_start_span(tid, sid, "inner", MLT_SPAN_TOOL, NULL, &c), MLT_OK);
  CHECK_EQ_INT(mlt_update_trace_by_id(tid, MLT_TRACE_UPDATE(.tags = MLT_KV("k", "v"))), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_span(c.trace_id, c.span_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(tid, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  mlt_context_release(remote);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  CHECK_EQ_STR(tu_tag(t, "k"), "v");
  CHECK_EQ_INT(tu_nspans(t), 2);
  tu_done();
}

typedef struct finisher {
  char id[MLT_TRACE_ID_SIZE];
} finisher;

static void *finish_one(void *p) {
  finisher *f = p;
  mlt_span s = mlt_span_start("t", MLT_SPAN_CHAIN);
  mlt_span_get_trace_id(s, f->id, sizeof f->id);
  mlt_span_end(s);
  return NULL;
}

TEST(last_active_trace_id_across_threads) {
  tu_init();
  char buf[MLT_TRACE_ID_SIZE];
  finisher a, b;
  pthread_t th;
  pthread_create(&th, NULL, finish_one, &a);
  pthread_join(th, NULL); /* that thread is gone: its record stays */
  CHECK_EQ_INT(mlt_get_last_active_trace_id(buf, sizeof buf), MLT_OK);
  CHECK_EQ_STR(buf, a.id);
  finish_one(&b);
  CHECK_EQ_INT(mlt_get_last_active_trace_id(buf, sizeof buf), MLT_OK);
  CHECK_EQ_STR(buf, b.id);
  pthread_create(&th, NULL, finish_one, &a);
  pthread_join(th, NULL);
  CHECK_EQ_INT(mlt_get_last_active_trace_id(buf, sizeof buf), MLT_OK);
  CHECK_EQ_STR(buf, a.id);
  /* a continuation does not count */
  mlt_span s = mlt_span_start("p", MLT_SPAN_CHAIN);
  mlt_context *ctx = mlt_context_capture(s);
  char pid[MLT_TRACE_ID_SIZE];
  mlt_span_get_trace_id(s, pid, sizeof pid);
  mlt_span_end(s);
  mlt_span late = mlt_span_start_in(ctx, "late", MLT_SPAN_TOOL);
  mlt_span_end(late);
  mlt_context_release(ctx);
  CHECK_EQ_INT(mlt_get_last_active_trace_id(buf, sizeof buf), MLT_OK);
  CHECK_EQ_STR(buf, pid);
  tu_done();
  /* forgotten at shutdown */
  tu_init();
  CHECK_EQ_INT(mlt_get_last_active_trace_id(buf, sizeof buf), MLT_ENOTFOUND);
  tu_done();
}

TEST(status_unset_reads_ok_after_end) {
  tu_init();
  mlt_span s = mlt_span_start("x", MLT_SPAN_TOOL);
  mlt_span e = mlt_span_start("y", MLT_SPAN_TOOL);
  CHECK_EQ_INT(mlt_span_get_status(s), MLT_STATUS_UNSET);
  mlt_span_set_status(e, MLT_STATUS_ERROR, "boom");
  mlt_span_set_status(e, MLT_STATUS_OK, NULL); /* ERROR sticks */
  mlt_span_end(e);
  mlt_span_end(s);
  CHECK_EQ_INT(mlt_span_get_status(s), MLT_STATUS_OK);
  CHECK_EQ_INT(mlt_span_get_status(e), MLT_STATUS_ERROR);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *t = tu_trace(0);
  cJSON *st = cJSON_GetObjectItem(tu_span(t, "y"), "status");
  CHECK_EQ_STR(tu_str(st, "code"), "STATUS_CODE_ERROR");
  CHECK_EQ_STR(tu_str(st, "message"), "boom");
  CHECK_EQ_STR(tu_str(cJSON_GetObjectItem(tu_span(t, "x"), "status"), "code"), "STATUS_CODE_OK");
  tu_done();
}

TEST(values_past_the_inline_log) {
  tu_init();
  static const size_t sizes[] = {90, 100, 500, 1000, 1024, 5000, 10240, 70000, 200000};
  char *big = malloc(200001);
  for (size_t i = 0; i < 200000; i++) big[i] = (char)('a' + i % 26);
  mlt_span s = mlt_span_start("big", MLT_SPAN_TOOL);
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    char key[16];
    snprintf(key, sizeof key, "v%zu", sizes[i]);
    big[sizes[i]] = '\0';
    CHECK_EQ_INT(mlt_span_set_attr_str(s, key, big), MLT_OK);
    big[sizes[i]] = (char)('a' + sizes[i] % 26);
    CHECK_EQ_INT(mlt_span_set_attr_int(s, "after", (int64_t)i), MLT_OK);
  }
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *sp = tu_span(tu_trace(0), "big");
  REQUIRE(sp != NULL);
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    char key[16];
    snprintf(key, sizeof key, "v%zu", sizes[i]);
    cJSON *v = tu_attr_json(sp, key);
    CHECK(cJSON_IsString(v) && strlen(v->valuestring) == sizes[i] && v->valuestring[sizes[i] - 1] == big[sizes[i] - 1]);
  }
  CHECK(attr_is(sp, "after", "8"));
  free(big);
  tu_done();
}

/* The names of a trace's spans in the order the JSON has them, and each
 * span's parent as the index of that parent (-1: none). */
static int span_order(cJSON *trace, char names[][16], int *parent, int max) {
  cJSON *spans = tu_spans(trace), *s;
  int n = 0;
  cJSON_ArrayForEach(s, spans) {
    if (n == max) break;
    snprintf(names[n], 16, "%s", tu_str(s, "name"));
    n++;
  }
  int i = 0;
  cJSON_ArrayForEach(s, spans) {
    if (i == n) break;
    const char *pid = tu_str(s, "parent_span_id");
    parent[i] = -1;
    int j = 0;
    cJSON *q;
    cJSON_ArrayForEach(q, spans) {
      if (pid && j < n && strcmp(tu_str(q, "span_id"), pid) == 0) parent[i] = j;
      j++;
    }
    i++;
  }
  return n;
}

/* Spans go out root first, each after its parent, siblings by start time,
 * depth first: when the start order is that order already (the export
 * thread's fast path) and when it is not (a grandchild started after its
 * parent's later sibling; a child started before its parent's explicit
 * start). */
TEST(spans_ordered_parents_first) {
  tu_init();
  /* start order = depth-first order */
  mlt_span root = mlt_span_start("root", MLT_SPAN_CHAIN);
  mlt_span a = mlt_span_start("a", MLT_SPAN_TOOL);
  mlt_span a1 = mlt_span_start("a1", MLT_SPAN_TOOL);
  mlt_span_end(a1);
  mlt_span_end(a);
  mlt_span b = mlt_span_start("b", MLT_SPAN_TOOL);
  mlt_span_end(b);
  mlt_span_end(root);
  /* start order root, a, b, a1 (a1 a child of a): depth first is root, a, a1, b */
  root = mlt_span_start("root2", MLT_SPAN_CHAIN);
  a = mlt_span_start_child(root, "a", MLT_SPAN_TOOL);
  b = mlt_span_start_child(root, "b", MLT_SPAN_TOOL);
  a1 = mlt_span_start_child(a, "a1", MLT_SPAN_TOOL);
  mlt_span_end(a1);
  mlt_span_end(b);
  mlt_span_end(a);
  mlt_span_end(root);
  REQUIRE_EQ_INT(tu_flush_count(), 2);
  static const char *const want[] = {"root", "a", "a1", "b"};
  static const int want_parent[] = {-1, 0, 1, 0};
  for (int t = 0; t < 2; t++) {
    char names[8][16];
    int parent[8];
    int n = span_order(tu_trace_named(t ? "root2" : "root"), names, parent, 8);
    REQUIRE_EQ_INT(n, 4);
    for (int i = 0; i < 4; i++) {
      CHECK_EQ_STR(names[i], i == 0 && t ? "root2" : want[i]);
      CHECK_EQ_INT(parent[i], want_parent[i]);
    }
  }
  tu_done();
}

/* Token usage sums past int64 (a number like 1e300 in the attribute) are
 * clamped, not converted out of range (undefined; UBSan runs check). */
TEST(token_usage_sums_out_of_int64_range) {
  tu_init();
  mlt_span s = mlt_span_start("llm", MLT_SPAN_LLM);
  CHECK_EQ_INT(mlt_span_set_attr_json(s, "mlflow.chat.tokenUsage",
                                      "{\"input_tokens\": 1e300, \"output_tokens\": -1e300, \"total_tokens\": 5}"),
               MLT_OK);
  mlt_span_end(s);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  CHECK_EQ_STR(tu_meta(tu_trace(0), "mlflow.trace.tokenUsage"),
               "{\"input_tokens\": 9223372036854775807, \"output_tokens\": -9223372036854775808, \"total_tokens\": 5}");
  tu_done();
}

/* A handle with a live span's generation but a neighbouring slot's index
 * (the one-compare check of the open span's gs word) reaches nothing --
 * setters, end, status and ids refuse it and the span is intact; and the
 * client fast paths, which skip the library-state check, answer after
 * mlt_shutdown() and after a new mlt_init() without touching the old
 * table. */
TEST(nearby_handles_and_client_after_shutdown) {
  tu_init();
  mlt_span s = mlt_span_start("s", MLT_SPAN_CHAIN);
  REQUIRE(s.id_ != 0);
  for (uint64_t d = 1; d < 7; d++) {
    mlt_span bad = {s.id_ + d};
    CHECK(mlt_span_set_attr_int(bad, "k", 1) != MLT_OK);
    CHECK(mlt_span_set_attr_str(bad, "k", "v") != MLT_OK);
    CHECK(mlt_span_end(bad) != MLT_OK);
    CHECK_EQ_INT(mlt_span_is_recording(bad), 0);
    char id[MLT_TRACE_ID_SIZE];
    CHECK(mlt_span_get_trace_id(bad, id, sizeof id) != MLT_OK);
    mlt_span bad2 = {s.id_ - d};
    CHECK(mlt_span_end(bad2) != MLT_OK);
  }
  CHECK_EQ_INT(mlt_span_is_recording(s), 1);
  CHECK_EQ_INT(mlt_span_end(s), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  cJSON *sp = tu_span(tu_trace(0), "s");
  REQUIRE(sp != NULL);
  CHECK(tu_attr(sp, "k") == NULL);

  mlt_client_span a;
  REQUIRE_EQ_INT(mlt_client_start_trace("a", MLT_SPAN_CHAIN, NULL, &a), MLT_OK);
  tu_done();
  /* the memo still holds a's id and root handle */
  CHECK_EQ_INT(mlt_client_end_trace(a.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_ENOTINIT);
  mlt_client_span b;
  CHECK_EQ_INT(mlt_client_start_trace("b", MLT_SPAN_CHAIN, NULL, &b), MLT_ENOTINIT);
  tu_init();
  CHECK(mlt_client_end_trace(a.trace_id, NULL, MLT_STATUS_OK, NULL) != MLT_OK);
  REQUIRE_EQ_INT(mlt_client_start_trace("c", MLT_SPAN_CHAIN, NULL, &b), MLT_OK);
  CHECK_EQ_INT(mlt_client_end_trace(b.trace_id, NULL, MLT_STATUS_OK, NULL), MLT_OK);
  REQUIRE_EQ_INT(tu_flush_count(), 1);
  tu_done();
}

static const tap_test tests[] = {TAP_ENTRY(literal_and_computed_keys_agree),
                                 TAP_ENTRY(literal_keys_runtime_values), TAP_ENTRY(null_key_and_value_rejected),
                                 TAP_ENTRY(fast_path_values_still_truncated),
                                 TAP_ENTRY(function_scope_records_function_name),
                                 TAP_ENTRY(span_ids_unique_and_linked),
                                 TAP_ENTRY(client_ids_any_case_and_malformed),
                                 TAP_ENTRY(client_id_memo_edges),
                                 TAP_ENTRY(foreign_trace_ids_found_through_registry),
                                 TAP_ENTRY(last_active_trace_id_across_threads),
                                 TAP_ENTRY(status_unset_reads_ok_after_end),
                                 TAP_ENTRY(values_past_the_inline_log),
                                 TAP_ENTRY(spans_ordered_parents_first),
                                 TAP_ENTRY(token_usage_sums_out_of_int64_range),
                                 TAP_ENTRY(nearby_handles_and_client_after_shutdown),
                                 TAP_END};

int main(int argc, char **argv) { return tap_main(argc, argv, tests); }
