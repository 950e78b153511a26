/* <mltrace/curl.h>: libmltrace_curl: an LLM call made with libcurl as one
 * MLflow span, with OpenAI-compatible streaming, on curl_easy_perform(), on
 * any curl multi handle, or on a libevent event_base.
 *
 * Link with `pkg-config --libs mltrace_curl`.  The easy and multi paths need
 * only libcurl (>= 7.68) at compile time: this header includes <curl/curl.h>
 * and <mltrace/mltrace.h>, and names struct event_base without including
 * libevent's headers.  The application owns curl_global_init() and
 * curl_global_cleanup(); this library never calls them.
 *
 * One traced transfer is an mlt_curl_call bound to an easy handle the
 * application created and configured (URL, timeouts, TLS, ...):
 *
 *     mlt_curl_call *call;
 *     mlt_curl_call_new(h, parent_ctx, NULL, body, MLT_NTS, headers, &call);
 *     mlt_curl_call_set_write_fn(call, my_write, my_data);  // optional
 *     CURLcode rc = mlt_curl_perform(call);                 // ends the span
 *     puts(mlt_curl_call_content(call, NULL));              // the answer
 *     mlt_curl_call_free(call);
 *     curl_easy_cleanup(h);
 *
 * The span (type CHAT_MODEL by default, name "chat.completions") is a child
 * of the given context (NULL: the root of a new trace; never the thread's
 * current span).  It records:
 *  - inputs: the request body (JSON text; a body that is not JSON is recorded
 *    as a JSON string);
 *  - attributes: the request's top-level parameters except "messages" and
 *    "input" (model, temperature, stream, ...: each under its own key, as
 *    MLflow's OpenAI autolog records them), mlflow.message.format = "openai",
 *    mlflow.llm.model (the response's model, else the request's),
 *    mlflow.llm.provider (when set in the options), mlflow.chat.tools (the
 *    request's "tools"), mlflow.chat.tokenUsage (from the response's
 *    "usage": the usage chunk of a stream, sent when the request has
 *    "stream_options": {"include_usage": true}; taken once, never summed),
 *    http.request.method, http.response.status_code, url.full (without user
 *    name, password, query string or fragment);
 *  - for a streamed response (Server-Sent Events): one event
 *    "mlflow.chunk.item.<i>" per chat.completion.chunk (see
 *    mlt_span_add_chunk_json()), gen_ai.response.time_to_first_chunk, and as
 *    outputs the assembled chat.completion (role, content, tool calls
 *    assembled from their deltas, finish_reason, usage); malformed events are
 *    recorded as events "mltrace.sse.malformed" (attributes
 *    mltrace.sse.reason, mltrace.sse.data: the first 256 bytes) and skipped;
 *  - for any other response: the body as outputs (JSON when it parses, else a
 *    string), at most max_body_bytes of it.
 * Request headers are never recorded (Authorization and API keys stay out of
 * the trace).  The trace previews, when this span is the root, are the last
 * user message and the assembled answer.
 *
 * Outcome (the span's status and the call's status):
 *  - MLT_OK: the transfer completed, HTTP status < 400, and a stream ended
 *    with "data: [DONE]" and carried no error event;
 *  - MLT_ETIMEDOUT / MLT_EIO: curl failed (timeout / anything else: refused or
 *    reset connection, truncated body, ...): ERROR "CurlError: <curl message>
 *    (curl error N)";
 *  - MLT_EHTTP: HTTP status >= 400 ("HTTPError: HTTP 500: <error.message of
 *    the body>"), or an error event inside a stream ("APIError: <message>");
 *  - MLT_EPARSE: a stream that ended without "data: [DONE]" ("StreamError:
 *    stream ended without [DONE]"; see mlt_curl_options_set_require_done());
 *  - MLT_CURL_CANCELLED: cancelled, freed before completing, or aborted by the
 *    delta callback ("CancelledError: ...").
 * ERROR spans keep the partial output received so far.
 *
 * The request's headers: pass them to mlt_curl_call_new(), not with
 * CURLOPT_HTTPHEADER.  The call copies them into a list of its own, adds
 * "traceparent: 00-<trace id>-<this span's id>-<flags>" (replacing any
 * traceparent of the caller's list), and adds "Content-Type:
 * application/json" when it sends the body and the list has no Content-Type.
 *
 * Options the call owns on the easy handle until it completes (or is freed):
 * CURLOPT_WRITEFUNCTION, CURLOPT_WRITEDATA, CURLOPT_HTTPHEADER and
 * CURLOPT_PRIVATE; also CURLOPT_POSTFIELDSIZE_LARGE and
 * CURLOPT_COPYPOSTFIELDS when it sends the body.  Do not set them while the
 * call is active.  When the call completes, the handle gets back the write
 * callback given to mlt_curl_call_set_write_fn() (or curl's default),
 * CURLOPT_HTTPHEADER NULL and its previous CURLOPT_PRIVATE value; the handle
 * is then the application's again (reuse it, or curl_easy_cleanup() it,
 * before or after mlt_curl_call_free()).
 *
 * Thread-safety: a call, like its easy handle, is used by one thread at a
 * time; an mlt_curl_loop is loop thread only.  Nothing here reads the
 * thread's current span or attached context: each call carries its own span
 * and context (an mlt_curl_loop attaches the call's parent context only
 * while the done callback runs).  Options objects: one thread at a time; a
 * call copies what it needs.  Conventions ("copied", "borrowed", "takes ownership", status codes,
 * thread-safety phrases) are those of <mltrace/common.h>.
 */
