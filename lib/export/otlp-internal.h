/* lib/export/otlp-internal.h: the OTLP protobuf encoder's interface, the one
 * thing of lib/export/otlp.c other files use (the MLflow and OTLP exporters). */
#ifndef MLT_OTLP_INTERNAL_H
#define MLT_OTLP_INTERNAL_H

#include "export/exporter-internal.h"

/* Append one ExportTraceServiceRequest holding every span of |traces| (one
 * resource with |service_name| if not NULL, one scope), with trace-level
 * data on each root span (mlflow.traceTag.*, session.id, user.id). */
void mlt__otlp_encode(mlt__buf *out, mlt__prepared *const *traces, size_t n, const char *service_name);

#endif /* MLT_OTLP_INTERNAL_H */
