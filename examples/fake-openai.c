/*
 * fake-openai.c - a small, deterministic OpenAI-compatible chat completions
 * server built on libevent's evhttp.
 *
 * libmltrace's demo, tests and benchmarks use it (on 127.0.0.1 only) as a
 * stand-in for an LLM endpoint.  It speaks the real OpenAI wire format
 * (chat.completion objects and chat.completion.chunk server-sent events),
 * gives answers a test can predict from the request, and has per-request
 * fault and timing controls (X-Fake-* request headers).  Usage notes and
 * the exact rules are in examples/fake-openai.md.
 *
 * Build:
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wshadow \
 *       -Wstrict-prototypes -Wmissing-prototypes -o fake-openai \
 *       examples/fake-openai.c \
 *       $(pkg-config --cflags --libs libevent_core libevent_extra) -lcjson
 */

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

#include <cjson/cJSON.h>

#define CHAT_PATH "/v1/chat/completions"
#define RESPONSES_PATH "/v1/responses"
#define MODELS_PATH "/v1/models"
#define DEFAULT_MODEL "fake-gpt"
#define FINGERPRINT "fp_fake"
#define TOKEN_BYTES 4 /* a "token" is at most this many bytes */
#define ANSWER_PREFIX "Echo: "
#define ANSWER_SUFFIX " \xE2\x9C\x93" /* " ✓": 4 bytes, always last token */
#define REPEAT_PHRASE "The quick brown fox jumps over the lazy dog. "
#define IDLE_TIMEOUT_S 60          /* evhttp read/write timeout */
#define HIGH_WATER (256 * 1024)    /* pause a stream above this backlog */
#define MAX_DELAY_MS 3600000L      /* one hour */
#define MAX_FAKE_TOKENS 100000000L
#define MAX_BATCH 1024
#define MAX_CHOICES 8              /* "n" of a chat request */
#define MAX_RESPONSES_TOKENS 100000L /* X-Fake-Tokens on /v1/responses */
#define LISTEN_BACKLOG 1024

/* ------------------------------------------------------------------ */
/* Global state                                                        */
/* ------------------------------------------------------------------ */

struct config {
	const char *host;
	long port;
	long delay_ms;
	int quiet;
};

struct stats {
	unsigned long requests;          /* every HTTP request */
	unsigned long chat;              /* POST /v1/chat/completions */
	unsigned long responses;         /* POST /v1/responses */
	unsigned long streams;           /* streaming responses started */
	unsigned long streams_done;      /* streams that reached [DONE] */
	unsigned long non_stream;        /* chat.completion objects sent */
	unsigned long client_disconnects;/* client went away before the end */
	unsigned long injected_disconnects;
	unsigned long injected_errors;   /* X-Fake-Status replies */
	unsigned long hangs;
	unsigned long bad_requests;      /* 400 */
	unsigned long not_found;         /* 404 / 405 */
};

static struct config g_cfg = { "127.0.0.1", 0, 0, 0 };
static struct stats g_stats;
static struct event_base *g_base;
static unsigned long g_completion_seq;
static int g_shutting_down;

/* ------------------------------------------------------------------ */
/* Deferred request state                                             */
/* ------------------------------------------------------------------ */

enum body_kind { BODY_ECHO, BODY_REPEAT, BODY_TOOLS };
enum pending_kind { PK_STREAM, PK_DELAYED, PK_HANG };
enum phase { PH_ROLE, PH_BODY, PH_FINISH, PH_USAGE, PH_DONE };
enum api { API_CHAT, API_RESPONSES };

/* X-Fake-Framing flags: how stream events are written. */
#define FR_CRLF 1     /* lines end with CRLF */
#define FR_COMMENTS 2 /* comment lines before and inside every event */
#define FR_SPLIT 4    /* each write split inside a multi-byte UTF-8 sequence */

#define MAX_TOOL_CALLS 2

struct tool_call {
	char *name;
	const char *args; /* static string */
};

/*
 * One per request that is not answered synchronously: a stream, a delayed
 * non-streaming reply, or a hang.  Owned by us; linked into g_pending so
 * that everything can be accounted for at exit.  Never owns the
 * evhttp_request except transiently in on_conn_close().
 */
struct pending {
	struct pending *prev, *next;
	int linked; /* in g_pending */
	enum pending_kind kind;
	struct evhttp_request *req;
	struct event *timer;
	long delay_ms;
	long batch;            /* data events per timer tick */
	long disconnect_after; /* -1: never */
	long error_after;      /* -1: never; else an error event after K events */
	int aborting;          /* close the connection once output drained */
	int framing;           /* FR_* flags */
	long write_bytes;      /* 0: whole events per write; else at most N */
	struct evbuffer *outq; /* framed bytes not written yet */
	int outq_last;         /* outq ends the stream */
	int split_done;        /* FR_SPLIT: this tick's write was split */
	int errored;           /* the stream ended with an injected error */

	/* PK_DELAYED */
	struct evbuffer *reply;

	/* PK_STREAM */
	char id[48];
	char *model;
	long long created;
	int include_usage;
	long prompt_tokens;
	long completion_tokens;
	enum phase phase;
	long data_sent; /* "data:" events queued so far */
	enum api api;
	enum body_kind body;
	int nchoices;                   /* BODY_ECHO: "n" (1..MAX_CHOICES) */
	char *text[MAX_CHOICES];        /* BODY_ECHO: each choice's answer */
	size_t text_len[MAX_CHOICES], pos[MAX_CHOICES];
	int role_idx, finish_idx, rr;   /* choices done in each phase */
	char **events;                  /* API_RESPONSES: the whole stream */
	size_t nevents, event_idx;
	long repeat_total, repeat_idx; /* BODY_REPEAT */
	struct tool_call calls[MAX_TOOL_CALLS]; /* BODY_TOOLS */
	int ncalls, call_idx, call_header_sent;
	size_t arg_pos;
};

static struct pending *g_pending;

static void pending_free(struct pending *p)
{
	int i;

	if (p->linked) {
		if (p->prev)
			p->prev->next = p->next;
		else
			g_pending = p->next;
		if (p->next)
			p->next->prev = p->prev;
	}
	if (p->timer)
		event_free(p->timer);
	if (p->reply)
		evbuffer_free(p->reply);
	if (p->outq)
		evbuffer_free(p->outq);
	for (i = 0; i < p->ncalls; i++)
		free(p->calls[i].name);
	for (i = 0; i < MAX_CHOICES; i++)
		free(p->text[i]);
	for (size_t e = 0; e < p->nevents; e++)
		free(p->events[e]);
	free(p->events);
	free(p->model);
	free(p);
}

static void oom(void)
{
	fprintf(stderr, "fake-openai: out of memory\n");
	abort();
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n, sz);
	if (!p)
		oom();
	return p;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		oom();
	return d;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static const char *status_reason(int code)
{
	switch (code) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return code < 500 ? "Client Error" : "Server Error";
	}
}

