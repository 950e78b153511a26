/* tests/harness/numlocale.h: a locale whose decimal point is a comma, for
 * tests of number formatting and parsing (printf and strtod follow
 * LC_NUMERIC; JSON wants a dot whatever the application's locale).
 * Header-only. */
#ifndef MLT_TEST_NUMLOCALE_H
#define MLT_TEST_NUMLOCALE_H

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Make LC_NUMERIC de_DE.UTF-8 (decimal point ','): installed, or else
 * compiled with localedef into a temporary directory named by LOCPATH.
 * Returns 1 when the decimal point is a comma now, else 0 (LC_NUMERIC
 * stays "C"); tl_c_locale() goes back. */
static inline int tl_comma_locale(void) {
  if (!setlocale(LC_NUMERIC, "de_DE.UTF-8")) {
    char dir[] = "/tmp/mlt-locale-XXXXXX";
    if (!mkdtemp(dir)) return 0;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
    int rc = system(cmd);
    /* localedef exits 1 on warnings with the locale written */
    setenv("LOCPATH", dir, 1);
    const char *ok = rc != -1 ? setlocale(LC_NUMERIC, "de_DE.UTF-8") : NULL;
    unsetenv("LOCPATH");
    /* the locale is loaded: its files can go */
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) { /* a leftover temporary directory */
    }
    if (!ok) return 0;
  }
  if (strcmp(localeconv()->decimal_point, ",") != 0) {
    setlocale(LC_NUMERIC, "C");
    return 0;
  }
  return 1;
}

static inline void tl_c_locale(void) { setlocale(LC_NUMERIC, "C"); }

#endif
