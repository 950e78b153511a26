/* tests/roundtrip/gen_previews.c: one trace per pair of JSON texts, for
 * tests/roundtrip/test_previews.py to compare our previews with MLflow's.
 * Usage: gen_previews CASES OUT.jsonl.  CASES holds NUL-terminated texts,
 * inputs then outputs of each case; trace i's root span "p<i>" gets them. */
#include <mltrace/mltrace.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  FILE *f = fopen(argv[1], "rb");
  if (!f) return 1;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  if (!buf) return 1;
  mlt_options *o;
  if (mlt_options_new(&o) != MLT_OK) return 1;
  mlt_options_use_env(o, 0);
  mlt_options_set_file_path(o, argv[2]);
  if (mlt_init(o) != MLT_OK) return 1;
  mlt_options_free(o);
  size_t i = 0, k = 0;
  while (i < n) {
    const char *in = buf + i;
    i += strlen(in) + 1;
    if (i >= n) break;
    const char *out = buf + i;
    i += strlen(out) + 1;
    char name[32];
    snprintf(name, sizeof name, "p%zu", k++);
    MLT_SPAN_SCOPE(s, name, MLT_SPAN_CHAT_MODEL);
    mlt_span_set_inputs_json(s, in);
    mlt_span_set_outputs_json(s, out);
  }
  int rc = mlt_shutdown(30000);
  mlt_stats st;
  mlt_get_stats(&st, sizeof st);
  printf("cases=%zu exported=%llu rc=%d\n", k, (unsigned long long)st.traces_exported, rc);
  free(buf);
  return 0;
}