/* Parses a decimal header value in [lo, hi]; returns dflt if absent/bad. */
static long header_long(struct evkeyvalq *hdrs, const char *name, long lo,
			long hi, long dflt)
{
	const char *v = evhttp_find_header(hdrs, name);
	char *end;
	long n;

	if (!v)
		return dflt;
	while (*v == ' ' || *v == '\t')
		v++;
	errno = 0;
	n = strtol(v, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	if (errno || end == v || *end != '\0' || n < lo || n > hi)
		return dflt;
	return n;
}

static int header_true(struct evkeyvalq *hdrs, const char *name)
{
	const char *v = evhttp_find_header(hdrs, name);

	if (!v)
		return 0;
	while (*v == ' ' || *v == '\t')
		v++;
	return strncmp(v, "1", 1) == 0 || strncasecmp(v, "true", 4) == 0 ||
	       strncasecmp(v, "yes", 3) == 0;
}

static struct bufferevent *req_bev(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	return evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
}

static void set_timeouts(struct evhttp_request *req, int read_timeout)
{
	struct bufferevent *bev = req_bev(req);
	struct timeval tv = { IDLE_TIMEOUT_S, 0 };

	if (bev)
		bufferevent_set_timeouts(bev, read_timeout ? &tv : NULL, &tv);
}

/*
 * evhttp turns reading off while the user handles a request, so a client
 * that goes away before we start replying is not noticed.  Re-enable
 * reading with no read callback (exactly what evhttp itself does while it
 * writes a reply): EOF then reaches evhttp's error callback, which detaches
 * the request and frees the connection, calling our close callback.
 */
static void watch_for_close(struct evhttp_request *req)
{
	struct bufferevent *bev = req_bev(req);
	bufferevent_data_cb rcb, wcb;
	bufferevent_event_cb ecb;
	void *arg;

	if (!bev)
		return;
	bufferevent_getcb(bev, &rcb, &wcb, &ecb, &arg);
	bufferevent_setcb(bev, NULL, wcb, ecb, arg);
	bufferevent_enable(bev, EV_READ);
}

static void arm_timer(struct pending *p, long ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(p->timer, &tv);
}

/* ------------------------------------------------------------------ */
/* Replies                                                             */
/* ------------------------------------------------------------------ */

static void send_json(struct evhttp_request *req, int status, cJSON *root)
{
	char *s = cJSON_PrintUnformatted(root);
	struct evbuffer *buf = evbuffer_new();

	if (!s || !buf)
		oom();
	evbuffer_add(buf, s, strlen(s));
	evbuffer_add(buf, "\n", 1);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", "application/json");
	evhttp_send_reply(req, status, status_reason(status), buf);
	evbuffer_free(buf);
	cJSON_free(s);
}

static cJSON *error_object(const char *message, const char *type,
			   const char *code)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *err = cJSON_AddObjectToObject(root, "error");

	cJSON_AddStringToObject(err, "message", message);
	cJSON_AddStringToObject(err, "type", type);
	cJSON_AddNullToObject(err, "param");
	if (code)
		cJSON_AddStringToObject(err, "code", code);
	else
		cJSON_AddNullToObject(err, "code");
	return root;
}

static void send_error(struct evhttp_request *req, int status,
		       const char *message, const char *type, const char *code)
{
	cJSON *root = error_object(message, type, code);

	send_json(req, status, root);
	cJSON_Delete(root);
}

static void send_bad_request(struct evhttp_request *req, const char *message)
{
	g_stats.bad_requests++;
	send_error(req, 400, message, "invalid_request_error", NULL);
}

static void send_injected_status(struct evhttp_request *req, int status)
{
	const char *msg, *type, *code = NULL;

	g_stats.injected_errors++;
	switch (status) {
	case 429:
		msg = "Rate limit reached for fake-gpt (injected by "
		      "X-Fake-Status). Please try again in 1s.";
		type = "requests";
		code = "rate_limit_exceeded";
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Retry-After", "1");
		break;
	case 503:
		msg = "The engine is currently overloaded, please try again "
		      "later. (injected by X-Fake-Status)";
		type = "server_error";
		break;
	default:
		if (status >= 500) {
			msg = "The server had an error while processing your "
			      "request. Sorry about that! (injected by "
			      "X-Fake-Status)";
			type = "server_error";
		} else {
			msg = "Injected client error (X-Fake-Status).";
			type = "invalid_request_error";
		}
		break;
	}
	send_error(req, status, msg, type, code);
}

/* ------------------------------------------------------------------ */
/* Deterministic answers                                               */
/* ------------------------------------------------------------------ */

static size_t utf8_seq_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0)
		return 2;
	if ((c & 0xF0) == 0xE0)
		return 3;
	if ((c & 0xF8) == 0xF0)
		return 4;
	return 1; /* stray continuation / invalid byte */
}

/*
 * Length of the token starting at pos: as many whole UTF-8 sequences as fit
 * in TOKEN_BYTES bytes (always at least one sequence).
 */
static size_t next_token_len(const char *s, size_t len, size_t pos)
{
	size_t n = 0;

	while (pos + n < len) {
		size_t cl = utf8_seq_len((unsigned char)s[pos + n]);

		if (cl > len - pos - n)
			cl = len - pos - n;
		if (n > 0 && n + cl > TOKEN_BYTES)
			break;
		n += cl;
		if (n >= TOKEN_BYTES)
			break;
	}
	return n;
}

static long count_tokens(const char *s, size_t len)
{
	size_t pos = 0;
	long n = 0;

	while (pos < len) {
		pos += next_token_len(s, len, pos);
		n++;
	}
	return n;
}

/* BODY_REPEAT token i (0-based) of total: 4 bytes, NUL-terminated. */
static void repeat_token(long i, long total, char out[TOKEN_BYTES + 1])
{
	static const char phrase[] = REPEAT_PHRASE;
	const size_t plen = sizeof(phrase) - 1;
	size_t off, k;

	if (i == total - 1) {
		memcpy(out, ANSWER_SUFFIX, TOKEN_BYTES);
	} else {
		off = ((size_t)i * TOKEN_BYTES) % plen;
		for (k = 0; k < TOKEN_BYTES; k++)
			out[k] = phrase[(off + k) % plen];
	}
	out[TOKEN_BYTES] = '\0';
}

/* Byte length of a message's content: string, or array of text parts. */
static size_t content_len(const cJSON *content)
{
	const cJSON *part;
	size_t n = 0;

	if (cJSON_IsString(content))
		return strlen(content->valuestring);
	if (!cJSON_IsArray(content))
		return 0;
	cJSON_ArrayForEach(part, content) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
		if (cJSON_IsString(t))
			n += strlen(t->valuestring);
	}
	return n;
}

/* Appends the text of a content value to buf (which has room). */
static size_t content_copy(const cJSON *content, char *buf)
{
	const cJSON *part;
	size_t n = 0, l;

	if (cJSON_IsString(content)) {
		l = strlen(content->valuestring);
		memcpy(buf, content->valuestring, l);
		return l;
	}
	if (!cJSON_IsArray(content))
		return 0;
	cJSON_ArrayForEach(part, content) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
		if (cJSON_IsString(t)) {
			l = strlen(t->valuestring);
			memcpy(buf + n, t->valuestring, l);
			n += l;
		}
	}
	return n;
}

static const char *const tool_args[MAX_TOOL_CALLS] = {
	"{\"city\": \"Paris\"}",
	"{\"city\": \"London\"}",
};

static const char *tool_name(const cJSON *tool)
{
	const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tool, "function");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");

	if (cJSON_IsString(name) && name->valuestring[0])
		return name->valuestring;
	name = cJSON_GetObjectItemCaseSensitive(tool, "name");
	if (cJSON_IsString(name) && name->valuestring[0])
		return name->valuestring;
	return "get_weather";
}

