/* DESC: one streamed chat completion with curl_easy_perform(), traced as a
 * CHAT_MODEL span under the application's own span, tokens printed as they
 * arrive.
 *
 *   examples/curl-chat URL [QUESTION]
 *
 * URL is an OpenAI-compatible chat completions endpoint, e.g.
 * http://127.0.0.1:PORT/v1/chat/completions of examples/fake-openai.  The
 * API key, if any, comes from OPENAI_API_KEY (sent as a bearer token, never
 * recorded).  Traces go where the environment says (MLTRACE_FILE, default
 * ./traces.jsonl): show them with `mltrace show traces.jsonl`.
 *
 * Build: cc curl-chat.c $(pkg-config --cflags --libs mltrace_curl)
 */
#include <mltrace/curl.h>
#include <mltrace/mltrace.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Relay each token as it arrives (a proxy would write it to its client). */
static int print_delta(mlt_curl_call *call, const char *chunk_json, size_t chunk_len, const char *delta,
                       size_t delta_len, void *user_data) {
  (void)call, (void)chunk_json, (void)chunk_len, (void)user_data;
  fwrite(delta, 1, delta_len, stdout);
  fflush(stdout);
  return 0; /* non-zero would abort the transfer */
}

/* The request: {"model", "stream": true, "stream_options": {"include_usage":
 * true}, "messages": [system, user]}. */
static char *build_request(const char *question) {
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "model", "fake-gpt");
  cJSON_AddBoolToObject(req, "stream", 1);
  cJSON_AddBoolToObject(cJSON_AddObjectToObject(req, "stream_options"), "include_usage", 1);
  cJSON_AddNumberToObject(req, "temperature", 0.2);
  cJSON *msgs = cJSON_AddArrayToObject(req, "messages");
  cJSON *sys = cJSON_CreateObject(), *user = cJSON_CreateObject();
  cJSON_AddStringToObject(sys, "role", "system");
  cJSON_AddStringToObject(sys, "content", "You are terse.");
  cJSON_AddStringToObject(user, "role", "user");
  cJSON_AddStringToObject(user, "content", question);
  cJSON_AddItemToArray(msgs, sys);
  cJSON_AddItemToArray(msgs, user);
  char *txt = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  return txt;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s URL [QUESTION]\n", argv[0]);
    return 2;
  }
  const char *url = argv[1];
  const char *question = argc > 2 ? argv[2] : "What is MLflow?";
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
  mlt_init(NULL); /* environment and defaults; tracing failures never stop the app */

  /* The application's own span; its context is the LLM call's parent. */
  mlt_span root = mlt_span_start("ask", MLT_SPAN_CHAIN);
  mlt_span_set_inputs_fields(root, (mlt_attr[]){MLT_ATTR_STR("question", question)}, 1);
  mlt_context *ctx = mlt_context_capture(root);

  char *body = build_request(question);
  struct curl_slist *headers = NULL;
  const char *key = getenv("OPENAI_API_KEY");
  if (key && *key) {
    char auth[512];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    headers = curl_slist_append(headers, auth);
  }
  CURL *h = curl_easy_init();
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
  mlt_curl_options *opts = NULL;
  mlt_curl_options_new(&opts);
  mlt_curl_options_set_provider(opts, "openai");

  mlt_curl_call *call = NULL;
  int rc = mlt_curl_call_new(h, ctx, opts, body, MLT_NTS, headers, &call);
  curl_slist_free_all(headers); /* copied by the call */
  mlt_curl_options_free(opts);  /* copied too */
  int status = 1;
  if (rc == MLT_OK) {
    mlt_curl_call_set_delta_fn(call, print_delta, NULL);
    CURLcode cc = mlt_curl_perform(call);
    putchar('\n');
    if (mlt_curl_call_status(call) == MLT_OK) {
      size_t len;
      const char *answer = mlt_curl_call_content(call, &len);
      mlt_span_set_outputs_text(root, answer, len);
      const char *usage = mlt_curl_call_usage_json(call);
      fprintf(stderr, "model %s, finish_reason %s, usage %s\n", mlt_curl_call_model(call),
              mlt_curl_call_finish_reason(call), usage ? usage : "(none)");
      status = 0;
    } else {
      fprintf(stderr, "failed: %s (curl %d, HTTP %ld)\n", mlt_curl_call_error(call), (int)cc,
              mlt_curl_call_http_status(call));
      mlt_span_record_error(root, "LLMError", mlt_curl_call_error(call));
    }
    mlt_curl_call_free(call);
  } else {
    fprintf(stderr, "mlt_curl_call_new: %s\n", mlt_strerror(rc));
  }
  curl_easy_cleanup(h);
  cJSON_free(body);
  mlt_context_release(ctx);
  mlt_span_end(root);
  mlt_shutdown(-1);
  curl_global_cleanup();
  return status;
}
