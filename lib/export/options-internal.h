/* lib/export/options-internal.h: the options object, and the export layer's
 * settings (mlt__export_config) that mlt_init() resolves from it next to the
 * core's (mlt__config, core/span-internal.h).  Only the pipeline side
 * (pipeline.c, options.c) includes it; exporters get what they need in their
 * mlt__export_env. */
#ifndef MLT_OPTIONS_INTERNAL_H
#define MLT_OPTIONS_INTERNAL_H

#include "core/span-internal.h"

/* Bits of mlt_options.set: which settings were given explicitly. */
enum {
  MLT__O_SERVICE = 1u << 0,
  MLT__O_EXP_ID = 1u << 1,
  MLT__O_EXP_NAME = 1u << 2,
  MLT__O_URI = 1u << 3,
  MLT__O_OTLP = 1u << 4,
  MLT__O_FILE = 1u << 5,
  MLT__O_RATIO = 1u << 6,
  MLT__O_ENABLED = 1u << 7,
  MLT__O_TIMEOUT = 1u << 8,
  MLT__O_QUEUE = 1u << 9,
  MLT__O_DELAY = 1u << 10,
  MLT__O_SHUTDOWN = 1u << 11,
  MLT__O_MAXVAL = 1u << 12,
  MLT__O_MAXSPANS = 1u << 13,
  MLT__O_MAXEVENTS = 1u << 14,
  MLT__O_LOG = 1u << 15,
  MLT__O_QBYTES = 1u << 16,
  MLT__O_SPOOL_DIR = 1u << 17,
  MLT__O_SPOOL_ON = 1u << 18,
  MLT__O_SPOOL_MAX = 1u << 19
};

/* Defaults of the delivery settings (README "Configuration"). */
#define MLT__DEFAULT_QUEUE_MAX_BYTES ((uint64_t)1 << 30) /* or memory / 8 when less */
#define MLT__DEFAULT_SPOOL_MAX_BYTES ((uint64_t)1 << 30)
#define MLT__MAX_TRACE_TIMEOUT_MS (INT64_MAX / 1000000)

struct mlt_options {
  unsigned set;
  int use_env;
  char *service_name, *experiment_id, *experiment_name, *tracking_uri, *otlp_endpoint, *file_path;
  double sampling_ratio;
  int enabled;
  int64_t trace_timeout_ms;
  uint32_t queue_size, schedule_delay_ms, shutdown_timeout_ms, max_value_bytes, max_spans, max_events;
  mlt_log_level log_level;
  mlt_log_fn log_fn;
  void *log_ud;
  mlt_span_processor_fn processor;
  void *processor_ud;
  mlt_exporter *exporters;
  uint64_t queue_max_bytes, spool_max_bytes;
  int spool_enabled;
  char *spool_dir;
};

/* The settings of the export layer (the life cycle, the queue and the export
 * thread, the exporters built from the environment, the span processor).
 * mlt_init() keeps them in lib/export/pipeline.c; strings are owned (freed
 * by mlt__export_config_free()). */
typedef struct mlt__export_config {
  int enabled; /* the runtime switch as configured (mlt_set_enabled() updates it) */
  uint32_t queue_size;
  uint32_t schedule_delay_ms;
  uint32_t shutdown_timeout_ms;
  char *service_name;
  char *experiment_id;
  char *experiment_name;
  char *tracking_uri;
  char *otlp_endpoint;
  char *file_path;
  mlt_span_processor_fn processor;
  void *processor_ud;
  /* network exporters (lib/net/http.c, lib/export/mlflow.c) */
  int64_t mlflow_timeout_ms, otlp_timeout_ms, retry_budget_ms;
  int insecure_tls;
  char *ca_path, *tracking_token, *tracking_user, *tracking_password; /* secrets wiped on free */
  char *otlp_headers, *otlp_compression;
  /* delivery (pipeline.c, spool.c) */
  uint64_t queue_max_bytes; /* bound of the export queue in bytes */
  int spool_enabled;
  char *spool_dir;
  uint64_t spool_max_bytes;
  uint32_t max_requests; /* concurrent export requests (MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS) */
} mlt__export_config;

typedef struct mlt__resolved {
  mlt__config cfg;          /* the core's (mlt__g_cfg) */
  mlt__export_config xcfg;  /* the export layer's */
  mlt_log_level log_level;
  mlt_log_fn log_fn;
  void *log_ud;
} mlt__resolved;

int mlt__options_resolve(const mlt_options *o, mlt__resolved *r);
void mlt__export_config_free(mlt__export_config *c);

#endif /* MLT_OPTIONS_INTERNAL_H */