static long body_token_count(const struct pending *p)
{
	long n = 0;
	int i;

	switch (p->body) {
	case BODY_ECHO:
		for (i = 0; i < p->nchoices; i++)
			n += count_tokens(p->text[i], p->text_len[i]);
		return n;
	case BODY_REPEAT:
		return p->repeat_total;
	case BODY_TOOLS:
		for (i = 0; i < p->ncalls; i++)
			n += 1 + count_tokens(p->calls[i].args,
					      strlen(p->calls[i].args));
		return n;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Request parsing -> struct pending                                   */
/* ------------------------------------------------------------------ */

/* Choice @k's answer: "Echo: <user> ✓", or "Echo #<k+1>: <user> ✓". */
static void set_echo_answer(struct pending *p, int k, const char *user,
			    size_t ulen)
{
	char prefix[32];
	size_t plen;

	if (k == 0)
		snprintf(prefix, sizeof(prefix), "%s", ANSWER_PREFIX);
	else
		snprintf(prefix, sizeof(prefix), "Echo #%d: ", k + 1);
	plen = strlen(prefix);
	p->text_len[k] = plen + ulen + strlen(ANSWER_SUFFIX);
	p->text[k] = xcalloc(1, p->text_len[k] + 1);
	memcpy(p->text[k], prefix, plen);
	memcpy(p->text[k] + plen, user, ulen);
	memcpy(p->text[k] + plen + ulen, ANSWER_SUFFIX, strlen(ANSWER_SUFFIX));
}

/*
 * Validates the body and fills in the answer.  Returns NULL after having
 * replied with a 400 itself.  @api: a chat completions request
 * ("messages") or a Responses request ("input": a string or a list of
 * items with a role).
 */
static struct pending *parse_chat(struct evhttp_request *req, enum api api,
				  int *stream)
{
	struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *data, *end = NULL;
	cJSON *root, *messages, *msg, *model, *tools, *opts, *last_user = NULL;
	struct pending *p;
	size_t total = 0, ulen;
	long fake_tokens;
	char *user;
	int idx = 0;

	data = (const char *)evbuffer_pullup(in, -1);
	root = data ? cJSON_ParseWithLengthOpts(data, len, &end, 0) : NULL;
	if (root) { /* reject trailing garbage after the JSON value */
		while (end < data + len &&
		       (*end == ' ' || *end == '\t' || *end == '\r' ||
			*end == '\n'))
			end++;
		if (end != data + len) {
			cJSON_Delete(root);
			root = NULL;
		}
	}
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		send_bad_request(req, "We could not parse the JSON body of "
				      "your request. (HINT: This likely means "
				      "you aren't using your HTTP library "
				      "correctly. The OpenAI API expects a "
				      "JSON payload, but what was sent was not "
				      "valid JSON.)");
		return NULL;
	}
	if (api == API_RESPONSES) {
		/* "input": a string is one user message; a list holds items
		 * (messages have a role; other items, e.g. function call
		 * outputs, do not count). */
		messages = cJSON_GetObjectItemCaseSensitive(root, "input");
		if (cJSON_IsString(messages)) {
			cJSON *m = cJSON_CreateObject();

			cJSON_AddStringToObject(m, "role", "user");
			cJSON_AddStringToObject(m, "content",
						messages->valuestring);
			messages = cJSON_AddArrayToObject(root, "mlt_input");
			cJSON_AddItemToArray(messages, m);
		}
	} else {
		messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
	}
	if (!messages) {
		cJSON_Delete(root);
		send_bad_request(req, api == API_RESPONSES
				 ? "Missing required parameter: 'input'."
				 : "Missing required parameter: 'messages'.");
		return NULL;
	}
	if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
		cJSON_Delete(root);
		send_bad_request(req, api == API_RESPONSES
				 ? "Invalid 'input': expected a string or a "
				   "non-empty array of items."
				 : "Invalid 'messages': expected a "
				   "non-empty array of messages.");
		return NULL;
	}
	cJSON_ArrayForEach(msg, messages) {
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
		char ebuf[96];

		if (api == API_RESPONSES && cJSON_IsObject(msg) && !role) {
			idx++;
			continue;
		}
		if (!cJSON_IsObject(msg) || !cJSON_IsString(role)) {
			snprintf(ebuf, sizeof(ebuf),
				 "Invalid 'messages[%d]': expected an object "
				 "with a string 'role'.", idx);
			cJSON_Delete(root);
			send_bad_request(req, ebuf);
			return NULL;
		}
		total += content_len(
			cJSON_GetObjectItemCaseSensitive(msg, "content"));
		if (strcmp(role->valuestring, "user") == 0)
			last_user = msg;
		idx++;
	}

	p = xcalloc(1, sizeof(*p));
	p->api = api;
	p->nchoices = 1;
	p->disconnect_after = -1;
	p->error_after = -1;
	*stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream"));
	model = cJSON_GetObjectItemCaseSensitive(root, "model");
	p->model = xstrdup(cJSON_IsString(model) && model->valuestring[0]
				   ? model->valuestring : DEFAULT_MODEL);
	opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
	p->include_usage = cJSON_IsTrue(
		cJSON_GetObjectItemCaseSensitive(opts, "include_usage"));
	p->prompt_tokens = (long)(total / 4);
	p->created = (long long)time(NULL);
	snprintf(p->id, sizeof(p->id), "%s%lu",
		 api == API_RESPONSES ? "resp_fake_" : "chatcmpl-fake-",
		 ++g_completion_seq);

	/* last user message text */
	ulen = last_user ? content_len(cJSON_GetObjectItemCaseSensitive(
				   last_user, "content")) : 0;
	user = xcalloc(1, ulen + 1);
	if (last_user)
		content_copy(cJSON_GetObjectItemCaseSensitive(last_user,
							      "content"), user);

	fake_tokens = header_long(hdrs, "X-Fake-Tokens", 0,
				  api == API_RESPONSES ? MAX_RESPONSES_TOKENS
						       : MAX_FAKE_TOKENS, -1);
	tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
	if (fake_tokens >= 0) { /* 0: an empty answer */
		p->body = BODY_REPEAT;
		p->repeat_total = fake_tokens;
	} else if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0 &&
		   strcasestr(user, "weather") != NULL) {
		const cJSON *t0 = cJSON_GetArrayItem(tools, 0);
		const cJSON *t1 = cJSON_GetArrayItem(tools, 1);

		p->body = BODY_TOOLS;
		p->ncalls = MAX_TOOL_CALLS;
		p->calls[0].name = xstrdup(tool_name(t0));
		p->calls[1].name = xstrdup(tool_name(t1 ? t1 : t0));
		p->calls[0].args = tool_args[0];
		p->calls[1].args = tool_args[1];
	} else {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "n");

		p->body = BODY_ECHO;
		p->nchoices = 1;
		if (p->api == API_CHAT && cJSON_IsNumber(n) &&
		    n->valuedouble >= 1 && n->valuedouble <= MAX_CHOICES)
			p->nchoices = (int)n->valuedouble;
		for (idx = 0; idx < p->nchoices; idx++)
			set_echo_answer(p, idx, user, ulen);
	}
	p->completion_tokens = body_token_count(p);
	free(user);
	cJSON_Delete(root);
	return p;
}

static void add_usage(cJSON *obj, const struct pending *p)
{
	cJSON *u = cJSON_AddObjectToObject(obj, "usage");

	cJSON_AddNumberToObject(u, "prompt_tokens", (double)p->prompt_tokens);
	cJSON_AddNumberToObject(u, "completion_tokens",
				(double)p->completion_tokens);
	cJSON_AddNumberToObject(u, "total_tokens",
				(double)(p->prompt_tokens +
					 p->completion_tokens));
}

static const char *finish_reason(const struct pending *p)
{
	return p->body == BODY_TOOLS ? "tool_calls" : "stop";
}

