/* lib/core/span-set.c: the public setters of an open span -- inputs,
 * outputs, attributes (with the inline fast paths the <mltrace/span.h>
 * macros call), type, name, events, status and errors.  It validates the
 * caller's arguments and the handle, then appends records (record-internal.h,
 * span-record.c); it never changes a span's state.  Core layer: touches the
 * span it was given and the per-thread counters only.
 */
#include "core/record-internal.h"
#include "core/scope-internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- setters --------------------------------------------------------- */

int mlt_span_set_inputs_json(mlt_span h, const char *json) {
  return set_json(h, MLT__R_INPUTS, json, MLT_NTS, "mlt_span_set_inputs_json");
}
int mlt_span_set_inputs_json_n(mlt_span h, const char *json, size_t len) {
  return set_json(h, MLT__R_INPUTS, json, len, "mlt_span_set_inputs_json_n");
}
int mlt_span_set_outputs_json(mlt_span h, const char *json) {
  return set_json(h, MLT__R_OUTPUTS, json, MLT_NTS, "mlt_span_set_outputs_json");
}
int mlt_span_set_outputs_json_n(mlt_span h, const char *json, size_t len) {
  return set_json(h, MLT__R_OUTPUTS, json, len, "mlt_span_set_outputs_json_n");
}

static int set_cjson(mlt_span h, int kind, cJSON *value, const char *what) {
  int rc = MLT_OK;
  mlt__span *s = open_span(h, &rc);
  if (!s || !value) {
    cJSON_Delete(value);
    return mlt__span_report(what, s ? MLT_EINVAL : rc);
  }
  char p[8];
  memcpy(p, &value, sizeof value);
  rc = mlt__append_value(s, kind, MLT__V_CJSON, NULL, 0, p, 8, 0);
  if (rc) {
    cJSON_Delete(value);
    return rc;
  }
  s->flags |= MLT__SF_CJSON;
  if (kind == MLT__R_OUTPUTS) s->flags |= MLT__SF_OUTPUTS;
  return MLT_OK;
}

int mlt_span_set_inputs(mlt_span h, cJSON *value) { return set_cjson(h, MLT__R_INPUTS, value, "mlt_span_set_inputs"); }
int mlt_span_set_outputs(mlt_span h, cJSON *value) {
  return set_cjson(h, MLT__R_OUTPUTS, value, "mlt_span_set_outputs");
}

static int set_fields(mlt_span h, int kind, const mlt_attr *fields, size_t n, const char *what) {
  if (n && !fields) return mlt__span_report(what, MLT_EINVAL);
  for (size_t i = 0; i < n; i++)
    if (!fields[i].key) return mlt__span_report(what, MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, what);
  uint64_t cnt = n;
  if (kind == MLT__R_OUTPUTS) s->flags |= MLT__SF_OUTPUTS;
  return mlt__append_group(s, kind, MLT__V_FIELDS, NULL, 0, (const char *)&cnt, 8, fields, n);
}

int mlt_span_set_inputs_fields(mlt_span h, const mlt_attr *fields, size_t n) {
  return set_fields(h, MLT__R_INPUTS, fields, n, "mlt_span_set_inputs_fields");
}
int mlt_span_set_outputs_fields(mlt_span h, const mlt_attr *fields, size_t n) {
  return set_fields(h, MLT__R_OUTPUTS, fields, n, "mlt_span_set_outputs_fields");
}