#ifndef MLTRACE_CURL_H
#define MLTRACE_CURL_H

#include <curl/curl.h>
#include <mltrace/mltrace.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/** Status of a call that was cancelled (mlt_curl_loop_cancel(), its loop
 *  freed, freed before completing) or aborted by its delta callback. */
#define MLT_CURL_CANCELLED MLT_ECANCELED

/* ==== Options ========================================================= */

/** Settings shared by any number of calls (a call copies them). */
typedef struct mlt_curl_options mlt_curl_options;

/** How a call decides that the response is an OpenAI chat completion stream. */
typedef enum mlt_curl_stream_mode {
  /** Default: streaming when the request body has "stream": true. */
  MLT_CURL_STREAM_AUTO = 0,
  /** Always streaming (e.g. a body the call does not see). */
  MLT_CURL_STREAM_ON = 1,
  /** Never: the response body is recorded as it is. */
  MLT_CURL_STREAM_OFF = 2
} mlt_curl_stream_mode;
/* A streaming call parses the response as Server-Sent Events unless its
 * Content-Type names JSON (an error reply), or it has none and the HTTP
 * status is >= 400. */

/**
 * Create options with the defaults: span name "chat.completions", type
 * CHAT_MODEL, no provider, stream mode AUTO, body sent by the call,
 * traceparent injected, "[DONE]" required, max_body_bytes 1 MiB,
 * max_chunk_events 1000.
 * @param out receives the options; the caller owns them
 *        (mlt_curl_options_free()).  Set to NULL on failure.
 * @return MLT_OK; MLT_EINVAL (@p out NULL); MLT_ENOMEM.
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_curl_options_new(mlt_curl_options **out);

/** Free options.  NULL is a no-op.  Calls made with them keep their copy. */
MLT_EXTERN void mlt_curl_options_free(mlt_curl_options *opts);

/* All setters: @p opts NULL gives MLT_EINVAL; strings are copied (MLT_ENOMEM
 * when that fails, the setting then unchanged); NULL restores the default.
 * Thread-safety: one thread at a time per options object. */

/** Span name (default "chat.completions"). */
MLT_EXTERN int mlt_curl_options_set_span_name(mlt_curl_options *opts, const char *name);
/** Span type (default MLT_SPAN_CHAT_MODEL; MLT_SPAN_LLM for completion-style
 *  calls).  @return MLT_OK; MLT_EINVAL (out of range). */
MLT_EXTERN int mlt_curl_options_set_span_type(mlt_curl_options *opts, mlt_span_type type);
/** Value of mlflow.llm.provider, e.g. "openai" (default: not recorded). */
MLT_EXTERN int mlt_curl_options_set_provider(mlt_curl_options *opts, const char *provider);
/** Stream detection (default MLT_CURL_STREAM_AUTO).
 *  @return MLT_OK; MLT_EINVAL (unknown mode). */
