/* <mltrace/sse.h>: Server-Sent Events parser and OpenAI-compatible chat
 * completion stream aggregator (part of libmltrace_curl).
 *
 * Two layers, usable separately:
 *
 *  - mlt_sse_parser: an incremental parser of the text/event-stream format
 *    (WHATWG HTML "Server-sent events", section "Parsing an event stream").
 *    Feed it the response body in pieces of any size, split anywhere (mid-line,
 *    between "\r" and "\n", inside a UTF-8 sequence); it calls back once per
 *    dispatched event.  Work is O(n) in the bytes fed, whatever the split, and
 *    memory is bounded by max_event_bytes.
 *
 *  - mlt_chat_stream: feeds an mlt_sse_parser and assembles the
 *    "chat.completion.chunk" objects of an OpenAI-compatible
 *    /v1/chat/completions stream ("stream": true) into the chat.completion
 *    object the same request would have returned without streaming.  It
 *    also assembles an OpenAI Responses API stream (POST /v1/responses,
 *    "stream": true): see "Responses API streams" below.
 *
 * Bytes are passed through as they are: input need not be NUL-terminated, and
 * invalid UTF-8 is neither rejected nor repaired (libmltrace replaces it with
 * U+FFFD at export).  Every object is used by one thread at a time; different
 * objects are independent.  Callbacks must not call feed/finish/free on the
 * object that is calling them.
 *
 * Conventions ("copied", "borrowed", "takes ownership", status codes) are
 * those of <mltrace/common.h>.
 */
#ifndef MLTRACE_SSE_H
#define MLTRACE_SSE_H

#include <mltrace/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ====================================================================== */
/* SSE parser                                                             */
/* ====================================================================== */

typedef struct mlt_sse_parser mlt_sse_parser;

/** Default bound of one event (see mlt_sse_parser_new()): 8 MiB. */
#define MLT_SSE_DEFAULT_MAX_EVENT_BYTES ((size_t)8 << 20)

/**
 * Called once per dispatched event.
 * @param event the "event:" field value, or "message" when the event had none.
 * @param data the event's "data:" lines joined by '\n' (may be empty, may
 *        contain NUL bytes).
 * @param id the last event id ("id:" field, kept across events), or "".
 * All three are borrowed for the duration of the call and NUL-terminated for
 * convenience (use the lengths: data may contain NUL bytes).
 * @return 0 to continue; any other value stops the parser for good, and
 *         mlt_sse_parser_feed() returns that value (as do later feed/finish
 *         calls).
 */
typedef int (*mlt_sse_event_fn)(const char *event, size_t event_len, const char *data, size_t data_len,
                                const char *id, size_t id_len, void *user_data);

/**
 * Called when an event is discarded because it exceeded max_event_bytes (at
 * the blank line that would have dispatched it, or at finish).
 * @param event_bytes bytes of the event's lines seen (terminators excluded).
 */
typedef void (*mlt_sse_discard_fn)(size_t event_bytes, void *user_data);

/**
 * Create a parser.
 * @param fn event callback (required).
 * @param user_data passed to the callbacks (borrowed; never dereferenced).
 * @param max_event_bytes bound on the memory one event may hold: its joined
 *        data plus its event type plus the current line (field name
 *        included; comment lines are never stored and do not count); 0 gives
 *        MLT_SSE_DEFAULT_MAX_EVENT_BYTES.  A larger event is skipped up to its
 *        terminating blank line, counted (mlt_sse_parser_discarded_count()),
 *        reported to the discard callback, and never dispatched.
 * @param out receives the parser; the caller owns it (mlt_sse_parser_free()).
 * @return MLT_OK; MLT_EINVAL (fn or out NULL); MLT_ENOMEM.
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_sse_parser_new(mlt_sse_event_fn fn, void *user_data, size_t max_event_bytes,
                                  mlt_sse_parser **out);

/**
 * Feed the next @p len bytes of the stream (borrowed; not NUL-terminated).
 * Events completed by these bytes are dispatched before the call returns.
 * A leading UTF-8 BOM is stripped; lines end in "\r\n", "\n" or "\r" (a "\r"
 * ending one feed and a "\n" starting the next are one line ending); comment
 * lines (":...") are ignored; "retry:" and unknown fields are ignored; an "id:"
 * value containing NUL is ignored; events with no data are not dispatched.
 * @return MLT_OK; MLT_EINVAL (p NULL, or bytes NULL with len > 0); MLT_ENOMEM
 *         (the parser stops for good); or the non-zero value a callback
 *         returned (the rest of the bytes are dropped).  An oversized event is
 *         not an error: it is counted and reported to the discard callback.
 * Thread-safety: one thread at a time per parser.
 */