int mlt_span_set_outputs_text(mlt_span h, const char *text, size_t len) {
  if (!text) return mlt__span_report("mlt_span_set_outputs_text", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_outputs_text");
  if (len == MLT_NTS) len = strlen(text);
  s->flags |= MLT__SF_OUTPUTS;
  return mlt__append_value(s, MLT__R_OUTPUTS, MLT__V_STR, NULL, 0, text, len, 0);
}

/* An attribute record; |key_len| may be MLT_NTS (the inline fast paths of
 * <mltrace/span.h> pass the length when the compiler knows it). */
static MLT_ALWAYS_INLINE int set_attr(mlt_span h, const char *key, size_t key_len, unsigned sub, const void *val,
                                      size_t val_len, unsigned aux, const char *what) {
  if (MLT_UNLIKELY(!key)) return mlt__span_report(what, MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, what);
  if (key_len == MLT_NTS) key_len = strlen(key);
  return append_rec(s, MLT__R_ATTR, sub, 0, key, key_len, val, val_len, aux);
}

/* The attribute fast paths below handle the common case (open span, short
 * key of known length, room in the current log chunk) with no call and no
 * stack frame; anything else is a tail call to the general path. */
static MLT_NOINLINE int attr_str_slow(mlt_span h, const char *key, size_t key_len, const char *value, size_t len) {
  if (MLT_UNLIKELY(!value)) return mlt__span_report("mlt_span_set_attr_str", MLT_EINVAL);
  if (len == MLT_NTS) len = strlen(value);
  return set_attr(h, key, key_len, MLT__V_STR, value, len, 0, "mlt_span_set_attr_str");
}
static MLT_NOINLINE int attr_i64_slow(mlt_span h, const char *key, size_t key_len, int64_t value) {
  return set_attr(h, key, key_len, MLT__V_I64, &value, 8, 0, "mlt_span_set_attr_int");
}
static MLT_NOINLINE int attr_f64_slow(mlt_span h, const char *key, size_t key_len, double value) {
  return set_attr(h, key, key_len, MLT__V_F64, &value, 8, 0, "mlt_span_set_attr_double");
}
static MLT_NOINLINE int attr_bool_slow(mlt_span h, const char *key, size_t key_len, int value) {
  return set_attr(h, key, key_len, MLT__V_BOOL, NULL, 0, value != 0, "mlt_span_set_attr_bool");
}

/* The current log chunk of open span |h| when it has room for |size|
 * bytes and the key is short (NULL: take the general path). */
static MLT_ALWAYS_INLINE mlt__chunk *attr_room(mlt_span h, size_t key_len, size_t size, uint32_t *usedp) {
  /* key_len is MLT_NTS when the caller did not know it (a NULL key
   * included): the general path checks and measures. */
  mlt__span *s;
  if (MLT_UNLIKELY(!mlt__span_open_try(h, &s) || key_len > MLT__TINY)) return NULL;
  mlt__chunk *c = s->tail;
  uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
  if (MLT_UNLIKELY(c->cap - used < size)) return NULL;
  *usedp = used;
  return c;
}

/* A string value longer than the fast path takes, of known length: one
 * copy, into the current chunk or a new one (no step at the inline area's
 * end but a chunk from this thread's cache). */
static MLT_NOINLINE int attr_str_big(mlt_span h, const char *key, size_t key_len, const char *value, size_t len) {
  if (MLT_UNLIKELY(!value || !key)) return attr_str_slow(h, key, key_len, value, len);
  if (MLT_UNLIKELY(key_len > MLT__KEY_MAX || len > mlt__g_cfg.max_value_bytes))
    return attr_str_slow(h, key, key_len, value, len);
  mlt__span *s = mlt__span_open_fast(h);
  if (MLT_UNLIKELY(!s)) return attr_str_slow(h, key, key_len, value, len);
  if (key_len == MLT_NTS && (key_len = strlen(key)) > MLT__KEY_MAX) return attr_str_slow(h, key, key_len, value, len);
  size_t size = mlt__rec_size(key_len, len);
  char *p = mlt__log_reserve(s, size);
  if (MLT_UNLIKELY(!p)) return MLT_ENOMEM;
  write_rec(p, MLT__R_ATTR, MLT__V_STR, 0, 0, key_len, len);
  memcpy(p + sizeof(mlt__rec), key, key_len);
  memcpy(p + sizeof(mlt__rec) + key_len, value, len);
  mlt__log_publish(s, size);
  return MLT_OK;
}

/* A NUL-terminated value (a string known only at run time, which the
 * <mltrace/span.h> macros pass as MLT_NTS): measured, and so is a
 * NUL-terminated key (mlt_span_set_attr_str() called as a function), then
 * the fast path when both are short (a tail call: the fast path keeps no
 * stack frame). */
static MLT_NOINLINE int attr_str_nts(mlt_span h, const char *key, size_t key_len, const char *value) {
  if (key_len == MLT_NTS && key) key_len = strlen(key);
  return mlt__attr_str(h, key, key_len, value, strlen(value));
}

int mlt__attr_str(mlt_span h, const char *key, size_t key_len, const char *value, size_t len) {
  /* len is MLT_NTS for a NULL value: the general path reports it */
  if (MLT_UNLIKELY(len > atomic_load_explicit(&mlt__g_tiny_value, memory_order_relaxed)))
    return len == MLT_NTS && value ? attr_str_nts(h, key, key_len, value) : attr_str_big(h, key, key_len, value, len);
  uint32_t used;
  size_t size = mlt__rec_size(key_len, len);
  mlt__chunk *c = attr_room(h, key_len, size, &used);
  if (MLT_UNLIKELY(!c)) return attr_str_slow(h, key, key_len, value, len);
  char *p = mlt__chunk_data(c) + used;
  write_rec(p, MLT__R_ATTR, MLT__V_STR, 0, 0, key_len, len);
  tiny_copy(p + sizeof(mlt__rec), key, key_len);
  tiny_copy(p + sizeof(mlt__rec) + key_len, value, len);
  atomic_store_explicit(&c->used, used + (uint32_t)size, memory_order_release);
  return MLT_OK;
}

static MLT_ALWAYS_INLINE int attr_word(mlt_span h, const char *key, size_t key_len, unsigned sub, uint64_t bits,
                                       int has_value, unsigned aux) {
  uint32_t used;
  size_t size = mlt__rec_size(key_len, has_value ? 8 : 0);
  mlt__chunk *c = attr_room(h, key_len, size, &used);
  if (MLT_UNLIKELY(!c)) return 1;
  char *p = mlt__chunk_data(c) + used;
  write_rec(p, MLT__R_ATTR, sub, 0, aux, key_len, has_value ? 8 : 0);
  tiny_copy(p + sizeof(mlt__rec), key, key_len);
  if (has_value) memcpy(p + sizeof(mlt__rec) + key_len, &bits, 8);
  atomic_store_explicit(&c->used, used + (uint32_t)size, memory_order_release);
  return 0;
}

int mlt__attr_i64(mlt_span h, const char *key, size_t key_len, int64_t value) {
  if (MLT_UNLIKELY(attr_word(h, key, key_len, MLT__V_I64, (uint64_t)value, 1, 0)))
    return attr_i64_slow(h, key, key_len, value);
  return MLT_OK;
}

int mlt__attr_f64(mlt_span h, const char *key, size_t key_len, double value) {
  uint64_t bits;
  memcpy(&bits, &value, 8);
  if (MLT_UNLIKELY(attr_word(h, key, key_len, MLT__V_F64, bits, 1, 0))) return attr_f64_slow(h, key, key_len, value);
  return MLT_OK;
}

/* A bool is all header: the value is in aux. */
int mlt__attr_bool(mlt_span h, const char *key, size_t key_len, int value) {
  if (MLT_UNLIKELY(attr_word(h, key, key_len, MLT__V_BOOL, 0, 0, value != 0)))
    return attr_bool_slow(h, key, key_len, value);
  return MLT_OK;
}

/* ---- short constant keys (<mltrace/span.h> packs a literal key of 1..8
 * bytes into |key8|, its bytes in memory order, zero above |key_len|) ---- */

/* The record of a packed key: room in the current chunk, the header, the key
 * as one 8-byte store (within the record, which is at least 16 bytes; the
 * value, written next, overwrites its zero bytes).  NULL: the general path. */
static MLT_ALWAYS_INLINE char *attr_k_rec(mlt_span h, uint64_t key8, size_t key_len, unsigned sub, size_t val_len,
                                          unsigned aux, mlt__chunk **cp, uint32_t *sizep) {
  mlt__span *s;
  if (MLT_UNLIKELY(key_len - 1 >= 8 || !mlt__span_open_try(h, &s))) return NULL;
  uint32_t size = (uint32_t)mlt__rec_size(key_len, val_len);
  mlt__chunk *c = s->tail;
  uint32_t used = atomic_load_explicit(&c->used, memory_order_relaxed);
  if (MLT_UNLIKELY(c->cap - used < size)) return NULL;
  char *p = mlt__chunk_data(c) + used;
  write_rec(p, MLT__R_ATTR, sub, 0, aux, key_len, val_len);
  memcpy(p + sizeof(mlt__rec), &key8, 8);
  *cp = c;
  *sizep = used + size;
  return p + sizeof(mlt__rec) + key_len;
}

/* The general path for a packed key: unpack it (a key of 0 or more than 8
 * bytes is the caller's error, reported as a NULL key would be). */
#define K8_UNPACK(kbuf, key8, key_len)        \
  char kbuf[9];                                \
  memcpy(kbuf, &(key8), 8);                    \
  kbuf[8] = '\0';                              \
  const char *kbuf##_p = (key_len) - 1 < 8 ? kbuf : NULL

static MLT_NOINLINE int attr_str_k_slow(mlt_span h, uint64_t key8, size_t key_len, const char *value, size_t len) {
  K8_UNPACK(k, key8, key_len);
  return mlt__attr_str(h, k_p, k_p ? key_len : MLT_NTS, value, len);
}
static MLT_NOINLINE int attr_i64_k_slow(mlt_span h, uint64_t key8, size_t key_len, int64_t value) {
  K8_UNPACK(k, key8, key_len);
  return attr_i64_slow(h, k_p, k_p ? key_len : MLT_NTS, value);
}
static MLT_NOINLINE int attr_f64_k_slow(mlt_span h, uint64_t key8, size_t key_len, double value) {
  K8_UNPACK(k, key8, key_len);
  return attr_f64_slow(h, k_p, k_p ? key_len : MLT_NTS, value);
}
static MLT_NOINLINE int attr_bool_k_slow(mlt_span h, uint64_t key8, size_t key_len, int value) {
  K8_UNPACK(k, key8, key_len);
  return attr_bool_slow(h, k_p, k_p ? key_len : MLT_NTS, value);
}

/* mlt__attr_str_k() of a NUL-terminated value: measured (see attr_str_nts()). */
static MLT_NOINLINE int attr_str_k_nts(mlt_span h, uint64_t key8, size_t key_len, const char *value) {
  return mlt__attr_str_k(h, key8, key_len, value, strlen(value));
}

int mlt__attr_str_k(mlt_span h, uint64_t key8, size_t key_len, const char *value, size_t len) {
  mlt__chunk *c;
  uint32_t end;
  char *v;
  /* len is MLT_NTS for a NULL value: the general path reports it */
  if (MLT_UNLIKELY(len > atomic_load_explicit(&mlt__g_tiny_value, memory_order_relaxed)))
    return len == MLT_NTS && value ? attr_str_k_nts(h, key8, key_len, value) : attr_str_k_slow(h, key8, key_len, value, len);
  if (MLT_UNLIKELY(!(v = attr_k_rec(h, key8, key_len, MLT__V_STR, len, 0, &c, &end))))
    return attr_str_k_slow(h, key8, key_len, value, len);
  tiny_copy(v, value, len);
  atomic_store_explicit(&c->used, end, memory_order_release);
  return MLT_OK;
}

/* An 8-byte value (|sub| I64 or F64) in place; 0 when the fast path cannot
 * take it (the caller's slow path decides). */
static MLT_ALWAYS_INLINE int attr_k_word(mlt_span h, uint64_t key8, size_t key_len, unsigned sub, const void *value) {
  mlt__chunk *c;
  uint32_t end;
  char *v = attr_k_rec(h, key8, key_len, sub, 8, 0, &c, &end);
  if (MLT_UNLIKELY(!v)) return 0;
  memcpy(v, value, 8);
  atomic_store_explicit(&c->used, end, memory_order_release);
  return 1;
}

int mlt__attr_i64_k(mlt_span h, uint64_t key8, size_t key_len, int64_t value) {
  return attr_k_word(h, key8, key_len, MLT__V_I64, &value) ? MLT_OK : attr_i64_k_slow(h, key8, key_len, value);
}

int mlt__attr_f64_k(mlt_span h, uint64_t key8, size_t key_len, double value) {
  return attr_k_word(h, key8, key_len, MLT__V_F64, &value) ? MLT_OK : attr_f64_k_slow(h, key8, key_len, value);
}

int mlt__attr_bool_k(mlt_span h, uint64_t key8, size_t key_len, int value) {
  mlt__chunk *c;
  uint32_t end;
  if (MLT_UNLIKELY(!attr_k_rec(h, key8, key_len, MLT__V_BOOL, 0, value != 0, &c, &end)))
    return attr_bool_k_slow(h, key8, key_len, value);
  atomic_store_explicit(&c->used, end, memory_order_release);
  return MLT_OK;
}

int mlt_span_set_attr_str(mlt_span h, const char *key, const char *value) {
  return mlt__attr_str(h, key, MLT_NTS, value, MLT_NTS);
}
int mlt_span_set_attr_str_n(mlt_span h, const char *key, const char *value, size_t len) {
  if (!value && len) return mlt__span_report("mlt_span_set_attr_str_n", MLT_EINVAL);
  if (!value) value = "";
  if (len == MLT_NTS) len = strlen(value);
  return set_attr(h, key, MLT_NTS, MLT__V_STR, value, len, 0, "mlt_span_set_attr_str_n");
}
int mlt_span_set_attr_int(mlt_span h, const char *key, int64_t value) {
  return mlt__attr_i64(h, key, MLT_NTS, value);
}
int mlt_span_set_attr_double(mlt_span h, const char *key, double value) {
  return mlt__attr_f64(h, key, MLT_NTS, value);
}
int mlt_span_set_attr_bool(mlt_span h, const char *key, int value) {
  return mlt__attr_bool(h, key, MLT_NTS, value);
}
int mlt_span_set_attr_json(mlt_span h, const char *key, const char *json) {
  if (!json) return mlt__span_report("mlt_span_set_attr_json", MLT_EINVAL);
  return set_attr(h, key, MLT_NTS, MLT__V_JSON, json, strlen(json), 0, "mlt_span_set_attr_json");
}

int mlt_span_set_attrs(mlt_span h, const mlt_attr *attrs, size_t n) {
  if (n && !attrs) return mlt__span_report("mlt_span_set_attrs", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_attrs");
  for (size_t i = 0; i < n; i++) {
    if (!attrs[i].key) return mlt__span_report("mlt_span_set_attrs", MLT_EINVAL);
    size_t size = mlt__attr_rec_size(&attrs[i]);
    char *p = mlt__log_reserve(s, size);
    if (!p) return MLT_ENOMEM;
    size = mlt__put_attr_rec(p, MLT__R_ATTR, &attrs[i]);
    mlt__log_publish(s, size);
  }
  return MLT_OK;
}

int mlt_span_set_type(mlt_span h, mlt_span_type type) {
  if ((unsigned)type >= MLT__SPAN_TYPE_COUNT) return mlt__span_report("mlt_span_set_type", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_type");
  return mlt__append_value(s, MLT__R_TYPE, MLT__V_NONE, NULL, 0, NULL, 0, (int)type);
}

int mlt_span_set_type_name(mlt_span h, const char *type) {
  if (!type || !*type) return mlt__span_report("mlt_span_set_type_name", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_type_name");
  return mlt__append_value(s, MLT__R_TYPE_NAME, MLT__V_STR, NULL, 0, type, strlen(type), 0);
}

int mlt_span_set_name(mlt_span h, const char *name) {
  if (!name) return mlt__span_report("mlt_span_set_name", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_name");
  return mlt__append_value(s, MLT__R_NAME, MLT__V_STR, NULL, 0, name, strlen(name), 0);
}

static int count_event(mlt__span *s) {
  if (s->n_events >= mlt__g_cfg.max_events_per_span) {
    s->n_events_dropped++;
    mlt__tls *tls = mlt__tls_get();
    if (tls) tls->c.events_dropped++;
    return 0;
  }
  s->n_events++;
  return 1;
}

int mlt_span_add_event(mlt_span h, const char *name, const mlt_attr *attrs, size_t n) {
  if (!name || (n && !attrs)) return mlt__span_report("mlt_span_add_event", MLT_EINVAL);
  for (size_t i = 0; i < n; i++)
    if (!attrs[i].key) return mlt__span_report("mlt_span_add_event", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_add_event");
  if (!count_event(s)) return MLT_OK;
  return mlt__append_event(s, name, mlt__now_ns(), attrs, n);
}

int mlt_span_set_status(mlt_span h, mlt_span_status status, const char *message) {
  if ((unsigned)status > MLT_STATUS_ERROR) return mlt__span_report("mlt_span_set_status", MLT_EINVAL);
  GET_OPEN_OR_RETURN(s, h, "mlt_span_set_status");
  if (s->status == MLT_STATUS_ERROR && status != MLT_STATUS_ERROR) return MLT_OK;
  s->status = (uint8_t)status;
  /* Only an ERROR's description is exported (OTel drops it otherwise). */
  if (status != MLT_STATUS_ERROR) return MLT_OK;
  if (!message) message = "";
  return mlt__append_value(s, MLT__R_STATUS, MLT__V_STR, NULL, 0, message, strlen(message), (int)status);
}

int mlt_span_record_error(mlt_span h, const char *type, const char *message) {
  GET_OPEN_OR_RETURN(s, h, "mlt_span_record_error");
  if (!type || !*type) type = "Error";
  if (!message) message = "";
  size_t tl = strlen(type), ml = strlen(message);
  char stackbuf[512];
  char *desc = tl + ml + 3 <= sizeof stackbuf ? stackbuf : malloc(tl + ml + 3);
  if (!desc) return MLT_ENOMEM;
  memcpy(desc, type, tl);
  memcpy(desc + tl, ": ", 2);
  memcpy(desc + tl + 2, message, ml + 1);
  s->status = MLT_STATUS_ERROR;
  int rc = mlt__append_value(s, MLT__R_STATUS, MLT__V_STR, NULL, 0, desc, tl + ml + 2, MLT_STATUS_ERROR);
  if (desc != stackbuf) free(desc);
  if (rc) return rc;
  if (!count_event(s)) return MLT_OK;
  mlt_attr a[2] = {{"exception.type", MLT_ATTR_STRING, {.s = type}, tl},
                   {"exception.message", MLT_ATTR_STRING, {.s = message}, ml}};
  return mlt__append_event(s, "exception", mlt__now_ns(), a, 2);
}

