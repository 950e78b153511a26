/* curl-internal.h: state shared by call.c (traced transfers) and loop.c (the
 * libevent driver).  Private: never installed. */
#ifndef MLT_CURL_INTERNAL_H
#define MLT_CURL_INTERNAL_H

#include <mltrace/curl.h>
#include <mltrace/sse.h>

#include <stddef.h>
#include <stdint.h>

struct cJSON;

/* Response handling, decided at the first body byte. */
enum { MLT__CURL_UNDECIDED = 0, MLT__CURL_SSE = 1, MLT__CURL_BODY = 2 };

typedef struct mlt__curl_buf {
  char *p;
  size_t len, cap; /* p[len] is NUL when p is non-NULL */
} mlt__curl_buf;

struct mlt_curl_call {
  CURL *easy;
  mlt_span span;
  mlt_context *ctx;    /* the span's context (new reference) or NULL */
  mlt_context *parent; /* retained parent context or NULL */

  /* copied settings */
  uint32_t max_chunk_events;
  size_t max_body;
  int require_done;

  /* request */
  int streaming; /* the response is expected to be a stream */
  char *req_model;

  /* what the call installed on the handle */
  struct curl_slist *headers; /* ends with &tp_node when a traceparent is sent */
  struct curl_slist tp_node;  /* the traceparent header: not from curl_slist_append() */
  char tp_line[96];
  void *prev_private;
  int attached; /* our options are on the handle */

  /* application callbacks */
  curl_write_callback user_write;
  void *user_wd;
  mlt_curl_delta_fn delta_fn;
  void *delta_ud;
  mlt_curl_chunk_fn chunk_fn;
  void *chunk_ud;
  /* scratch for the chunk callback's arrays (grown as needed) */
  mlt_curl_choice_delta *sc_choices;
  size_t sc_choices_cap;
  mlt_curl_tool_delta *sc_tools;
  size_t sc_tools_cap;

  /* response */
  int mode;
  mlt_chat_stream *stream;
  mlt__curl_buf body;     /* non-streamed body (up to max_body) */
  uint64_t body_bytes;    /* bytes accepted by the application */
  uint32_t chunk_events;  /* chunks recorded on the span */
  int in_write;           /* inside our write callback */
  int hook_stop;          /* the delta callback asked to stop */
  int cancelled;          /* cancelled: reject further bytes */

  /* outcome */
  int performed; /* perform started, or added to a loop */
  int done;
  int status;
  CURLcode result;
  long http_status;
  char *error;
  char *result_json;
  size_t result_len;
  int result_lazy; /* result_json not built yet (span not recording) */
  char *usage_json;
  char *model;
  char *content; /* non-streamed answer */
  size_t content_len;
  char *finish_reason;

  /* loop ownership (loop.c) */
  mlt_curl_loop *loop;
  mlt_curl_done_fn done_fn;
  void *done_ud;
  mlt_curl_call *prev, *next;
  int in_multi;
  int pending_add;
  int cancel_pending;
  int in_done;
  int free_requested;
};

/* chat_stream.c: called for every valid chunk, before the public chunk
 * hook, with the SSE event type ("message" when none) and the text delta of
 * choice 0 (NULL when none); the user data is the hooks'
 * (mlt_chat_stream_set_hooks()).  The chunk comes either parsed by cJSON
 * (@p chunk, a cJSON object; @p choices NULL) or read by the chunk scanner
 * (@p chunk NULL): then it is a chat.completion.chunk whose choices are
 * @p choices[0 .. n_choices) (no tool calls, no usage object), borrowed
 * for the call. */
typedef void (*mlt__chat_json_hook)(const char *event, size_t event_len, const char *data, size_t len,
                                    const struct cJSON *chunk, const mlt_curl_choice_delta *choices,
                                    size_t n_choices, const char *delta0, void *user_data);
void mlt__chat_stream_set_json_hook(mlt_chat_stream *s, mlt__chat_json_hook fn);
/* Whether events go through the chunk scanner first (1, the default) or
 * straight to cJSON (0: the tests compare the two). */
void mlt__chat_stream_set_scan(mlt_chat_stream *s, int on);
/* The usage object of the stream (borrowed), NULL when none came. */
const struct cJSON *mlt__chat_stream_usage(const mlt_chat_stream *s);
/* The text cJSON_PrintUnformatted() gives for @p v, NUL-terminated, written
 * without building it through cJSON's printer: in @p buf (@p cap bytes, may
 * be NULL) when it fits, and then @p buf is returned; else in a buffer from
 * malloc() that the caller frees (any result != @p buf).  NULL when @p v is
 * NULL, cJSON would print nothing (an invalid item), or out of memory.
 * *len (may be NULL): the text's length. */
char *mlt__json_print(const struct cJSON *v, char *buf, size_t cap, size_t *len);
/* 1 once the stream is a Responses API event stream. */
int mlt__chat_stream_is_responses(const mlt_chat_stream *s);

/* End the call: record the outcome, end the span, give the handle's options
 * back.  |cancel_msg| non-NULL: the call was cancelled (that message).
 * Returns the outcome status.  Never calls application callbacks. */
int mlt__curl_call_complete(mlt_curl_call *call, CURLcode result, const char *cancel_msg);

/* Free the call's memory (the call must be complete). */
void mlt__curl_call_destroy(mlt_curl_call *call);

/* loop.c: mlt_curl_call_free() of a call a loop owns. */
void mlt__curl_loop_free_call(mlt_curl_call *call);

/* loop.c: the write path of a call in @p loop is running (curl may have
 * been entered from anywhere, e.g. curl_easy_pause() in application code):
 * adds, cancellations and frees are deferred until it returns. */
void mlt__curl_loop_enter_write(mlt_curl_loop *loop);
void mlt__curl_loop_leave_write(mlt_curl_loop *loop);

#endif /* MLT_CURL_INTERNAL_H */
