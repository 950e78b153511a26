/* lib/mlflow.c: MLflow server and OTLP exporters (work in progress). */
#include "exporter-internal.h"

int mlt__exporter_mlflow_from_config(mlt_exporter **out);
int mlt__exporter_otlp_from_config(mlt_exporter **out);

int mlt__exporter_mlflow_from_config(mlt_exporter **out) {
  *out = NULL;
  mlt__log(MLT_LOG_ERROR, MLT__LOGK_ENV, "the MLflow server exporter is not available in this build");
  return MLT_ENOTSUP;
}

int mlt__exporter_otlp_from_config(mlt_exporter **out) {
  *out = NULL;
  mlt__log(MLT_LOG_ERROR, MLT__LOGK_ENV, "the OTLP exporter is not available in this build");
  return MLT_ENOTSUP;
}
