/* lib/export/options.c: the options object, and how mlt_init() merges it with the
 * environment (explicit settings win over environment variables, which win
 * over defaults). */
#include "export/exporter-internal.h"
#include "export/options-internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

int mlt_options_new(mlt_options **out) {
  if (!out) return MLT_EINVAL;
  mlt_options *o = calloc(1, sizeof *o);
  if (!o) return MLT_ENOMEM;
  o->use_env = 1;
  *out = o;
  return MLT_OK;
}

void mlt_options_free(mlt_options *o) {
  if (!o) return;
  free(o->service_name);
  free(o->experiment_id);
  free(o->experiment_name);
  free(o->tracking_uri);
  free(o->otlp_endpoint);
  free(o->file_path);
  free(o->spool_dir);
  mlt_exporter *e = o->exporters;
  while (e) {
    mlt_exporter *n = e->next;
    e->ops->destroy(e);
    e = n;
  }
  free(o);
}

static int set_str(mlt_options *o, char **field, unsigned *setmask, unsigned bit, const char *v) {
  if (!o) return MLT_EINVAL;
  char *c = NULL;
  if (v && !(c = strdup(v))) return MLT_ENOMEM;
  free(*field);
  *field = c;
  if (v)
    *setmask |= bit;
  else
    *setmask &= ~bit;
  return MLT_OK;
}

int mlt_options_set_service_name(mlt_options *o, const char *v) {
  return o ? set_str(o, &o->service_name, &o->set, MLT__O_SERVICE, v) : MLT_EINVAL;
}
int mlt_options_set_experiment_id(mlt_options *o, const char *v) {
  return o ? set_str(o, &o->experiment_id, &o->set, MLT__O_EXP_ID, v) : MLT_EINVAL;
}
int mlt_options_set_experiment_name(mlt_options *o, const char *v) {
  return o ? set_str(o, &o->experiment_name, &o->set, MLT__O_EXP_NAME, v) : MLT_EINVAL;
}
int mlt_options_set_tracking_uri(mlt_options *o, const char *v) {
  return o ? set_str(o, &o->tracking_uri, &o->set, MLT__O_URI, v) : MLT_EINVAL;
}
int mlt_options_set_otlp_endpoint(mlt_options *o, const char *v) {
  return o ? set_str(o, &o->otlp_endpoint, &o->set, MLT__O_OTLP, v) : MLT_EINVAL;
}
int mlt_options_set_file_path(mlt_options *o, const char *v) {
  return o ? set_str(o, &o->file_path, &o->set, MLT__O_FILE, v) : MLT_EINVAL;
}