MLT_EXTERN int mlt_curl_options_set_stream(mlt_curl_options *opts, mlt_curl_stream_mode mode);
/** 1 (default): the call sends the body it is given (CURLOPT_POSTFIELDSIZE_LARGE
 *  and CURLOPT_COPYPOSTFIELDS, so the recorded inputs are the bytes sent);
 *  0: the application sets the request body itself and the body given to
 *  mlt_curl_call_new() is only recorded. */
MLT_EXTERN int mlt_curl_options_set_send_body(mlt_curl_options *opts, int send);
/** 1 (default) to add the traceparent header, 0 not to. */
MLT_EXTERN int mlt_curl_options_set_inject_traceparent(mlt_curl_options *opts, int inject);
/** 1 (default): a stream that ends without "data: [DONE]" is an error
 *  (MLT_EPARSE); 0: it is fine (servers that never send [DONE]). */
MLT_EXTERN int mlt_curl_options_set_require_done(mlt_curl_options *opts, int require);
/** Most bytes of a non-streamed response body kept for the outputs and the
 *  accessors, 0..1 GiB (default 1 MiB); the rest is still passed to the
 *  write callback, and the outputs are marked truncated.  The core's
 *  max_value_bytes applies on top.  @return MLT_OK; MLT_EINVAL (over 1 GiB). */
MLT_EXTERN int mlt_curl_options_set_max_body_bytes(mlt_curl_options *opts, size_t bytes);
/** Most stream chunks recorded as span events (default 1000, the core's
 *  default max_events_per_span; raise both together).  The core keeps
 *  every chunk it is given in memory until the span ends, so this bounds
 *  the memory a long stream takes.  0 records none (then there is no
 *  gen_ai.response.time_to_first_chunk either).  Every chunk is still
 *  assembled into the outputs and passed to the delta callback; the total
 *  is recorded as attribute mltrace.sse.chunks. */
MLT_EXTERN int mlt_curl_options_set_max_chunk_events(mlt_curl_options *opts, uint32_t max);

/* ==== Traced calls ==================================================== */

/** One traced transfer on one easy handle. */
typedef struct mlt_curl_call mlt_curl_call;

/**
 * Delta callback: called for every chat.completion.chunk of a stream (and
 * every event of a Responses API stream), in stream order, after the chunk
 * has been recorded, from inside curl's write path (so inside
 * curl_easy_perform() or curl_multi_socket_action()).  For choice indexes
 * and tool-call deltas, use the chunk callback (mlt_curl_chunk_fn) instead.
 * @param call the call.
 * @param chunk_json the chunk's JSON text as received (borrowed for the
 *        call; not NUL-terminated): a proxy can relay it as
 *        "data: <chunk_json>\n\n".
 * @param delta the text the chunk carried for the choice with index 0
 *        (its delta.content; a Responses stream: the delta of a
 *        response.output_text.delta event), "" for a chunk without such
 *        text (role, tool-call and finish chunks, chunks of other choices);
 *        borrowed, NUL-terminated, @p delta_len bytes.
 * @return 0 to continue; non-zero to abort the transfer (curl then fails
 *         with CURLE_WRITE_ERROR and the call ends as cancelled, keeping the
 *         partial output).  No further delta calls follow a non-zero return.
 * The callback must not free the call or clean up its easy handle.  It may
 * call mlt_curl_loop_cancel() (on any call of the loop).
 */
typedef int (*mlt_curl_delta_fn)(mlt_curl_call *call, const char *chunk_json, size_t chunk_len, const char *delta,
                                 size_t delta_len, void *user_data);

/** Which API a streamed chunk belongs to (mlt_curl_chunk.api). */
typedef enum mlt_curl_api {
  /** Chat Completions: "chat.completion.chunk" objects, "data: [DONE]". */
  MLT_CURL_API_CHAT = 0,
  /** Responses API: "response.*" events, ending with response.completed. */
  MLT_CURL_API_RESPONSES = 1
} mlt_curl_api;

/** One tool-call delta of a choice (mlt_curl_choice_delta.tool_calls).
 *  Strings are borrowed for the callback, NUL-terminated, "" when the
 *  delta does not carry them. */
typedef struct mlt_curl_tool_delta {
  /** The tool call's index within its choice (Chat Completions), or the
   *  function call item's output_index (Responses). */
  int index;
  /** The call id (the first delta of a call carries it), else "". */
  const char *id;
  /** The function name (first delta), else "". */
  const char *name;
  /** A fragment of the JSON arguments, to concatenate; "" when none. */
  const char *arguments;
  size_t arguments_len;
} mlt_curl_tool_delta;

