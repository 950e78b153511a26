/* lib/cli/merge.c: placeholder */
#include "cli.h"
int cmd_merge(const char *path) { (void)path; return 2; }