/* Full chat.completion object for a non-streaming request. */
static cJSON *completion_object(const struct pending *p)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *choices, *choice, *message, *calls, *call, *fn;
	char tok[TOKEN_BYTES + 1];
	char *text;
	long i;
	int c, k;

	cJSON_AddStringToObject(root, "id", p->id);
	cJSON_AddStringToObject(root, "object", "chat.completion");
	cJSON_AddNumberToObject(root, "created", (double)p->created);
	cJSON_AddStringToObject(root, "model", p->model);
	choices = cJSON_AddArrayToObject(root, "choices");
	choice = cJSON_CreateObject();
	cJSON_AddItemToArray(choices, choice);
	cJSON_AddNumberToObject(choice, "index", 0);
	message = cJSON_AddObjectToObject(choice, "message");
	cJSON_AddStringToObject(message, "role", "assistant");
	switch (p->body) {
	case BODY_ECHO:
		cJSON_AddStringToObject(message, "content", p->text[0]);
		break;
	case BODY_REPEAT:
		text = xcalloc((size_t)p->repeat_total + 1, TOKEN_BYTES + 1);
		for (i = 0; i < p->repeat_total; i++) {
			repeat_token(i, p->repeat_total, tok);
			memcpy(text + (size_t)i * TOKEN_BYTES, tok,
			       TOKEN_BYTES);
		}
		cJSON_AddStringToObject(message, "content", text);
		free(text);
		break;
	case BODY_TOOLS:
		cJSON_AddNullToObject(message, "content");
		calls = cJSON_AddArrayToObject(message, "tool_calls");
		for (c = 0; c < p->ncalls; c++) {
			char id[24];

			snprintf(id, sizeof(id), "call_%d", c);
			call = cJSON_CreateObject();
			cJSON_AddItemToArray(calls, call);
			cJSON_AddStringToObject(call, "id", id);
			cJSON_AddStringToObject(call, "type", "function");
			fn = cJSON_AddObjectToObject(call, "function");
			cJSON_AddStringToObject(fn, "name", p->calls[c].name);
			cJSON_AddStringToObject(fn, "arguments",
						p->calls[c].args);
		}
		break;
	}
	cJSON_AddNullToObject(message, "refusal");
	cJSON_AddNullToObject(choice, "logprobs");
	cJSON_AddStringToObject(choice, "finish_reason", finish_reason(p));
	for (k = 1; p->body == BODY_ECHO && k < p->nchoices; k++) {
		choice = cJSON_CreateObject();
		cJSON_AddItemToArray(choices, choice);
		cJSON_AddNumberToObject(choice, "index", k);
		message = cJSON_AddObjectToObject(choice, "message");
		cJSON_AddStringToObject(message, "role", "assistant");
		cJSON_AddStringToObject(message, "content", p->text[k]);
		cJSON_AddNullToObject(message, "refusal");
		cJSON_AddNullToObject(choice, "logprobs");
		cJSON_AddStringToObject(choice, "finish_reason", "stop");
	}
	add_usage(root, p);
	cJSON_AddStringToObject(root, "system_fingerprint", FINGERPRINT);
	return root;
}

/* ------------------------------------------------------------------ */
/* Streaming                                                           */
/* ------------------------------------------------------------------ */

static cJSON *chunk_header(const struct pending *p)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", p->id);
	cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
	cJSON_AddNumberToObject(o, "created", (double)p->created);
	cJSON_AddStringToObject(o, "model", p->model);
	cJSON_AddStringToObject(o, "system_fingerprint", FINGERPRINT);
	return o;
}

static void add_event(struct evbuffer *buf, cJSON *obj)
{
	char *s = cJSON_PrintUnformatted(obj);

	if (!s)
		oom();
	evbuffer_add(buf, "data: ", 6);
	evbuffer_add(buf, s, strlen(s));
	evbuffer_add(buf, "\n\n", 2);
	cJSON_free(s);
}

/* Appends a chat.completion.chunk event; takes ownership of delta. */
static void add_delta_event(struct evbuffer *buf, const struct pending *p,
			    int index, cJSON *delta, const char *finish)
{
	cJSON *o = chunk_header(p);
	cJSON *choices = cJSON_AddArrayToObject(o, "choices");
	cJSON *choice = cJSON_CreateObject();

	cJSON_AddItemToArray(choices, choice);
	cJSON_AddNumberToObject(choice, "index", index);
	cJSON_AddItemToObject(choice, "delta", delta);
	cJSON_AddNullToObject(choice, "logprobs");
	if (finish)
		cJSON_AddStringToObject(choice, "finish_reason", finish);
	else
		cJSON_AddNullToObject(choice, "finish_reason");
	if (p->include_usage)
		cJSON_AddNullToObject(o, "usage");
	add_event(buf, o);
	cJSON_Delete(o);
}

static void add_usage_event(struct evbuffer *buf, const struct pending *p)
{
	cJSON *o = chunk_header(p);

	cJSON_AddArrayToObject(o, "choices");
	add_usage(o, p);
	add_event(buf, o);
	cJSON_Delete(o);
}

/* Next content / tool-call delta (of choice *index), or NULL when the body
 * is exhausted.  The choices of an echo answer take turns, one token each. */
static cJSON *next_body_delta(struct pending *p, int *index)
{
	char tok[TOKEN_BYTES * 2 + 1];
	cJSON *delta, *calls, *call, *fn;
	size_t n;
	int k, c = 0;

	*index = 0;
	switch (p->body) {
	case BODY_ECHO:
		for (k = 0; k < p->nchoices; k++) {
			c = (p->rr + k) % p->nchoices;
			if (p->pos[c] < p->text_len[c])
				break;
		}
		if (k == p->nchoices)
			return NULL;
		p->rr = (c + 1) % p->nchoices;
		*index = c;
		n = next_token_len(p->text[c], p->text_len[c], p->pos[c]);
		memcpy(tok, p->text[c] + p->pos[c], n);
		tok[n] = '\0';
		p->pos[c] += n;
		delta = cJSON_CreateObject();
		cJSON_AddStringToObject(delta, "content", tok);
		return delta;
	case BODY_REPEAT:
		if (p->repeat_idx >= p->repeat_total)
			return NULL;
		repeat_token(p->repeat_idx++, p->repeat_total, tok);
		delta = cJSON_CreateObject();
		cJSON_AddStringToObject(delta, "content", tok);
		return delta;
	case BODY_TOOLS:
		if (p->call_idx < p->ncalls && p->call_header_sent &&
		    p->arg_pos >= strlen(p->calls[p->call_idx].args)) {
			p->call_idx++;
			p->call_header_sent = 0;
			p->arg_pos = 0;
		}
		if (p->call_idx >= p->ncalls)
			return NULL;
		delta = cJSON_CreateObject();
		calls = cJSON_AddArrayToObject(delta, "tool_calls");
		call = cJSON_CreateObject();
		cJSON_AddItemToArray(calls, call);
		cJSON_AddNumberToObject(call, "index", p->call_idx);
		if (!p->call_header_sent) {
			char id[24];

			snprintf(id, sizeof(id), "call_%d", p->call_idx);
			cJSON_AddStringToObject(call, "id", id);
			cJSON_AddStringToObject(call, "type", "function");
			fn = cJSON_AddObjectToObject(call, "function");
			cJSON_AddStringToObject(fn, "name",
						p->calls[p->call_idx].name);
			cJSON_AddStringToObject(fn, "arguments", "");
			p->call_header_sent = 1;
		} else {
			const char *a = p->calls[p->call_idx].args;

			n = next_token_len(a, strlen(a), p->arg_pos);
			memcpy(tok, a + p->arg_pos, n);
			tok[n] = '\0';
			p->arg_pos += n;
			fn = cJSON_AddObjectToObject(call, "function");
			cJSON_AddStringToObject(fn, "arguments", tok);
		}
		return delta;
	}
	return NULL;
}

/*
 * Closes the connection abruptly (X-Fake-Disconnect-After).  The request
 * is still attached to the connection, so evhttp frees it.
 */
static void abort_connection(struct pending *p)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(p->req);

	g_stats.injected_disconnects++;
	if (!evcon) { /* cannot happen: on_conn_close would have run */
		struct evhttp_request *req = p->req;
		pending_free(p);
		evhttp_request_free(req);
		return;
	}
	evhttp_connection_set_closecb(evcon, NULL, NULL);
	pending_free(p);
	evhttp_connection_free(evcon);
}

/* evhttp write callback: the connection's output buffer has drained. */
static void on_drained(struct evhttp_connection *evcon, void *arg)
{
	struct pending *p = arg;

	(void)evcon;
	if (evtimer_pending(p->timer, NULL))
		return;
	arm_timer(p, p->aborting ? 0 : p->delay_ms);
}

/*
 * Queues one chunk.  Normally the next tick is scheduled right away; if we
 * are about to abort, or the client is not keeping up, we wait until the
 * output buffer has drained.
 */
static void send_stream_chunk(struct pending *p, struct evbuffer *buf)
{
	struct bufferevent *bev = req_bev(p->req);
	size_t queued = evbuffer_get_length(buf);

	if (bev)
		queued += evbuffer_get_length(bufferevent_get_output(bev));
	if (p->aborting || queued > HIGH_WATER) {
		evhttp_send_reply_chunk_with_cb(p->req, buf, on_drained, p);
	} else {
		evhttp_send_reply_chunk(p->req, buf);
		arm_timer(p, p->delay_ms);
	}
}