/** What one chunk carried for one choice (mlt_curl_chunk.choices). */
typedef struct mlt_curl_choice_delta {
  /** The choice's "index" (its position in the chunk when absent).  A
   *  Responses stream has one choice, index 0. */
  int index;
  /** delta.role, "" when absent. */
  const char *role;
  /** delta.content (a Responses stream: the output_text delta), "" when
   *  absent; @p content_len bytes. */
  const char *content;
  size_t content_len;
  /** delta.refusal, "" when absent. */
  const char *refusal;
  size_t refusal_len;
  /** finish_reason, "" when absent or null. */
  const char *finish_reason;
  /** The tool-call deltas of this choice (@p n_tool_calls of them; NULL
   *  when none).  A Responses stream reports a function call item as a
   *  delta with id (call_id) and name when the item is added, then one
   *  per response.function_call_arguments.delta. */
  const mlt_curl_tool_delta *tool_calls;
  size_t n_tool_calls;
} mlt_curl_choice_delta;

/**
 * One chunk of a stream as the chunk callback sees it (see
 * mlt_curl_call_set_chunk_fn()).  Everything is borrowed for the duration
 * of the callback.  The library allocates it: fields may be appended in
 * later versions.
 */
typedef struct mlt_curl_chunk {
  /** The event's data as received (the chunk's JSON text; not
   *  NUL-terminated): a relay sends it as "data: <data>\n\n". */
  const char *data;
  size_t data_len;
  /** The SSE event type: the "event:" field, or "message" when the event
   *  had none (Chat Completions streams have none; Responses streams name
   *  each event, e.g. "response.output_text.delta").  NUL-terminated. */
  const char *event;
  size_t event_len;
  /** MLT_CURL_API_CHAT or MLT_CURL_API_RESPONSES. */
  mlt_curl_api api;
  /** Per-choice deltas, in the chunk's order (@p n_choices; NULL when
   *  none, e.g. a usage-only chunk, or a Responses event without text or
   *  function-call data). */
  const mlt_curl_choice_delta *choices;
  size_t n_choices;
  /** 1 when the chunk carries token usage (a non-null "usage" object; a
   *  Responses stream: response.completed with usage). */
  int has_usage;
} mlt_curl_chunk;

/**
 * Chunk callback: called for every valid chunk of a stream (every
 * chat.completion.chunk, every Responses API event), in stream order,
 * after the chunk has been recorded on the span and before the delta
 * callback, from inside curl's write path.  Unlike the delta callback it
 * reports each choice's index, role, text, refusal, finish_reason and
 * tool-call deltas, so a relay can keep choices apart.  Error events are
 * not chunks: they end the call with an error.
 * @param call the call.
 * @param chunk the chunk (borrowed for the call).
 * @return 0 to continue; non-zero to abort the transfer, as the delta
 *         callback (no further chunk or delta calls follow).
 * Same rules as the delta callback: do not free the call or clean up its
 * easy handle; mlt_curl_loop_cancel() is fine.
 */
typedef int (*mlt_curl_chunk_fn)(mlt_curl_call *call, const mlt_curl_chunk *chunk, void *user_data);

/**
 * Instrument @p easy for one transfer: start the span, record the request,
 * and take over the options listed in the header comment.  Configure
 * everything else on @p easy (URL, timeouts, ...) as usual, before or after
 * this call; create the call right before the transfer starts (the span's
 * duration and the time to first chunk count from here).
 * @param easy the easy handle (borrowed: it must outlive the call's
 *        transfer; one call per handle at a time).
 * @param parent parent context (borrowed), or NULL to start a new trace.
 * @param opts options (copied), or NULL for the defaults.
 * @param body the request body, an OpenAI-style JSON request (copied), or
 *        NULL for none (no inputs; nothing sent).
 * @param body_len its length in bytes, or MLT_NTS when NUL-terminated.
 * @param headers the request headers (copied: the caller keeps its list and
 *        may free it right away), or NULL.
 * @param out receives the call (the caller owns it: mlt_curl_call_free());
 *        set to NULL on failure.
 * @return MLT_OK; MLT_EINVAL (@p easy or @p out NULL); MLT_ENOMEM.  On
 *         failure no span was started and the handle is unchanged, except
 *         possibly its POST body (when the call was to send one).
 * Works the same with tracing disabled or not initialized (no span; the
 * stream is still assembled, the callbacks and accessors still work).
 * Thread-safety: one thread at a time per easy handle.
 */
