/* lib/core/state.c: the library's process-wide state -- its life-cycle
 * state (off, running, stopping) and epoch, the runtime switch, the core's
 * configuration (mlt__g_cfg; the export settings are the export layer's),
 * the counters that are not per thread, and the sink that
 * takes finished traces.  It owns only their storage: mlt_init() and
 * mlt_shutdown() (lib/export/pipeline.c) fill and reset them, the core reads
 * them on its hot paths.  Defined here, in the lowest layer that reads them,
 * so that no core file links to a symbol of the export layer.
 *
 * Layer: core -- includes core/ and util/ only.
 */
#include "core/span-internal.h"

_Atomic int mlt__g_state;
int mlt__enabled_flag;
mlt__config mlt__g_cfg;
_Atomic uint32_t mlt__g_epoch;
_Atomic uint64_t mlt__g_stats[MLT__ST_COUNT];
mlt__trace_sink_fn mlt__g_trace_sink;
mlt__score *mlt__no_spans[1];

size_t mlt__chunk_events(size_t n_chunks) { return MLT_MIN(n_chunks, (size_t)mlt__g_cfg.max_events_per_span); }