static void finish_stream(struct pending *p, struct evbuffer *buf)
{
	struct evhttp_request *req = p->req;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	evhttp_send_reply_chunk(req, buf);
	if (evcon)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
	set_timeouts(req, 1);
	if (!p->errored)
		g_stats.streams_done++;
	pending_free(p);
	evhttp_send_reply_end(req);
}

/* ------------------------------------------------------------------ */
/* Responses API (POST /v1/responses)                                  */
/* ------------------------------------------------------------------ */

/* The whole answer text of an echo or repeat body (malloc'ed). */
static char *answer_text(const struct pending *p)
{
	char tok[TOKEN_BYTES + 1];
	char *text;
	long i;

	if (p->body == BODY_ECHO)
		return xstrdup(p->text[0]);
	text = xcalloc((size_t)p->repeat_total + 1, TOKEN_BYTES + 1);
	for (i = 0; p->body == BODY_REPEAT && i < p->repeat_total; i++) {
		repeat_token(i, p->repeat_total, tok);
		memcpy(text + (size_t)i * TOKEN_BYTES, tok, TOKEN_BYTES);
	}
	return text;
}

static void item_id(const struct pending *p, int k, char *out, size_t size)
{
	const char *seq = p->id + strlen("resp_fake_");

	if (p->body == BODY_TOOLS)
		snprintf(out, size, "fc_fake_%s_%d", seq, k);
	else
		snprintf(out, size, "msg_fake_%s", seq);
}

/* Output item @k: complete (the final text or arguments) or as it starts. */
static cJSON *output_item(const struct pending *p, int k, int complete)
{
	cJSON *item = cJSON_CreateObject(), *content, *part;
	char id[48], cid[24];
	char *text;

	item_id(p, k, id, sizeof(id));
	cJSON_AddStringToObject(item, "id", id);
	if (p->body == BODY_TOOLS) {
		snprintf(cid, sizeof(cid), "call_%d", k);
		cJSON_AddStringToObject(item, "type", "function_call");
		cJSON_AddStringToObject(item, "status",
					complete ? "completed" : "in_progress");
		cJSON_AddStringToObject(item, "call_id", cid);
		cJSON_AddStringToObject(item, "name", p->calls[k].name);
		cJSON_AddStringToObject(item, "arguments",
					complete ? p->calls[k].args : "");
		return item;
	}
	cJSON_AddStringToObject(item, "type", "message");
	cJSON_AddStringToObject(item, "status",
				complete ? "completed" : "in_progress");
	cJSON_AddStringToObject(item, "role", "assistant");
	content = cJSON_AddArrayToObject(item, "content");
	if (complete) {
		part = cJSON_CreateObject();
		text = answer_text(p);
		cJSON_AddStringToObject(part, "type", "output_text");
		cJSON_AddStringToObject(part, "text", text);
		cJSON_AddArrayToObject(part, "annotations");
		cJSON_AddArrayToObject(part, "logprobs");
		cJSON_AddItemToArray(content, part);
		free(text);
	}
	return item;
}

/* A Response object: the final one, or the one of response.created. */
static cJSON *response_object(const struct pending *p, int complete)
{
	cJSON *r = cJSON_CreateObject(), *out, *u, *d;
	int k, nitems = p->body == BODY_TOOLS ? p->ncalls : 1;

	cJSON_AddStringToObject(r, "id", p->id);
	cJSON_AddStringToObject(r, "object", "response");
	cJSON_AddNumberToObject(r, "created_at", (double)p->created);
	cJSON_AddStringToObject(r, "status",
				complete ? "completed" : "in_progress");
	cJSON_AddNullToObject(r, "error");
	cJSON_AddNullToObject(r, "incomplete_details");
	cJSON_AddNullToObject(r, "instructions");
	cJSON_AddNullToObject(r, "max_output_tokens");
	cJSON_AddStringToObject(r, "model", p->model);
	out = cJSON_AddArrayToObject(r, "output");
	for (k = 0; complete && k < nitems; k++)
		cJSON_AddItemToArray(out, output_item(p, k, 1));
	cJSON_AddTrueToObject(r, "parallel_tool_calls");
	cJSON_AddNullToObject(r, "previous_response_id");
	d = cJSON_AddObjectToObject(r, "reasoning");
	cJSON_AddNullToObject(d, "effort");
	cJSON_AddNullToObject(d, "summary");
	cJSON_AddTrueToObject(r, "store");
	cJSON_AddNumberToObject(r, "temperature", 1.0);
	d = cJSON_AddObjectToObject(cJSON_AddObjectToObject(r, "text"),
				    "format");
	cJSON_AddStringToObject(d, "type", "text");
	cJSON_AddStringToObject(r, "tool_choice", "auto");
	cJSON_AddArrayToObject(r, "tools");
	cJSON_AddNumberToObject(r, "top_p", 1.0);
	cJSON_AddStringToObject(r, "truncation", "disabled");
	if (complete) {
		u = cJSON_AddObjectToObject(r, "usage");
		cJSON_AddNumberToObject(u, "input_tokens",
					(double)p->prompt_tokens);
		d = cJSON_AddObjectToObject(u, "input_tokens_details");
		cJSON_AddNumberToObject(d, "cached_tokens", 0);
		cJSON_AddNumberToObject(u, "output_tokens",
					(double)p->completion_tokens);
		d = cJSON_AddObjectToObject(u, "output_tokens_details");
		cJSON_AddNumberToObject(d, "reasoning_tokens", 0);
		cJSON_AddNumberToObject(u, "total_tokens",
					(double)(p->prompt_tokens +
						 p->completion_tokens));
	} else {
		cJSON_AddNullToObject(r, "usage");
	}
	cJSON_AddNullToObject(r, "user");
	cJSON_AddObjectToObject(r, "metadata");
	return r;
}

/* Appends "event: <type>\ndata: <json>\n\n" (takes ownership of ev, whose
 * "type" and "sequence_number" are set here) to the event list. */
static void push_response_event(struct pending *p, const char *type,
				cJSON *ev, size_t *cap)
{
	char *json, *line;
	size_t n;

	cJSON_AddStringToObject(ev, "type", type);
	cJSON_AddNumberToObject(ev, "sequence_number", (double)p->nevents);
	json = cJSON_PrintUnformatted(ev);
	if (!json)
		oom();
	n = strlen(type) + strlen(json) + 20;
	line = xcalloc(1, n);
	snprintf(line, n, "event: %s\ndata: %s\n\n", type, json);
	cJSON_free(json);
	cJSON_Delete(ev);
	if (p->nevents == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		p->events = realloc(p->events, *cap * sizeof(*p->events));
		if (!p->events)
			oom();
	}
	p->events[p->nevents++] = line;
}

static cJSON *item_event(const struct pending *p, int k, int with_content)
{
	cJSON *ev = cJSON_CreateObject();
	char id[48];

	item_id(p, k, id, sizeof(id));
	cJSON_AddStringToObject(ev, "item_id", id);
	cJSON_AddNumberToObject(ev, "output_index", k);
	if (with_content)
		cJSON_AddNumberToObject(ev, "content_index", 0);
	return ev;
}

/* The whole Responses stream, as OpenAI sends it: response.created,
 * response.in_progress, per output item its added / delta... / done
 * events, response.completed (with usage).  No [DONE]. */