MLT_EXTERN int mlt_curl_call_new(CURL *easy, const mlt_context *parent, const mlt_curl_options *opts,
                                 const char *body, size_t body_len, const struct curl_slist *headers,
                                 mlt_curl_call **out);

/**
 * Set the application's write callback: it receives every byte of the
 * response body, unchanged and in order, before the call parses it, with
 * @p user_data as its last argument (as CURLOPT_WRITEFUNCTION /
 * CURLOPT_WRITEDATA).  Its return value is passed back to curl: a short
 * count aborts the transfer (CURLE_WRITE_ERROR) and only the bytes it
 * accepted are parsed; CURL_WRITEFUNC_PAUSE pauses it (the same bytes come
 * back on resume).  @p fn NULL (default): the body is consumed (not written
 * to stdout, unlike curl's default).
 * @return MLT_OK; MLT_EINVAL (@p call NULL); MLT_EENDED (the call completed).
 * Thread-safety: one thread at a time per call; set it before the transfer.
 */
MLT_EXTERN int mlt_curl_call_set_write_fn(mlt_curl_call *call, curl_write_callback fn, void *user_data);

/** Set the delta callback (see mlt_curl_delta_fn); @p fn NULL removes it.
 *  @return MLT_OK; MLT_EINVAL (@p call NULL); MLT_EENDED (completed).
 *  Thread-safety: one thread at a time per call. */
MLT_EXTERN int mlt_curl_call_set_delta_fn(mlt_curl_call *call, mlt_curl_delta_fn fn, void *user_data);

/** Set the chunk callback (see mlt_curl_chunk_fn); @p fn NULL removes it.
 *  It may be set together with a delta callback (the chunk callback runs
 *  first for each chunk).  @p user_data is borrowed, passed to @p fn.
 *  @return MLT_OK; MLT_EINVAL (@p call NULL); MLT_EENDED (completed).
 *  Thread-safety: one thread at a time per call. */
MLT_EXTERN int mlt_curl_call_set_chunk_fn(mlt_curl_call *call, mlt_curl_chunk_fn fn, void *user_data);

/**
 * curl_easy_perform() the call's handle, then end the span (see
 * mlt_curl_call_done()).  Blocks like curl_easy_perform().
 * @return curl_easy_perform()'s result; CURLE_BAD_FUNCTION_ARGUMENT for a
 *         NULL call or one that was already performed, completed or added to
 *         a loop (nothing is done then).  An HTTP error status is not a curl
 *         error: see mlt_curl_call_status() / mlt_curl_call_http_status().
 * Thread-safety: one thread at a time per call.
 */
MLT_EXTERN CURLcode mlt_curl_perform(mlt_curl_call *call);

/**
 * The transfer is over: record the outcome and end the span.  For a handle
 * driven by the application's own multi handle, call it with the result of
 * its CURLMSG_DONE message (msg->data.result), before or after
 * curl_multi_remove_handle().  Gives the handle's options back (see the
 * header comment).
 * @return the outcome (see mlt_curl_call_status()); MLT_EINVAL (@p call
 *         NULL, or a call owned by an mlt_curl_loop, which calls it itself);
 *         MLT_EENDED when the call already completed (nothing changes).
 * Thread-safety: one thread at a time per call.
 */
MLT_EXTERN int mlt_curl_call_done(mlt_curl_call *call, CURLcode result);

/**
 * The call instrumenting @p easy (read back from CURLOPT_PRIVATE), for the
 * application's own CURLMSG_DONE loop; NULL when @p easy is NULL.  Only
 * meaningful while a call is active on @p easy (before it completes):
 * otherwise it returns whatever CURLOPT_PRIVATE holds.
 * Thread-safety: one thread at a time per easy handle.
 */
MLT_EXTERN mlt_curl_call *mlt_curl_call_from_easy(CURL *easy);