int mlt_options_set_sampling_ratio(mlt_options *o, double ratio) {
  if (!o || !(ratio >= 0.0 && ratio <= 1.0)) return MLT_EINVAL;
  o->sampling_ratio = ratio;
  o->set |= MLT__O_RATIO;
  return MLT_OK;
}
int mlt_options_set_enabled(mlt_options *o, int enabled) {
  if (!o) return MLT_EINVAL;
  o->enabled = enabled ? 1 : 0;
  o->set |= MLT__O_ENABLED;
  return MLT_OK;
}
int mlt_options_set_trace_timeout_ms(mlt_options *o, int64_t ms) {
  /* Kept in nanoseconds: larger values would overflow. */
  if (!o || ms < 0 || ms > MLT__MAX_TRACE_TIMEOUT_MS) return MLT_EINVAL;
  o->trace_timeout_ms = ms;
  o->set |= MLT__O_TIMEOUT;
  return MLT_OK;
}
int mlt_options_set_queue_size(mlt_options *o, uint32_t n) {
  if (!o || n < 16 || n > 1048576) return MLT_EINVAL;
  o->queue_size = n;
  o->set |= MLT__O_QUEUE;
  return MLT_OK;
}
int mlt_options_set_queue_max_bytes(mlt_options *o, uint64_t bytes) {
  if (!o || bytes < ((uint64_t)1 << 20) || bytes > ((uint64_t)1 << 40)) return MLT_EINVAL;
  o->queue_max_bytes = bytes;
  o->set |= MLT__O_QBYTES;
  return MLT_OK;
}
int mlt_options_set_spool_dir(mlt_options *o, const char *dir) {
  return o ? set_str(o, &o->spool_dir, &o->set, MLT__O_SPOOL_DIR, dir) : MLT_EINVAL;
}
int mlt_options_set_spool_enabled(mlt_options *o, int enabled) {
  if (!o) return MLT_EINVAL;
  o->spool_enabled = enabled ? 1 : 0;
  o->set |= MLT__O_SPOOL_ON;
  return MLT_OK;
}
int mlt_options_set_spool_max_bytes(mlt_options *o, uint64_t bytes) {
  if (!o || bytes < ((uint64_t)1 << 20) || bytes > ((uint64_t)1 << 40)) return MLT_EINVAL;
  o->spool_max_bytes = bytes;
  o->set |= MLT__O_SPOOL_MAX;
  return MLT_OK;
}
int mlt_options_set_schedule_delay_ms(mlt_options *o, uint32_t ms) {
  if (!o || ms < 1 || ms > 60000) return MLT_EINVAL;
  o->schedule_delay_ms = ms;
  o->set |= MLT__O_DELAY;
  return MLT_OK;
}
int mlt_options_set_shutdown_timeout_ms(mlt_options *o, uint32_t ms) {
  if (!o || ms > 600000) return MLT_EINVAL;
  o->shutdown_timeout_ms = ms;
  o->set |= MLT__O_SHUTDOWN;
  return MLT_OK;
}
int mlt_options_set_max_value_bytes(mlt_options *o, uint32_t bytes) {
  if (!o || bytes < 64 || bytes > 1073741824u) return MLT_EINVAL;
  o->max_value_bytes = bytes;
  o->set |= MLT__O_MAXVAL;
  return MLT_OK;
}
int mlt_options_set_max_spans_per_trace(mlt_options *o, uint32_t n) {
  if (!o || n < 1 || n > 1000000) return MLT_EINVAL;
  o->max_spans = n;
  o->set |= MLT__O_MAXSPANS;
  return MLT_OK;
}
int mlt_options_set_max_events_per_span(mlt_options *o, uint32_t n) {
  if (!o || n > 1000000) return MLT_EINVAL;
  o->max_events = n;
  o->set |= MLT__O_MAXEVENTS;
  return MLT_OK;
}
int mlt_options_set_log(mlt_options *o, mlt_log_level level, mlt_log_fn fn, void *ud) {
  if (!o || (unsigned)level > MLT_LOG_DEBUG) return MLT_EINVAL;
  o->log_level = level;
  o->log_fn = fn;
  o->log_ud = ud;
  o->set |= MLT__O_LOG;
  return MLT_OK;
}
int mlt_options_set_span_processor(mlt_options *o, mlt_span_processor_fn fn, void *ud) {
  if (!o) return MLT_EINVAL;
  o->processor = fn;
  o->processor_ud = ud;
  return MLT_OK;
}
int mlt_options_add_exporter(mlt_options *o, mlt_exporter *e) {
  if (!e) return MLT_EINVAL;
  if (!o) {
    e->ops->destroy(e);
    return MLT_EINVAL;
  }
  mlt_exporter **pp = &o->exporters;
  while (*pp) pp = &(*pp)->next;
  e->next = NULL;
  *pp = e;
  return MLT_OK;
}
int mlt_options_use_env(mlt_options *o, int use_env) {
  if (!o) return MLT_EINVAL;
  o->use_env = use_env ? 1 : 0;
  return MLT_OK;
}

void mlt_exporter_free(mlt_exporter *e) {
  if (e) e->ops->destroy(e);
}

/* ---- environment ----------------------------------------------------- */

static int env_bool(const char *name, int dflt) {
  const char *v = mlt__getenv(name);
  if (!v) return dflt;
  if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) return 1;
  if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) return 0;
  mlt__log(MLT_LOG_WARN, MLT__LOGK_ENV, "%s='%s' is not a boolean; using %s", name, v, dflt ? "true" : "false");
  return dflt;
}

static double env_double(const char *name, double lo, double hi, double dflt) {
  const char *v = mlt__getenv(name);
  if (!v) return dflt;
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  while (*end == ' ') end++;
  if (errno || *end || !(d >= lo && d <= hi)) {
    mlt__log(MLT_LOG_WARN, MLT__LOGK_ENV, "%s='%s' is not a number in [%g, %g]; using %g", name, v, lo, hi, dflt);
    return dflt;
  }
  return d;
}

/* A number where values past either end of [lo, hi] are clamped to it (with
 * a warning): a "too large" deadline means "as long as allowed", not the
 * default. */
static double env_clamped(const char *name, double lo, double hi, double dflt) {
  const char *v = mlt__getenv(name);
  if (!v) return dflt;
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  while (*end == ' ') end++;
  if ((errno && errno != ERANGE) || *end || end == v || d != d) {
    mlt__log(MLT_LOG_WARN, MLT__LOGK_ENV, "%s='%s' is not a number; using %g", name, v, dflt);
    return dflt;
  }
  if (d < lo || d > hi) {
    double c = d < lo ? lo : hi;
    mlt__log(MLT_LOG_WARN, MLT__LOGK_ENV, "%s='%s' is outside [%g, %g]; using %g", name, v, lo, hi, c);
    return c;
  }
  return d;
}