static void build_response_events(struct pending *p)
{
	cJSON *ev, *part;
	char tok[TOKEN_BYTES * 2 + 1];
	size_t cap = 0, n, pos, len;
	char *text;
	int k;

	ev = cJSON_CreateObject();
	cJSON_AddItemToObject(ev, "response", response_object(p, 0));
	push_response_event(p, "response.created", ev, &cap);
	ev = cJSON_CreateObject();
	cJSON_AddItemToObject(ev, "response", response_object(p, 0));
	push_response_event(p, "response.in_progress", ev, &cap);
	if (p->body == BODY_TOOLS) {
		for (k = 0; k < p->ncalls; k++) {
			const char *a = p->calls[k].args;

			ev = cJSON_CreateObject();
			cJSON_AddNumberToObject(ev, "output_index", k);
			cJSON_AddItemToObject(ev, "item", output_item(p, k, 0));
			push_response_event(p, "response.output_item.added",
					    ev, &cap);
			for (pos = 0, len = strlen(a); pos < len; pos += n) {
				n = next_token_len(a, len, pos);
				memcpy(tok, a + pos, n);
				tok[n] = '\0';
				ev = item_event(p, k, 0);
				cJSON_AddStringToObject(ev, "delta", tok);
				push_response_event(
					p, "response.function_call_arguments.delta",
					ev, &cap);
			}
			ev = item_event(p, k, 0);
			cJSON_AddStringToObject(ev, "name", p->calls[k].name);
			cJSON_AddStringToObject(ev, "arguments", a);
			push_response_event(
				p, "response.function_call_arguments.done", ev,
				&cap);
			ev = cJSON_CreateObject();
			cJSON_AddNumberToObject(ev, "output_index", k);
			cJSON_AddItemToObject(ev, "item", output_item(p, k, 1));
			push_response_event(p, "response.output_item.done", ev,
					    &cap);
		}
	} else {
		text = answer_text(p);
		ev = cJSON_CreateObject();
		cJSON_AddNumberToObject(ev, "output_index", 0);
		cJSON_AddItemToObject(ev, "item", output_item(p, 0, 0));
		push_response_event(p, "response.output_item.added", ev, &cap);
		ev = item_event(p, 0, 1);
		part = cJSON_AddObjectToObject(ev, "part");
		cJSON_AddStringToObject(part, "type", "output_text");
		cJSON_AddStringToObject(part, "text", "");
		cJSON_AddArrayToObject(part, "annotations");
		push_response_event(p, "response.content_part.added", ev, &cap);
		for (pos = 0, len = strlen(text); pos < len; pos += n) {
			n = next_token_len(text, len, pos);
			memcpy(tok, text + pos, n);
			tok[n] = '\0';
			ev = item_event(p, 0, 1);
			cJSON_AddStringToObject(ev, "delta", tok);
			cJSON_AddArrayToObject(ev, "logprobs");
			push_response_event(p, "response.output_text.delta", ev,
					    &cap);
		}
		ev = item_event(p, 0, 1);
		cJSON_AddStringToObject(ev, "text", text);
		cJSON_AddArrayToObject(ev, "logprobs");
		push_response_event(p, "response.output_text.done", ev, &cap);
		ev = item_event(p, 0, 1);
		part = cJSON_AddObjectToObject(ev, "part");
		cJSON_AddStringToObject(part, "type", "output_text");
		cJSON_AddStringToObject(part, "text", text);
		cJSON_AddArrayToObject(part, "annotations");
		push_response_event(p, "response.content_part.done", ev, &cap);
		ev = cJSON_CreateObject();
		cJSON_AddNumberToObject(ev, "output_index", 0);
		cJSON_AddItemToObject(ev, "item", output_item(p, 0, 1));
		push_response_event(p, "response.output_item.done", ev, &cap);
		free(text);
	}
	ev = cJSON_CreateObject();
	cJSON_AddItemToObject(ev, "response", response_object(p, 1));
	push_response_event(p, "response.completed", ev, &cap);
}

/* The error a stream carries after X-Fake-Error-After events: a chat
 * completions error chunk, or a Responses "error" event. */
static void add_stream_error(struct evbuffer *buf, const struct pending *p)
{
	static const char msg[] = "The server had an error while processing "
				  "your request. (injected by "
				  "X-Fake-Error-After)";
	cJSON *o = p->api == API_RESPONSES ? cJSON_CreateObject()
					    : error_object(msg, "server_error",
							   NULL);
	char *s;

	if (p->api == API_RESPONSES) {
		cJSON_AddStringToObject(o, "type", "error");
		cJSON_AddStringToObject(o, "code", "server_error");
		cJSON_AddStringToObject(o, "message", msg);
		cJSON_AddNullToObject(o, "param");
		cJSON_AddNumberToObject(o, "sequence_number",
					(double)p->event_idx);
		evbuffer_add(buf, "event: error\n", 13);
	}
	s = cJSON_PrintUnformatted(o);
	if (!s)
		oom();
	evbuffer_add_printf(buf, "data: %s\n\n", s);
	cJSON_free(s);
	cJSON_Delete(o);
}

/* Appends the next data event to buf; returns 1 if it was the last one
 * ([DONE], or response.completed). */
static int add_next_event(struct pending *p, struct evbuffer *buf)
{
	cJSON *delta;
	int index;

	if (p->api == API_RESPONSES) {
		const char *e = p->events[p->event_idx++];

		evbuffer_add(buf, e, strlen(e));
		return p->event_idx >= p->nevents;
	}
	switch (p->phase) {
	case PH_ROLE:
		delta = cJSON_CreateObject();
		cJSON_AddStringToObject(delta, "role", "assistant");
		if (p->body == BODY_TOOLS)
			cJSON_AddNullToObject(delta, "content");
		else
			cJSON_AddStringToObject(delta, "content", "");
		add_delta_event(buf, p, p->role_idx, delta, NULL);
		if (++p->role_idx >= p->nchoices)
			p->phase = PH_BODY;
		return 0;
	case PH_BODY:
		delta = next_body_delta(p, &index);
		if (delta) {
			add_delta_event(buf, p, index, delta, NULL);
			return 0;
		}
		p->phase = PH_FINISH;
		/* fall through */
	case PH_FINISH:
		add_delta_event(buf, p, p->finish_idx, cJSON_CreateObject(),
				finish_reason(p));
		if (++p->finish_idx >= p->nchoices)
			p->phase = p->include_usage ? PH_USAGE : PH_DONE;
		return 0;
	case PH_USAGE:
		add_usage_event(buf, p);
		p->phase = PH_DONE;
		return 0;
	case PH_DONE:
		break;
	}
	evbuffer_add(buf, "data: [DONE]\n\n", 14);
	return 1;
}

/* Appends @ev (complete events, lines ending in LF) to the stream's output
 * queue, framed as X-Fake-Framing asks: CRLF line endings, a comment block
 * before and a comment line inside every event. */
static void frame_events(struct pending *p, struct evbuffer *ev)
{
	const char *nl = (p->framing & FR_CRLF) ? "\r\n" : "\n";
	size_t len = evbuffer_get_length(ev), i = 0, j;
	const char *s = (const char *)evbuffer_pullup(ev, -1);
	int start = 1;

	if (!(p->framing & (FR_CRLF | FR_COMMENTS))) {
		evbuffer_add_buffer(p->outq, ev);
		return;
	}
	while (i < len) {
		for (j = i; j < len && s[j] != '\n'; j++)
			;
		if (j == i) { /* blank line: the end of an event */
			if (p->framing & FR_COMMENTS)
				evbuffer_add_printf(p->outq, ": inside%s", nl);
			evbuffer_add_printf(p->outq, "%s", nl);
			start = 1;
		} else {
			if (start && (p->framing & FR_COMMENTS))
				evbuffer_add_printf(p->outq, ": keep-alive%s%s",
						    nl, nl);
			start = 0;
			evbuffer_add(p->outq, s + i, j - i);
			evbuffer_add_printf(p->outq, "%s", nl);
		}
		i = j + 1;
	}
	evbuffer_drain(ev, len);
}

/* A piece of the output queue has been written: write the next one. */
static void on_piece_drained(struct evhttp_connection *evcon, void *arg)
{
	struct pending *p = arg;

	(void)evcon;
	if (!evtimer_pending(p->timer, NULL))
		arm_timer(p, 0);
}

/*
 * Writes the output queue: all of it, or (X-Fake-Write-Bytes, FR_SPLIT)
 * one piece now and the next once it has been written, so that each piece
 * is a write of its own.
 */