/**
 * Free a call.  One that has not completed is ended first, as cancelled
 * (span ERROR "CancelledError: call freed before the transfer completed"),
 * and gives its handle's options back, so its easy handle must still exist
 * then (and be out of the application's multi handle).  A call owned by an mlt_curl_loop is cancelled (its done callback
 * runs once, with MLT_CURL_CANCELLED) and freed after that callback returns.
 * Inside the call's own done callback the free happens when the callback
 * returns.  NULL is a no-op.
 * Thread-safety: one thread at a time per call (the loop thread for a call
 * in a loop); not from the call's write or delta callback.
 */
MLT_EXTERN void mlt_curl_call_free(mlt_curl_call *call);

/* ---- Accessors (NULL call: 0, NULL, "" or MLT_SPAN_NONE) -------------- */
/* Strings returned here are borrowed from the call: valid until it is freed
 * (the content and model of a stream in progress: until curl writes again).
 * Thread-safety: one thread at a time per call. */

/** The easy handle (borrowed; it may already be cleaned up after completion). */
MLT_EXTERN CURL *mlt_curl_call_easy(const mlt_curl_call *call);
/** The call's span (MLT_SPAN_NONE when tracing is off); e.g. to add
 *  attributes before the transfer.  Do not end it: the call does. */
MLT_EXTERN mlt_span mlt_curl_call_span(const mlt_curl_call *call);
/** The span's context: a new reference (mlt_context_release()), or NULL
 *  when tracing is off.  Start work that belongs under the LLM call with it. */
MLT_EXTERN mlt_context *mlt_curl_call_context(const mlt_curl_call *call);
/** 1 if the call treats the response as a stream (request "stream": true,
 *  or MLT_CURL_STREAM_ON). */
MLT_EXTERN int mlt_curl_call_is_streaming(const mlt_curl_call *call);
/** 1 once the call completed (its span ended). */
MLT_EXTERN int mlt_curl_call_is_done(const mlt_curl_call *call);
/** The outcome: MLT_OK, MLT_ETIMEDOUT, MLT_EIO, MLT_EHTTP, MLT_EPARSE or
 *  MLT_CURL_CANCELLED (see the header comment); MLT_OK before completion;
 *  MLT_EINVAL for NULL. */
MLT_EXTERN int mlt_curl_call_status(const mlt_curl_call *call);
/** The span's error description ("CurlError: ...", "HTTPError: ..."), or
 *  NULL when the call succeeded or has not completed. */
MLT_EXTERN const char *mlt_curl_call_error(const mlt_curl_call *call);
/** The CURLcode the transfer ended with (CURLE_OK before completion). */
MLT_EXTERN CURLcode mlt_curl_call_curl_result(const mlt_curl_call *call);
/** The HTTP status of the response (0 before one arrived). */
MLT_EXTERN long mlt_curl_call_http_status(const mlt_curl_call *call);
/** The answer text (content of choice 0): assembled so far for a stream,
 *  from the response body after completion otherwise; "" when none.  May
 *  contain invalid UTF-8.  @p len (may be NULL) receives its length. */
MLT_EXTERN const char *mlt_curl_call_content(const mlt_curl_call *call, size_t *len);
/** After completion: the span's outputs as JSON text (the assembled
 *  chat.completion of a stream, or the response body), or NULL when there
 *  were none (or before completion).  @p len (may be NULL): its length. */
MLT_EXTERN const char *mlt_curl_call_result_json(const mlt_curl_call *call, size_t *len);
/** After completion: mlflow.chat.tokenUsage as recorded,
 *  {"input_tokens":N,"output_tokens":N,"total_tokens":N[,cache keys]}, or
 *  NULL when the response carried no usage. */
MLT_EXTERN const char *mlt_curl_call_usage_json(const mlt_curl_call *call);
/** The model: the response's once known, else the request's; "" if none. */
MLT_EXTERN const char *mlt_curl_call_model(const mlt_curl_call *call);
/** finish_reason of choice 0 ("" if none; after completion for a
 *  non-streamed response). */
MLT_EXTERN const char *mlt_curl_call_finish_reason(const mlt_curl_call *call);
/** Number of valid chunks of a stream so far. */
MLT_EXTERN size_t mlt_curl_call_chunk_count(const mlt_curl_call *call);
/** Number of malformed stream events so far. */
MLT_EXTERN size_t mlt_curl_call_malformed_count(const mlt_curl_call *call);

/* ==== curl multi on a libevent event_base ============================= */