static char *dup_env(const char *name) { return mlt__strdup(mlt__getenv(name)); }

/* Default byte bound of the export queue: 1 GiB (a 100k-trace burst of
 * GenAI traces holds ~650 MB when the export thread gets no CPU), or an
 * eighth of the memory available to the process when that is less (the
 * cgroup v2 limit, else physical memory).  A cap, not a reservation. */
static uint64_t default_queue_bytes(void) {
  uint64_t mem = 0;
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  if (pages > 0 && psz > 0) mem = (uint64_t)pages * (uint64_t)psz;
  FILE *f = fopen("/sys/fs/cgroup/memory.max", "re");
  if (f) {
    unsigned long long lim;
    if (fscanf(f, "%llu", &lim) == 1 && lim > 0 && (!mem || lim < mem)) mem = lim;
    fclose(f);
  }
  uint64_t b = MLT__DEFAULT_QUEUE_MAX_BYTES;
  if (mem && mem / 8 < b) b = mem / 8;
  if (b < ((uint64_t)16 << 20)) b = (uint64_t)16 << 20;
  return b;
}

int mlt__options_resolve(const mlt_options *o, mlt__resolved *r) {
  memset(r, 0, sizeof *r);
  int env = o ? o->use_env : 1;
  unsigned set = o ? o->set : 0;
  mlt__config *k = &r->cfg;        /* the core's settings */
  mlt__export_config *c = &r->xcfg; /* the export layer's */

  k->sampling_ratio = (set & MLT__O_RATIO) ? o->sampling_ratio
                      : env ? env_double("MLFLOW_TRACE_SAMPLING_RATIO", 0, 1, 1.0)
                            : 1.0;
  c->enabled = (set & MLT__O_ENABLED) ? o->enabled : env ? env_bool("MLFLOW_TRACING_ENABLED", 1) : 1;
  k->trace_timeout_ns = (set & MLT__O_TIMEOUT) ? o->trace_timeout_ms * 1000000 /* bounded by the setter */
                        : env ? (int64_t)(env_double("MLFLOW_TRACE_TIMEOUT_SECONDS", 0, 1e9, 0) * 1e9)
                              : 0;
  /* The queue is bounded in bytes; MLflow's variable, when set, keeps its
   * meaning (a number of entries) as an extra bound. */
  c->queue_size = (set & MLT__O_QUEUE) ? o->queue_size
                  : env && mlt__getenv("MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE")
                      ? (uint32_t)env_clamped("MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE", 16, 1048576, 0)
                      : 0;
  uint64_t qdef = (set & MLT__O_QBYTES) ? 0 : default_queue_bytes();
  c->queue_max_bytes = (set & MLT__O_QBYTES) ? o->queue_max_bytes
                       : env ? (uint64_t)env_clamped("MLTRACE_QUEUE_MAX_BYTES", 1048576.0, 1099511627776.0, (double)qdef)
                             : qdef;
  c->spool_enabled = (set & MLT__O_SPOOL_ON) ? o->spool_enabled : env ? env_bool("MLTRACE_SPOOL", 1) : 1;
  c->spool_max_bytes = (set & MLT__O_SPOOL_MAX) ? o->spool_max_bytes
                       : env ? (uint64_t)env_clamped("MLTRACE_SPOOL_MAX_BYTES", 1048576.0, 1099511627776.0,
                                                     (double)MLT__DEFAULT_SPOOL_MAX_BYTES)
                             : MLT__DEFAULT_SPOOL_MAX_BYTES;
  c->schedule_delay_ms = (set & MLT__O_DELAY) ? o->schedule_delay_ms : 200;
  c->shutdown_timeout_ms = (set & MLT__O_SHUTDOWN) ? o->shutdown_timeout_ms
                           : env ? (uint32_t)env_clamped("MLTRACE_SHUTDOWN_TIMEOUT_MS", 0, 600000, 5000)
                                 : 5000;
  k->max_value_bytes = (set & MLT__O_MAXVAL) ? o->max_value_bytes
                       : env ? (uint32_t)env_double("MLTRACE_MAX_VALUE_BYTES", 64, 1073741824.0, 1048576)
                             : 1048576;
  k->max_spans_per_trace = (set & MLT__O_MAXSPANS) ? o->max_spans : 10000;
  k->max_events_per_span = (set & MLT__O_MAXEVENTS) ? o->max_events : 1000;

#define PICK(bit, field, envname) \
  ((set & (bit)) ? mlt__strdup(o->field) : env ? dup_env(envname) : NULL)
  c->service_name = PICK(MLT__O_SERVICE, service_name, "OTEL_SERVICE_NAME");
  if (!c->service_name) c->service_name = strdup(mlt__program_name());
  c->experiment_id = PICK(MLT__O_EXP_ID, experiment_id, "MLFLOW_EXPERIMENT_ID");
  c->experiment_name = PICK(MLT__O_EXP_NAME, experiment_name, "MLFLOW_EXPERIMENT_NAME");
  c->tracking_uri = PICK(MLT__O_URI, tracking_uri, "MLFLOW_TRACKING_URI");
  c->otlp_endpoint = PICK(MLT__O_OTLP, otlp_endpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  c->file_path = PICK(MLT__O_FILE, file_path, "MLTRACE_FILE");
  c->spool_dir = PICK(MLT__O_SPOOL_DIR, spool_dir, "MLTRACE_SPOOL_DIR");
#undef PICK
  if (!c->otlp_endpoint && env && !(set & MLT__O_OTLP)) {
    const char *base = mlt__getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
    if (base) {
      size_t n = strlen(base);
      while (n && base[n - 1] == '/') n--;
      c->otlp_endpoint = malloc(n + 11);
      if (c->otlp_endpoint) {
        memcpy(c->otlp_endpoint, base, n);
        memcpy(c->otlp_endpoint + n, "/v1/traces", 11);
      }
    }
  }
  /* Network exporters: MLflow's and OpenTelemetry's variables, with their
   * documented defaults (MLflow: 120 s per request, 500 s of retries;
   * OpenTelemetry: 10 s per request). */
  c->mlflow_timeout_ms = 120000;
  c->otlp_timeout_ms = 10000;
  c->retry_budget_ms = 500000;
  c->max_requests = 10;
  if (env) {
    c->max_requests = (uint32_t)env_clamped("MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", 1, 64, 10);
    c->mlflow_timeout_ms = (int64_t)(env_double("MLFLOW_HTTP_REQUEST_TIMEOUT", 0.001, 86400, 120) * 1000);
    const char *ot = mlt__getenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") ? "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
                                                                       : "OTEL_EXPORTER_OTLP_TIMEOUT";
    c->otlp_timeout_ms = (int64_t)env_double(ot, 1, 86400000, 10000);
    c->retry_budget_ms = mlt__getenv("MLTRACE_EXPORT_RETRY_BUDGET_MS")
                             ? (int64_t)env_double("MLTRACE_EXPORT_RETRY_BUDGET_MS", 1, 86400000, 500000)
                             : (int64_t)(env_double("MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT", 0.001, 86400, 500) * 1000);
    c->insecure_tls = env_bool("MLFLOW_TRACKING_INSECURE_TLS", 0);
    c->ca_path = dup_env("MLFLOW_TRACKING_SERVER_CERT_PATH");
    c->tracking_token = dup_env("MLFLOW_TRACKING_TOKEN");
    c->tracking_user = dup_env("MLFLOW_TRACKING_USERNAME");
    c->tracking_password = dup_env("MLFLOW_TRACKING_PASSWORD");
    c->otlp_headers = dup_env(mlt__getenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS") ? "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
                                                                                : "OTEL_EXPORTER_OTLP_HEADERS");
    c->otlp_compression = dup_env(mlt__getenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
                                      ? "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
                                      : "OTEL_EXPORTER_OTLP_COMPRESSION");
  }
  c->processor = o ? o->processor : NULL;
  c->processor_ud = o ? o->processor_ud : NULL;
  if (!c->service_name) return MLT_ENOMEM;

  /* Sampling threshold over 53 random bits. */
  k->sample_threshold = k->sampling_ratio >= 1.0 ? (UINT64_C(1) << 53)
                                                 : (uint64_t)(k->sampling_ratio * 9007199254740992.0);
  r->log_level = (set & MLT__O_LOG) ? o->log_level : mlt__log_level_from_env(MLT_LOG_WARN);
  r->log_fn = (set & MLT__O_LOG) ? o->log_fn : NULL;
  r->log_ud = (set & MLT__O_LOG) ? o->log_ud : NULL;
  return MLT_OK;
}

static void free_secret(char *p) {
  if (p) {
    memset(p, 0, strlen(p));
    free(p);
  }
}

void mlt__export_config_free(mlt__export_config *c) {
  free_secret(c->tracking_token);
  free_secret(c->tracking_user);
  free_secret(c->tracking_password);
  free_secret(c->otlp_headers); /* may carry an API key */
  free(c->ca_path);
  free(c->otlp_compression);
  free(c->service_name);
  free(c->experiment_id);
  free(c->experiment_name);
  free(c->tracking_uri);
  free(c->otlp_endpoint);
  free(c->file_path);
  free(c->spool_dir);
  memset(c, 0, sizeof *c);
}