static void write_piece(struct pending *p)
{
	struct evbuffer *buf = evbuffer_new();
	size_t len = evbuffer_get_length(p->outq), take = len, i;
	const unsigned char *s;

	if (!buf)
		oom();
	if (p->write_bytes > 0 && take > (size_t)p->write_bytes) {
		take = (size_t)p->write_bytes;
	} else if ((p->framing & FR_SPLIT) && !p->split_done) {
		s = evbuffer_pullup(p->outq, -1);
		for (i = 0; i + 1 < len; i++) {
			if (s[i] >= 0xC0) { /* a multi-byte lead byte */
				take = i + 1;
				p->split_done = 1;
				break;
			}
		}
	}
	evbuffer_remove_buffer(p->outq, buf, take);
	if (evbuffer_get_length(p->outq) > 0)
		evhttp_send_reply_chunk_with_cb(p->req, buf, on_piece_drained,
						p);
	else if (p->outq_last && !p->aborting)
		finish_stream(p, buf);
	else
		send_stream_chunk(p, buf);
	evbuffer_free(buf);
}

static void stream_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	struct evbuffer *buf;
	int last = 0;
	long i;

	(void)fd;
	(void)what;
	if (evbuffer_get_length(p->outq) > 0) { /* pieces left to write */
		write_piece(p);
		return;
	}
	if (p->aborting) {
		abort_connection(p);
		return;
	}
	buf = evbuffer_new();
	if (!buf)
		oom();
	for (i = 0; i < p->batch && !last && !p->aborting; i++) {
		if (p->error_after >= 0 && p->data_sent >= p->error_after) {
			add_stream_error(buf, p);
			g_stats.injected_errors++;
			p->errored = 1;
			last = 1;
		} else {
			last = add_next_event(p, buf);
		}
		frame_events(p, buf);
		p->data_sent++;
		if (p->disconnect_after >= 0 &&
		    p->data_sent >= p->disconnect_after)
			p->aborting = 1;
	}
	evbuffer_free(buf);
	p->outq_last = last;
	p->split_done = 0;
	write_piece(p);
}

/* ------------------------------------------------------------------ */
/* Connection close / delayed replies                                  */
/* ------------------------------------------------------------------ */

/*
 * The connection of a deferred request is going away: the client left
 * (the request has then been detached from the connection and is ours to
 * free), or we are shutting down (evhttp frees the attached request).
 */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
	struct pending *p = arg;
	struct evhttp_request *req = p->req;
	int detached = evhttp_request_get_connection(req) == NULL;

	evhttp_connection_set_closecb(evcon, NULL, NULL);
	if (!g_shutting_down)
		g_stats.client_disconnects++;
	pending_free(p);
	if (detached)
		evhttp_request_free(req);
}

static struct pending *pending_attach(struct pending *p,
				      struct evhttp_request *req,
				      enum pending_kind kind,
				      event_callback_fn cb)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	p->kind = kind;
	p->req = req;
	if (cb) {
		p->timer = evtimer_new(g_base, cb, p);
		if (!p->timer)
			oom();
	}
	p->linked = 1;
	p->next = g_pending;
	if (g_pending)
		g_pending->prev = p;
	g_pending = p;
	evhttp_connection_set_closecb(evcon, on_conn_close, p);
	return p;
}

static void delayed_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	struct evhttp_request *req = p->req;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct evbuffer *reply;

	(void)fd;
	(void)what;
	if (p->disconnect_after >= 0) {
		abort_connection(p);
		return;
	}
	reply = p->reply;
	p->reply = NULL;
	if (evcon)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
	set_timeouts(req, 1);
	pending_free(p);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", "application/json");
	evhttp_send_reply(req, 200, "OK", reply);
	evbuffer_free(reply);
}

static void start_hang(struct evhttp_request *req)
{
	struct pending *p = xcalloc(1, sizeof(*p));

	g_stats.hangs++;
	p->disconnect_after = -1;
	pending_attach(p, req, PK_HANG, NULL);
	watch_for_close(req);
	bufferevent_set_timeouts(req_bev(req), NULL, NULL);
}

static void start_stream(struct pending *p, struct evhttp_request *req)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evbuffer *buf = evbuffer_new();
	char rid[64];

	if (!buf)
		oom();
	g_stats.streams++;
	pending_attach(p, req, PK_STREAM, stream_tick);
	p->outq = evbuffer_new();
	if (!p->outq)
		oom();
	if (p->api == API_RESPONSES)
		build_response_events(p);
	snprintf(rid, sizeof(rid), "req_fake_%s", strrchr(p->id, p->api == API_RESPONSES ? '_' : '-') + 1);
	evhttp_add_header(out, "Content-Type", "text/event-stream");
	evhttp_add_header(out, "Cache-Control", "no-cache");
	evhttp_add_header(out, "X-Request-Id", rid);
	evhttp_send_reply_start(req, 200, "OK");
	/* every event is its own write, sent at once (no Nagle delay) */
	if (req_bev(req)) {
		int one = 1;

		setsockopt(bufferevent_getfd(req_bev(req)), IPPROTO_TCP,
			   TCP_NODELAY, &one, sizeof(one));
	}
	/* no read timeout while streaming: a slow stream is not idle */
	set_timeouts(req, 0);
	if (p->framing & FR_CRLF)
		evbuffer_add(buf, ": keep-alive\r\n\r\n", 16);
	else
		evbuffer_add(buf, ": keep-alive\n\n", 14);
	if (p->disconnect_after == 0)
		p->aborting = 1;
	send_stream_chunk(p, buf);
	evbuffer_free(buf);
}

/* X-Fake-Framing: a comma-separated list of crlf, comments, split-utf8. */
static int header_framing(struct evkeyvalq *hdrs)
{
	const char *v = evhttp_find_header(hdrs, "X-Fake-Framing");
	int f = 0;

	if (!v)
		return 0;
	if (strcasestr(v, "crlf"))
		f |= FR_CRLF;
	if (strcasestr(v, "comments"))
		f |= FR_COMMENTS;
	if (strcasestr(v, "split-utf8"))
		f |= FR_SPLIT;
	return f;
}

/* The object a non-streaming request gets. */
static cJSON *reply_object(const struct pending *p)
{
	return p->api == API_RESPONSES ? response_object(p, 1)
				       : completion_object(p);
}

static void handle_chat(struct evhttp_request *req, enum api api)
{
	struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
	struct pending *p;
	long status, delay, disconnect, batch;
	int stream = 0;

	if (api == API_RESPONSES)
		g_stats.responses++;
	else
		g_stats.chat++;
	if (header_true(hdrs, "X-Fake-Hang")) {
		start_hang(req);
		return;
	}
	status = header_long(hdrs, "X-Fake-Status", 400, 599, 0);
	if (status) {
		send_injected_status(req, (int)status);
		return;
	}
	delay = header_long(hdrs, "X-Fake-Delay-Ms", 0, MAX_DELAY_MS,
			    g_cfg.delay_ms);
	disconnect = header_long(hdrs, "X-Fake-Disconnect-After", 0, LONG_MAX,
				 -1);
	batch = header_long(hdrs, "X-Fake-Batch", 1, MAX_BATCH, 1);
	p = parse_chat(req, api, &stream);
	if (!p)
		return;
	p->delay_ms = delay;
	p->disconnect_after = disconnect;
	p->batch = batch;
	p->error_after = header_long(hdrs, "X-Fake-Error-After", 0, LONG_MAX,
				     -1);
	p->write_bytes = header_long(hdrs, "X-Fake-Write-Bytes", 1, 65536, 0);
	p->framing = header_framing(hdrs);
	if (stream) {
		start_stream(p, req);
		return;
	}

	g_stats.non_stream++;
	if (delay > 0 || disconnect >= 0) {
		cJSON *obj = reply_object(p);
		char *s = cJSON_PrintUnformatted(obj);

		p->reply = evbuffer_new();
		if (!s || !p->reply)
			oom();
		evbuffer_add(p->reply, s, strlen(s));
		evbuffer_add(p->reply, "\n", 1);
		cJSON_free(s);
		cJSON_Delete(obj);
		pending_attach(p, req, PK_DELAYED, delayed_tick);
		watch_for_close(req);
		arm_timer(p, delay);
	} else {
		cJSON *obj = reply_object(p);

		send_json(req, 200, obj);
		cJSON_Delete(obj);
		pending_free(p); /* never attached */
	}
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	default: return "?";
	}
}