/** A curl multi handle driven by a libevent event_base (one struct event per
 *  socket, one timer), running traced calls. */
typedef struct mlt_curl_loop mlt_curl_loop;

/**
 * Called once per call added to a loop, on the loop thread, after the span
 * ended and the handle's options were given back (the handle is out of the
 * multi handle: reuse it or clean it up here).  The call's parent context
 * (the one given to mlt_curl_call_new()) is attached during the callback.
 * @param call the call: from now on the callback's to free
 *        (mlt_curl_call_free(), here or later).
 * @param status the outcome, as mlt_curl_call_status(): MLT_CURL_CANCELLED
 *        when cancelled or when the loop was freed first.
 */
typedef void (*mlt_curl_done_fn)(mlt_curl_call *call, int status, void *user_data);

/**
 * Create a loop on @p base: a new CURLM with CURLMOPT_SOCKETFUNCTION and
 * CURLMOPT_TIMERFUNCTION bound to libevent events on @p base.
 * @param base the event base (borrowed: it must outlive the loop).
 * @param out receives the loop; set to NULL on failure.
 * @return MLT_OK; MLT_EINVAL (NULL argument); MLT_ENOMEM; MLT_EIO (curl or
 *         libevent refused).
 * Thread-safety: loop thread only (the thread that runs @p base).
 */
MLT_EXTERN int mlt_curl_loop_new(struct event_base *base, mlt_curl_loop **out);

/**
 * Cancel every call still in the loop (each done callback runs once, with
 * MLT_CURL_CANCELLED; spans end with ERROR "CancelledError: ..."), then free
 * the multi handle and the events.  Call it before event_base_free().  From
 * inside one of the loop's callbacks (done, write or delta, also when curl
 * was entered through curl_easy_pause()), the free happens when the
 * outermost callback returns, or from the loop right after curl returns
 * (or at a later mlt_curl_loop_free() made outside curl, e.g. before
 * event_base_free()); mlt_curl_loop_add() fails with MLT_EENDED from then
 * on.  NULL is a no-op.
 * Thread-safety: loop thread only.
 */
MLT_EXTERN void mlt_curl_loop_free(mlt_curl_loop *loop);

/** The multi handle (borrowed), for settings such as
 *  CURLMOPT_MAX_HOST_CONNECTIONS.  Do not change its socket and timer
 *  functions or their data, and do not add or remove handles directly.
 *  NULL for NULL.  Thread-safety: loop thread only. */
MLT_EXTERN CURLM *mlt_curl_loop_multi(const mlt_curl_loop *loop);

/** Number of calls in the loop (added, not yet completed).  0 for NULL. */
MLT_EXTERN size_t mlt_curl_loop_count(const mlt_curl_loop *loop);

/**
 * Start @p call's transfer on the loop.  The loop owns the call until its
 * done callback, which then owns it.
 * @param done completion callback (required); @p user_data is passed to it
 *        (borrowed, never dereferenced).
 * @return MLT_OK: @p done runs exactly once, later, on the loop thread
 *         (never inside this call); MLT_EINVAL (a NULL argument, or a call
 *         already performed, completed or in a loop); MLT_EENDED (the loop
 *         is being freed); MLT_EIO (curl_multi_add_handle() failed).  On
 *         failure @p done never runs and the call stays the caller's,
 *         unchanged.  Called from inside a write or delta callback of the
 *         loop, the handle is added right after that callback returns.
 * Thread-safety: loop thread only.
 */
MLT_EXTERN int mlt_curl_loop_add(mlt_curl_loop *loop, mlt_curl_call *call, mlt_curl_done_fn done, void *user_data);

/**
 * Cancel a call of a loop: the transfer stops, the span ends with ERROR
 * "CancelledError: transfer cancelled" (keeping the partial output), and the
 * done callback runs exactly once with MLT_CURL_CANCELLED: before this call
 * returns, or, when called from inside a write or delta callback of the
 * loop, right after that callback returns (no further write or delta
 * callbacks reach the call in between).
 * @return MLT_OK; MLT_EINVAL (@p call NULL or not in a loop); MLT_EENDED (the
 *         call already completed, is being cancelled, or its done callback
 *         is running: nothing happens).
 * Thread-safety: loop thread only.
 */
MLT_EXTERN int mlt_curl_loop_cancel(mlt_curl_call *call);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_CURL_H */
