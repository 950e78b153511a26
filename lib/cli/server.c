/* lib/cli/server.c: placeholder */
#include "cli.h"
bool server_list(store *st, const server_options *o) { (void)st; (void)o; return false; }
int server_show(store *st, const server_options *o, const char *id) { (void)st; (void)o; (void)id; return 2; }