/* GET /v1/models: the default model, as OpenAI lists models. */
static void send_models(struct evhttp_request *req)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *data = cJSON_AddArrayToObject(root, "data");
	cJSON *m = cJSON_CreateObject();

	cJSON_AddStringToObject(root, "object", "list");
	cJSON_AddStringToObject(m, "id", DEFAULT_MODEL);
	cJSON_AddStringToObject(m, "object", "model");
	cJSON_AddNumberToObject(m, "created", 1700000000);
	cJSON_AddStringToObject(m, "owned_by", "fake-openai");
	cJSON_AddItemToArray(data, m);
	send_json(req, 200, root);
	cJSON_Delete(root);
}

static void handle_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	char msg[512];

	(void)arg;
	g_stats.requests++;
	if (!path)
		path = "";
	if (strcmp(path, "/health") == 0 &&
	    (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)) {
		struct evbuffer *buf = evbuffer_new();

		if (!buf)
			oom();
		evbuffer_add(buf, "OK", 2);
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Content-Type", "text/plain");
		evhttp_send_reply(req, 200, "OK", buf);
		evbuffer_free(buf);
		return;
	}
	if (strcmp(path, CHAT_PATH) == 0 && cmd == EVHTTP_REQ_POST) {
		handle_chat(req, API_CHAT);
		return;
	}
	if (strcmp(path, RESPONSES_PATH) == 0 && cmd == EVHTTP_REQ_POST) {
		handle_chat(req, API_RESPONSES);
		return;
	}
	if (strcmp(path, MODELS_PATH) == 0 && cmd == EVHTTP_REQ_GET) {
		send_models(req);
		return;
	}
	g_stats.not_found++;
	if (strcmp(path, CHAT_PATH) == 0 || strcmp(path, "/health") == 0 ||
	    strcmp(path, RESPONSES_PATH) == 0 ||
	    strcmp(path, MODELS_PATH) == 0) {
		snprintf(msg, sizeof(msg),
			 "Method not allowed for %.200s.", path);
		send_error(req, 405, msg, "invalid_request_error",
			   "method_not_allowed");
		return;
	}
	snprintf(msg, sizeof(msg),
		 "Unknown request URL: %s %.200s. Please check the URL for "
		 "typos.", method_name(cmd), path);
	send_error(req, 404, msg, "invalid_request_error", "unknown_url");
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopexit(g_base, NULL);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fake-openai [--host ADDR] [--port N] [--delay-ms D] "
		"[--quiet]\n"
		"  --host ADDR    address to bind (default 127.0.0.1)\n"
		"  --port N       port to bind; 0 = ephemeral (default 0)\n"
		"  --delay-ms D   default delay before each streamed event "
		"(default 0)\n"
		"  --quiet        no summary line on exit\n"
		"Prints 'listening on ADDR:PORT' once bound.  See "
		"examples/fake-openai.md.\n");
}

/* Matches --name VALUE or --name=VALUE. */
static int opt_value(int argc, char **argv, int *i, const char *name,
		     const char **val)
{
	size_t n = strlen(name);

	if (strncmp(argv[*i], name, n) != 0)
		return 0;
	if (argv[*i][n] == '=') {
		*val = argv[*i] + n + 1;
		return 1;
	}
	if (argv[*i][n] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		fprintf(stderr, "fake-openai: %s needs a value\n", name);
		exit(2);
	}
	*val = argv[++*i];
	return 1;
}

static long parse_num(const char *name, const char *v, long lo, long hi)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi) {
		fprintf(stderr, "fake-openai: bad value for %s: '%s'\n", name,
			v);
		exit(2);
	}
	return n;
}

static void parse_args(int argc, char **argv)
{
	const char *v;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quiet") == 0 ||
		    strcmp(argv[i], "-q") == 0) {
			g_cfg.quiet = 1;
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (opt_value(argc, argv, &i, "--host", &v)) {
			g_cfg.host = v;
		} else if (opt_value(argc, argv, &i, "--port", &v)) {
			g_cfg.port = parse_num("--port", v, 0, 65535);
		} else if (opt_value(argc, argv, &i, "--delay-ms", &v)) {
			g_cfg.delay_ms = parse_num("--delay-ms", v, 0,
						   MAX_DELAY_MS);
		} else {
			fprintf(stderr, "fake-openai: unknown argument '%s'\n",
				argv[i]);
			usage(stderr);
			exit(2);
		}
	}
}

/* Binds and listens (with a large backlog); returns the fd or -1. */
static evutil_socket_t bind_listener(char *addr_out, size_t addr_len,
				     int *port_out)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char port[16];
	evutil_socket_t fd = -1;
	int one = 1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%ld", g_cfg.port);
	rc = getaddrinfo(g_cfg.host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "fake-openai: %s: %s\n", g_cfg.host,
			gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, LISTEN_BACKLOG) == 0 &&
		    evutil_make_socket_nonblocking(fd) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "fake-openai: cannot listen on %s:%ld: %s\n",
			g_cfg.host, g_cfg.port, strerror(errno));
		return -1;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		close(fd);
		return -1;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		char tmp[INET6_ADDRSTRLEN];

		inet_ntop(AF_INET6, &s6->sin6_addr, tmp, sizeof(tmp));
		snprintf(addr_out, addr_len, "[%s]", tmp);
		*port_out = ntohs(s6->sin6_port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, addr_out, (socklen_t)addr_len);
		*port_out = ntohs(s4->sin_port);
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct evhttp *http;
	struct event *ev_term, *ev_int;
	char addr[INET6_ADDRSTRLEN + 3];
	evutil_socket_t fd;
	int port = 0, leftover = 0;

	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);

	g_base = event_base_new();
	if (!g_base) {
		fprintf(stderr, "fake-openai: event_base_new failed\n");
		return 1;
	}
	http = evhttp_new(g_base);
	if (!http) {
		fprintf(stderr, "fake-openai: evhttp_new failed\n");
		event_base_free(g_base);
		return 1;
	}
	evhttp_set_timeout(http, IDLE_TIMEOUT_S);
	evhttp_set_gencb(http, handle_request, NULL);

	fd = bind_listener(addr, sizeof(addr), &port);
	if (fd < 0 || !evhttp_accept_socket_with_handle(http, fd)) {
		if (fd >= 0)
			close(fd);
		evhttp_free(http);
		event_base_free(g_base);
		return 1;
	}

	ev_term = evsignal_new(g_base, SIGTERM, on_signal, NULL);
	ev_int = evsignal_new(g_base, SIGINT, on_signal, NULL);
	if (!ev_term || !ev_int || evsignal_add(ev_term, NULL) != 0 ||
	    evsignal_add(ev_int, NULL) != 0) {
		fprintf(stderr, "fake-openai: cannot install signal events\n");
		return 1;
	}

	printf("listening on %s:%d\n", addr, port);
	fflush(stdout);

	event_base_dispatch(g_base);

	/* Frees every connection; on_conn_close frees our deferred state. */
	g_shutting_down = 1;
	evhttp_free(http);
	while (g_pending) {
		leftover++;
		pending_free(g_pending);
	}
	event_free(ev_term);
	event_free(ev_int);
	event_base_free(g_base);
	libevent_global_shutdown();

	if (!g_cfg.quiet)
		fprintf(stderr,
			"fake-openai: %lu requests: %lu chat, %lu responses (%lu streamed, "
			"%lu streams completed, %lu non-streaming), %lu client "
			"disconnects, %lu injected disconnects, %lu injected "
			"errors, %lu hangs, %lu bad requests, %lu not found%s\n",
			g_stats.requests, g_stats.chat, g_stats.responses,
			g_stats.streams,
			g_stats.streams_done, g_stats.non_stream,
			g_stats.client_disconnects,
			g_stats.injected_disconnects, g_stats.injected_errors,
			g_stats.hangs, g_stats.bad_requests, g_stats.not_found,
			leftover ? " (leaked state freed)" : "");
	return 0;
}
