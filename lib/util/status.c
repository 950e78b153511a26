/* lib/util/status.c: status codes, versions, span type names.
 *
 * Layer: util -- includes util/ only.
 */
#include "util/common-internal.h"

const char *mlt_strerror(int status) {
  switch (status) {
#define MLT__STATUS_MSG(name, value, msg) \
  case value:                             \
    return msg;
    MLT_STATUS_MAP(MLT__STATUS_MSG)
#undef MLT__STATUS_MSG
    default:
      return "unknown status";
  }
}

const char *mlt_status_name(int status) {
  switch (status) {
#define MLT__STATUS_NAME(name, value, msg) \
  case value:                              \
    return "MLT_" #name;
    MLT_STATUS_MAP(MLT__STATUS_NAME)
#undef MLT__STATUS_NAME
    default:
      return "MLT_UNKNOWN";
  }
}

const char *mlt_version(void) { return MLT_VERSION_STRING; }

unsigned mlt_version_hex(void) { return MLT_VERSION_HEX; }

static const char *const span_type_names[MLT__SPAN_TYPE_COUNT] = {
    "UNKNOWN",  "LLM",      "CHAIN",  "AGENT",    "TOOL",     "CHAT_MODEL", "RETRIEVER", "PARSER",
    "EMBEDDING", "RERANKER", "MEMORY", "WORKFLOW", "TASK",     "GUARDRAIL",  "EVALUATOR"};

const char *mlt_span_type_name(mlt_span_type type) {
  if ((unsigned)type >= MLT__SPAN_TYPE_COUNT) return "UNKNOWN";
  return span_type_names[type];
}