MLT_EXTERN int mlt_sse_parser_feed(mlt_sse_parser *p, const char *bytes, size_t len);

/**
 * End of stream.  As the spec requires, an event that was not terminated by a
 * blank line is discarded, not dispatched.  The parser is then ready for a new
 * stream (a reconnection): the BOM check is re-armed and per-event buffers are
 * emptied; the last event id and the counters are kept.
 * @return MLT_OK when the stream ended between events (trailing comment lines
 *         and blank lines are fine); MLT_EPARSE when an unterminated event was
 *         discarded (a field line or a partial non-comment line after the last
 *         blank line, or an oversized event in progress); MLT_EINVAL (p NULL);
 *         the callback's stop value if the parser was stopped.
 * Thread-safety: one thread at a time per parser.
 */
MLT_EXTERN int mlt_sse_parser_finish(mlt_sse_parser *p);

/** Free a parser and its buffers.  NULL is a no-op.  Never calls back. */
MLT_EXTERN void mlt_sse_parser_free(mlt_sse_parser *p);

/** Set (or, with NULL, clear) the discard callback; it receives the
 *  user_data given to mlt_sse_parser_new().
 *  @return MLT_OK; MLT_EINVAL (p NULL). */
MLT_EXTERN int mlt_sse_parser_set_discard_fn(mlt_sse_parser *p, mlt_sse_discard_fn fn);

/** Change max_event_bytes (0 = default).  Applies from the next byte on,
 *  including to the event in progress.  @return MLT_OK; MLT_EINVAL. */
MLT_EXTERN int mlt_sse_parser_set_max_event_bytes(mlt_sse_parser *p, size_t max_event_bytes);

/** Number of events dispatched so far (0 for NULL). */
MLT_EXTERN size_t mlt_sse_parser_event_count(const mlt_sse_parser *p);

/** Number of events discarded for exceeding max_event_bytes (0 for NULL). */
MLT_EXTERN size_t mlt_sse_parser_discarded_count(const mlt_sse_parser *p);

/** The last event id (for a Last-Event-ID reconnection header), "" if none;
 *  borrowed: valid until the next feed/finish/free.  @p len may be NULL.
 *  NULL p gives "". */
MLT_EXTERN const char *mlt_sse_parser_last_event_id(const mlt_sse_parser *p, size_t *len);

/* ====================================================================== */
/* OpenAI-compatible chat completion stream aggregator                    */
/* ====================================================================== */

typedef struct mlt_chat_stream mlt_chat_stream;

/*
 * Responses API streams.  When an event's data is a JSON object whose
 * "type" starts with "response." (and that has no "choices"), the
 * aggregator switches to the Responses API for the rest of the stream:
 *  - every such event is a chunk (counted, passed to the chunk hook; the
 *    delta text is the "delta" of response.output_text.delta events);
 *  - response.created / in_progress / completed / incomplete / failed keep
 *    their "response" object (id, model, usage taken from it);
 *    response.output_item.added / done keep each output item by its
 *    output_index; output_text and function_call_arguments deltas are
 *    concatenated per item;
 *  - the stream is done at response.completed or response.incomplete (no
 *    "data: [DONE]" is expected; one is ignored);
 *  - an event with "type": "error", an "event: error" event, and
 *    response.failed (its response.error.message) are errors, as above;
 *  - mlt_chat_stream_result_json() gives the final Response object as
 *    response.completed carried it, or, before that, the latest Response
 *    announced with "output" = the items so far (an unfinished message
 *    item gets one output_text part with the text so far, an unfinished
 *    function call its arguments so far);
 *  - mlt_chat_stream_content() gives the output text (every output_text
 *    delta, in order; a stream without deltas: the final Response's
 *    output_text parts), mlt_chat_stream_finish_reason() the final status,
 *    mlt_chat_stream_usage_json() the Response's usage (input_tokens,
 *    output_tokens, total_tokens).
 */

/**
 * Called for every valid chunk (a JSON object without "error"), in stream
 * order.
 * @param chunk_json the chunk's JSON text, as received (borrowed).
 * @param delta_text the text it carried for the choice with index 0 (its
 *        delta.content; a Responses stream: the delta of an output_text
 *        delta event); empty when none, e.g. a chunk of another choice
 *        (borrowed, NUL-terminated).
 */
typedef void (*mlt_chat_chunk_fn)(const char *chunk_json, size_t chunk_len, const char *delta_text,
                                  size_t delta_len, void *user_data);

/**
 * Called for every malformed event, in stream order.
 * @param reason short static text: "invalid JSON", "not a JSON object",
 *        "error object", "error event", "invalid chunk" (a choice or tool call
 *        with an unusable index or beyond the limits; the rest of the chunk is
 *        applied), "event exceeds max_event_bytes".
 * @param data the event's raw data (borrowed; "" for an oversized event).
 */
typedef void (*mlt_chat_malformed_fn)(const char *reason, const char *data, size_t len, void *user_data);

/**
 * Create an empty aggregator (with its own SSE parser, max_event_bytes 8 MiB).
 * @param out receives it; the caller owns it (mlt_chat_stream_free()).
 * @return MLT_OK; MLT_EINVAL (out NULL); MLT_ENOMEM.
 * Thread-safety: any thread.
 */
MLT_EXTERN int mlt_chat_stream_new(mlt_chat_stream **out);

/** Free an aggregator and everything it holds.  NULL is a no-op. */
MLT_EXTERN void mlt_chat_stream_free(mlt_chat_stream *s);

/**
 * Feed raw response body bytes (the SSE stream), split anywhere.  @p bytes is
 * borrowed and need not be NUL-terminated.
 *
 * Each event's data is handled as by mlt_chat_stream_add_data(); an event of
 * type "error" ("event: error") is counted as malformed and its message kept.
 * Malformed events are counted, reported and skipped: they are not errors.
 * @return MLT_OK; MLT_EINVAL (s NULL, bytes NULL with len > 0, or called after
 *         mlt_chat_stream_finish()); MLT_ENOMEM (the stream stops for good).
 * Thread-safety: one thread at a time per aggregator.
 */
MLT_EXTERN int mlt_chat_stream_feed(mlt_chat_stream *s, const char *bytes, size_t len);

/**
 * Feed one SSE data payload (one event's data, lines joined by '\n'), for a
 * caller that runs its own SSE parser.  @p data is borrowed and need not be
 * NUL-terminated.
 *  - "[DONE]" (surrounding whitespace ignored) marks the stream done;
 *  - empty or all-whitespace data is ignored (not counted);
 *  - a JSON object without "error" (or with "error": null) is a chunk: it is
 *    merged into the result, counted, and passed to the chunk hook;
 *  - anything else (invalid JSON, trailing bytes after the JSON value, a
 *    value that is not an object, an object with an "error") is counted as
 *    malformed, passed to the malformed hook, and skipped; the message of an
 *    error object is kept (mlt_chat_stream_error_message(); last one wins).
 * Chunks are merged as follows: "id", "model", "created",
 * "system_fingerprint" and "usage" (a non-null object) are taken from the
 * latest chunk that has them; choices are assembled by their "index"; in
 * each choice, delta.role and finish_reason are kept (latest non-null),
 * delta.content and delta.refusal are concatenated, and delta.tool_calls
 * are assembled by their "index" (id, type and function.name set when
 * present and non-empty; function.arguments concatenated).  A tool call
 * delta without "index" continues the call with the same "id", starts a new
 * call when its "id" is new, and otherwise continues the latest call.  At
 * most 256 choices and 256 tool calls per choice are kept.
 * @return MLT_OK; MLT_EINVAL (s NULL, data NULL with len > 0, or called after
 *         mlt_chat_stream_finish()); MLT_ENOMEM.
 * Thread-safety: one thread at a time per aggregator.
 */
MLT_EXTERN int mlt_chat_stream_add_data(mlt_chat_stream *s, const char *data, size_t len);

/**
 * End of stream: finishes the SSE parser (an unterminated last event is
 * discarded, per the SSE spec).  Later feed/add_data calls return MLT_EINVAL;
 * calling finish again returns the same value.  The result stays available
 * whatever this returns.
 * @return MLT_OK when "[DONE]" was seen and no unterminated event was
 *         discarded; MLT_EPARSE when the stream was truncated (no "[DONE]", or
 *         a partial event at the end); MLT_EINVAL (s NULL); MLT_ENOMEM.
 * Thread-safety: one thread at a time per aggregator.
 */
MLT_EXTERN int mlt_chat_stream_finish(mlt_chat_stream *s);

/**
 * Set the hooks (each may be NULL).  They are called synchronously from
 * feed/add_data/finish, in stream order; the sequence of calls does not
 * depend on how the stream was split.  @p user_data is borrowed (passed to
 * the hooks, never dereferenced).  NULL s is a no-op.
 * Thread-safety: one thread at a time per aggregator.
 */
MLT_EXTERN void mlt_chat_stream_set_hooks(mlt_chat_stream *s, mlt_chat_chunk_fn on_chunk,
                                          mlt_chat_malformed_fn on_malformed, void *user_data);

/** Change the SSE parser's max_event_bytes (0 = default 8 MiB); see
 *  mlt_sse_parser_set_max_event_bytes().  @return MLT_OK; MLT_EINVAL. */
MLT_EXTERN int mlt_chat_stream_set_max_event_bytes(mlt_chat_stream *s, size_t max_event_bytes);

/** 1 if "data: [DONE]" was seen, else 0 (also for NULL). */
MLT_EXTERN int mlt_chat_stream_is_done(const mlt_chat_stream *s);

/**
 * The assembled OpenAI chat.completion object as JSON text:
 * {"id","object":"chat.completion","created","model",["system_fingerprint"],
 *  "choices":[{"index","message":{"role","content" (null if no delta carried
 *  content),["refusal"],["tool_calls":[{"id","type","function":{"name",
 *  "arguments"}}]]},"finish_reason" (null if none)}],["usage"]}
 * Choices and tool calls are sorted by index; unknown id/model give "",
 * unknown created gives 0, role defaults to "assistant", type to "function";
 * bracketed members are omitted when never seen.  Works at any time, also on
 * a partial stream.  A Responses API stream gives its Response object
 * instead (see "Responses API streams" above).
 * @param len receives strlen() of the result (may be NULL).
 * @return malloc'd NUL-terminated text the caller frees with free(); NULL on
 *         NULL s or out of memory.
 * Thread-safety: one thread at a time per aggregator.
 */
MLT_EXTERN char *mlt_chat_stream_result_json(const mlt_chat_stream *s, size_t *len);

/**
 * MLflow token usage {"input_tokens":N,"output_tokens":N,"total_tokens":N}
 * from the last chunk that carried a "usage" object (prompt_tokens,
 * completion_tokens, total_tokens, or the Responses API's input_tokens,
 * output_tokens, total_tokens; a missing total is their sum; missing
 * counts are 0).  Usage is never summed across chunks.
 * @return malloc'd text the caller frees with free(); NULL when no usage was
 *         seen, on NULL s, or out of memory.
 */
MLT_EXTERN char *mlt_chat_stream_usage_json(const mlt_chat_stream *s);

/** Model name from the chunks, "" if unknown (or s NULL).  Borrowed: valid
 *  until the next feed/add_data/finish/free. */
MLT_EXTERN const char *mlt_chat_stream_model(const mlt_chat_stream *s);

/** Assembled content of the choice with index 0 (a Responses stream: its
 *  output text; "" if none); NUL-terminated
 *  but may contain invalid UTF-8.  @p len receives its length (may be NULL).
 *  Borrowed: valid until the next feed/add_data/finish/free. */
MLT_EXTERN const char *mlt_chat_stream_content(const mlt_chat_stream *s, size_t *len);

/** finish_reason of the choice with index 0 (a Responses stream: the final
 *  Response's status), "" if none.  Borrowed, as above. */
MLT_EXTERN const char *mlt_chat_stream_finish_reason(const mlt_chat_stream *s);

/** Number of valid chunks (0 for NULL). */
MLT_EXTERN size_t mlt_chat_stream_chunk_count(const mlt_chat_stream *s);

/** Number of malformed events (0 for NULL). */
MLT_EXTERN size_t mlt_chat_stream_malformed_count(const mlt_chat_stream *s);

/** Message of the last error event ({"error":{"message":...}},
 *  {"error":"..."}, or an "event: error" event), or NULL if none.  Borrowed,
 *  as above. */
MLT_EXTERN const char *mlt_chat_stream_error_message(const mlt_chat_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* MLTRACE_SSE_H */
