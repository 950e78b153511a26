/* tests/c10k/c10k-load.c: a closed-loop HTTP/1.1 load generator on libevent
 * for examples/c10k-server: --conns keep-alive connections, each with one
 * request in flight at all times (GET /ask?id=ID&q=..., a fresh ID per
 * request), the chunked reply read and decoded as it arrives.
 *
 *   c10k-load --port P --conns C [--warmup S] [--duration S] [--hangup-every N]
 *             [--header "X-Fake-Delay-Ms: 20"]... [--sigterm PID] [--out FILE]
 *             [--id-base N] [--label NAME]
 *
 * Phases: connections open in batches (ramp), then --warmup seconds, then
 * the measured window of --duration seconds, then the end: with --sigterm,
 * SIGTERM goes to PID while every connection still has a request in flight
 * (the server's shutdown, seen from its clients); without it, no new request
 * starts and the ones in flight finish.
 *
 * Every --hangup-every'th request is abandoned by its client, in turn: right
 * after sending it, after the first bytes of the answer, or 5 ms after
 * sending; the connection is closed (a reset when unread data is left) and a
 * new one opened.
 *
 * --out: one line per request that was sent: "ID OUTCOME STATUS NBYTES HEX",
 * OUTCOME ok (complete reply), hangup (the client left), closed (the server
 * closed the connection before the reply was complete), STATUS the HTTP
 * status (0 if none), HEX the reply body received (decoded from chunks).
 *
 * Prints "name value unit" lines: requests/s over the window, p50/p99/max
 * latency (request written to reply complete, replies completed in the
 * window), the fewest requests in flight seen during the window (sampled
 * every 100 ms), totals per outcome.  Exit status 0 unless set-up failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define MAX_HEADERS 8
#define INBUF 8192
#define MAX_BODY 1024
#define RAMP_BATCH 250
#define RAMP_TICK_MS 5

enum { PLAN_NONE = 0, PLAN_AFTER_SEND = 1, PLAN_AFTER_FIRST_BYTES = 2, PLAN_AFTER_DELAY = 3 };
enum { ST_IDLE = 0, ST_CONNECTING, ST_SENDING, ST_HEADERS, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_CRLF, ST_TRAILER, ST_LENGTH, ST_UNTIL_CLOSE };

typedef struct conn {
  int idx;
  int fd;
  unsigned gen; /* +1 at each close: a callback notices its socket went */
  struct event *rev, *wev, *timer;
  int state;
  int in_flight; /* a request was sent (or is being sent) and is not over */
  char out[768];
  size_t out_len, out_off;
  char in[INBUF];
  size_t in_len;
  long left; /* bytes left in the chunk / body */
  int status, keepalive;
  uint64_t id;
  int plan;
  double t0;
  unsigned char body[MAX_BODY];
  size_t body_len, body_total;
} conn;

typedef struct load {
  struct event_base *base;
  struct sockaddr_in addr;
  int n_conns;
  conn *conns;
  int opened;
  double warmup, duration;
  double t_ramped, t_win0, t_win1, t_first;
  int phase; /* 0 ramp, 1 warmup, 2 window, 3 ending */
  int issuing;
  long hangup_every;
  const char *headers[MAX_HEADERS];
  int n_headers;
  pid_t sigterm_pid;
  FILE *out;
  uint64_t next_id;
  long in_flight, min_in_flight_window;
  /* counts */
  long n_ok, n_err_status, n_hangup, n_closed, n_connect_fail, n_sent;
  long win_ok;
  uint32_t *lat_us;
  size_t n_lat, cap_lat;
  struct event *tick, *ramp;
  const char *label;
} load;

static load L;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void conn_open(conn *c);
static void conn_send_next(conn *c);

/* ---- records ---------------------------------------------------------- */

static void record(conn *c, const char *outcome) {
  if (!L.out) return;
  fprintf(L.out, "%llu %s %d %zu ", (unsigned long long)c->id, outcome, c->status, c->body_total);
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < c->body_len; i++) {
    fputc(hex[c->body[i] >> 4], L.out);
    fputc(hex[c->body[i] & 15], L.out);
  }
  if (c->body_len < c->body_total) fputs("+", L.out); /* more than recorded */
  fputc('\n', L.out);
}

static void request_over(conn *c) {
  if (c->in_flight) {
    c->in_flight = 0;
    L.in_flight--;
  }
  if (c->timer) evtimer_del(c->timer);
}

static void conn_close(conn *c) {
  c->gen++;
  if (c->fd >= 0) {
    event_del(c->rev);
    event_del(c->wev);
    close(c->fd);
    c->fd = -1;
  }
  c->state = ST_IDLE;
  c->in_len = 0;
}

/* The connection is gone (we closed it, or the server did): open another
 * while requests are being issued. */
static void conn_restart(conn *c) {
  conn_close(c);
  if (L.issuing) conn_open(c);
}

static void reply_complete(conn *c) {
  double t = now_s();
  request_over(c);
  if (c->status == 200)
    L.n_ok++;
  else
    L.n_err_status++;
  record(c, "ok");
  if (c->status == 200 && t >= L.t_win0 && t < L.t_win1 && L.phase == 2) {
    L.win_ok++;
    if (L.n_lat == L.cap_lat) {
      L.cap_lat = L.cap_lat ? L.cap_lat * 2 : 65536;
      L.lat_us = realloc(L.lat_us, L.cap_lat * sizeof *L.lat_us);
    }
    L.lat_us[L.n_lat++] = (uint32_t)((t - c->t0) * 1e6);
  }
  c->state = ST_IDLE;
  if (!c->keepalive) {
    conn_restart(c);
    return;
  }
  if (L.issuing) conn_send_next(c);
}

static void hang_up(conn *c) {
  request_over(c);
  L.n_hangup++;
  record(c, "hangup");
  conn_restart(c);
}

static void closed_by_server(conn *c) {
  if (c->in_flight) {
    if (c->state == ST_UNTIL_CLOSE) { /* a close-delimited body ends here */
      reply_complete(c);                /* (not keep-alive: restarts) */
      return;
    }
    request_over(c);
    L.n_closed++;
    record(c, "closed");
  }
  conn_restart(c);
}

/* ---- response parsing --------------------------------------------------- */

static void add_body(conn *c, const char *p, size_t n) {
  size_t room = MAX_BODY - c->body_len;
  memcpy(c->body + c->body_len, p, n < room ? n : room);
  c->body_len += n < room ? n : room;
  c->body_total += n;
}

/* Parse what is buffered.  A complete reply may start the next request or
 * close the connection: the caller checks c->gen. */
static int parse(conn *c) {
  size_t off = 0;
  for (;;) {
    char *p = c->in + off;
    size_t n = c->in_len - off;
    if (c->state == ST_HEADERS) {
      char *end = memmem(p, n, "\r\n\r\n", 4);
      if (!end) break;
      *end = '\0';
      c->status = 0;
      if (strncmp(p, "HTTP/1.", 7) == 0) c->status = atoi(p + 9);
      int chunked = 0, close_hdr = 0;
      long length = -1;
      for (char *line = strstr(p, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;
        if (strncasecmp(h, "Transfer-Encoding:", 18) == 0 && strstr(h, "chunked"))
          chunked = 1;
        else if (strncasecmp(h, "Content-Length:", 15) == 0)
          length = atol(h + 15);
        else if (strncasecmp(h, "Connection:", 11) == 0 && strcasestr(h, "close"))
          close_hdr = 1;
      }
      c->keepalive = !close_hdr && strncmp(p, "HTTP/1.1", 8) == 0;
      off += (size_t)(end - p) + 4;
      if (chunked) {
        c->state = ST_CHUNK_SIZE;
      } else if (length >= 0) {
        c->state = ST_LENGTH;
        c->left = length;
      } else {
        c->state = ST_UNTIL_CLOSE;
        c->keepalive = 0;
      }
      if (c->state == ST_LENGTH && c->left == 0) {
        c->in_len -= off;
        memmove(c->in, c->in + off, c->in_len);
        reply_complete(c);
        return 0;
      }
    } else if (c->state == ST_CHUNK_SIZE) {
      char *end = memmem(p, n, "\r\n", 2);
      if (!end) break;
      c->left = strtol(p, NULL, 16);
      off += (size_t)(end - p) + 2;
      c->state = c->left ? ST_CHUNK_DATA : ST_TRAILER;
    } else if (c->state == ST_CHUNK_DATA) {
      if (!n) break;
      size_t take = n < (size_t)c->left ? n : (size_t)c->left;
      add_body(c, p, take);
      c->left -= (long)take;
      off += take;
      if (c->left == 0) c->state = ST_CHUNK_CRLF;
    } else if (c->state == ST_CHUNK_CRLF) {
      if (n < 2) break;
      off += 2;
      c->state = ST_CHUNK_SIZE;
    } else if (c->state == ST_TRAILER) {
      if (n < 2) break;
      if (p[0] == '\r' && p[1] == '\n') {
        off += 2;
        c->in_len -= off;
        memmove(c->in, c->in + off, c->in_len);
        reply_complete(c);
        return 0;
      }
      char *end = memmem(p, n, "\r\n", 2); /* a trailer field: skip */
      if (!end) break;
      off += (size_t)(end - p) + 2;
    } else if (c->state == ST_LENGTH || c->state == ST_UNTIL_CLOSE) {
      if (!n) break;
      size_t take = c->state == ST_LENGTH && n > (size_t)c->left ? (size_t)c->left : n;
      add_body(c, p, take);
      off += take;
      if (c->state == ST_LENGTH && (c->left -= (long)take) == 0) {
        c->in_len -= off;
        memmove(c->in, c->in + off, c->in_len);
        reply_complete(c);
        return 0;
      }
    } else {
      break; /* idle or sending: nothing expected */
    }
  }
  c->in_len -= off;
  memmove(c->in, c->in + off, c->in_len);
  return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg) {
  conn *c = arg;
  unsigned gen = c->gen;
  (void)what;
  for (;;) {
    if (c->in_len == sizeof c->in) { /* a header block larger than the buffer */
      closed_by_server(c);
      return;
    }
    ssize_t r = recv(fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
    if (r > 0) {
      c->in_len += (size_t)r;
      size_t before = c->body_total;
      uint64_t id = c->id;
      parse(c);
      if (c->gen != gen) return; /* closed (and maybe reopened) meanwhile */
      if (c->plan == PLAN_AFTER_FIRST_BYTES && c->in_flight && c->id == id && c->body_total > 0 && before == 0) {
        hang_up(c);
        return;
      }
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r < 0 && errno == EINTR) continue;
    closed_by_server(c); /* EOF or reset */
    return;
  }
}

static void flush_out(conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (w > 0) {
      c->out_off += (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      event_add(c->wev, NULL);
      return;
    }
    if (w < 0 && errno == EINTR) continue;
    closed_by_server(c);
    return;
  }
  c->state = ST_HEADERS;
  if (c->plan == PLAN_AFTER_SEND) hang_up(c);
}

static void on_hangup_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  conn *c = arg;
  if (c->in_flight) hang_up(c);
}

static void conn_send_next(conn *c) {
  c->id = L.next_id++;
  c->plan = PLAN_NONE;
  if (L.hangup_every > 0 && c->id % (uint64_t)L.hangup_every == 0)
    c->plan = 1 + (int)((c->id / (uint64_t)L.hangup_every) % 3);
  int n = snprintf(c->out, sizeof c->out, "GET /ask?id=%llu&q=c10k+load+%d HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                   (unsigned long long)c->id, c->idx % 97);
  for (int i = 0; i < L.n_headers; i++) n += snprintf(c->out + n, sizeof c->out - (size_t)n, "%s\r\n", L.headers[i]);
  n += snprintf(c->out + n, sizeof c->out - (size_t)n, "\r\n");
  c->out_len = (size_t)n;
  c->out_off = 0;
  c->status = 0;
  c->body_len = c->body_total = 0;
  c->in_flight = 1;
  L.in_flight++;
  L.n_sent++;
  c->t0 = now_s();
  if (L.t_first == 0) L.t_first = c->t0;
  c->state = ST_SENDING;
  if (c->plan == PLAN_AFTER_DELAY) {
    struct timeval tv = {0, 5000};
    evtimer_add(c->timer, &tv);
  }
  flush_out(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg) {
  conn *c = arg;
  (void)what;
  if (c->state == ST_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      L.n_connect_fail++;
      conn_close(c);
      if (L.issuing) conn_open(c); /* (the server's backlog overflowed: retry) */
      return;
    }
    event_add(c->rev, NULL);
    if (L.issuing)
      conn_send_next(c);
    else
      conn_close(c);
    return;
  }
  if (c->state == ST_SENDING) flush_out(c);
}

static void conn_open(conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) {
    fprintf(stderr, "c10k-load: socket: %s\n", strerror(errno));
    L.n_connect_fail++;
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  event_assign(c->rev, L.base, c->fd, EV_READ | EV_PERSIST, on_read, c);
  event_assign(c->wev, L.base, c->fd, EV_WRITE, on_write, c);
  c->state = ST_CONNECTING;
  c->in_len = 0;
  if (connect(c->fd, (struct sockaddr *)&L.addr, sizeof L.addr) != 0 && errno != EINPROGRESS) {
    L.n_connect_fail++;
    close(c->fd);
    c->fd = -1;
    c->state = ST_IDLE;
    return;
  }
  event_add(c->wev, NULL);
}

/* ---- phases ------------------------------------------------------------- */

static void on_ramp(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  for (int i = 0; i < RAMP_BATCH && L.opened < L.n_conns; i++) conn_open(&L.conns[L.opened++]);
  if (L.opened < L.n_conns) {
    struct timeval tv = {0, RAMP_TICK_MS * 1000};
    evtimer_add(L.ramp, &tv);
  }
}

static void end_run(void) {
  L.phase = 3;
  L.issuing = 0;
  if (L.sigterm_pid > 0) kill(L.sigterm_pid, SIGTERM);
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  double t = now_s();
  if (L.phase == 0 && L.opened == L.n_conns && L.in_flight >= (long)L.n_conns * 95 / 100) {
    L.phase = 1;
    L.t_ramped = t;
    L.t_win0 = t + L.warmup;
    L.t_win1 = L.t_win0 + L.duration;
  }
  if (L.phase == 0 && L.t_first && t - L.t_first > 60) {
    fprintf(stderr, "c10k-load: only %ld of %d connections have a request in flight after 60 s\n", L.in_flight,
            L.n_conns);
    L.phase = 1;
    L.t_ramped = t;
    L.t_win0 = t + L.warmup;
    L.t_win1 = L.t_win0 + L.duration;
  }
  if (L.phase == 1 && t >= L.t_win0) {
    L.phase = 2;
    L.min_in_flight_window = L.in_flight;
  }
  if (L.phase == 2) {
    if (L.in_flight < L.min_in_flight_window) L.min_in_flight_window = L.in_flight;
    if (t >= L.t_win1) end_run();
  }
  if (L.phase == 3) {
    int open = 0;
    for (int i = 0; i < L.n_conns; i++) open += L.conns[i].in_flight;
    if (!open || t - L.t_win1 > 120) {
      for (int i = 0; i < L.n_conns; i++) {
        if (L.conns[i].in_flight) closed_by_server(&L.conns[i]); /* gave up waiting */
        conn_close(&L.conns[i]);
      }
      event_base_loopbreak(L.base);
    }
  }
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void usage(void) {
  fprintf(stderr, "usage: c10k-load --port P --conns C [--warmup S] [--duration S] [--hangup-every N] "
                  "[--header H]... [--sigterm PID] [--out FILE] [--id-base N] [--label NAME]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int port = 0;
  L.n_conns = 100;
  L.warmup = 1;
  L.duration = 5;
  L.next_id = 1;
  L.label = "c10k";
  const char *out = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--port"))
      port = atoi(v);
    else if (!strcmp(a, "--conns"))
      L.n_conns = atoi(v);
    else if (!strcmp(a, "--warmup"))
      L.warmup = atof(v);
    else if (!strcmp(a, "--duration"))
      L.duration = atof(v);
    else if (!strcmp(a, "--hangup-every"))
      L.hangup_every = atol(v);
    else if (!strcmp(a, "--header") && L.n_headers < MAX_HEADERS)
      L.headers[L.n_headers++] = v;
    else if (!strcmp(a, "--sigterm"))
      L.sigterm_pid = (pid_t)atol(v);
    else if (!strcmp(a, "--out"))
      out = v;
    else if (!strcmp(a, "--id-base"))
      L.next_id = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--label"))
      L.label = v;
    else
      usage();
    i++;
  }
  if (port <= 0 || L.n_conns < 1 || L.duration <= 0) usage();
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)L.n_conns + 64) {
    fprintf(stderr, "c10k-load: RLIMIT_NOFILE %llu is too low for %d connections (raise `ulimit -n`)\n",
            (unsigned long long)rl.rlim_cur, L.n_conns);
    return 1;
  }
  if (out && !(L.out = fopen(out, "w"))) {
    fprintf(stderr, "c10k-load: %s: %s\n", out, strerror(errno));
    return 1;
  }
  if (L.out) setvbuf(L.out, NULL, _IOFBF, 1 << 20);
  L.addr.sin_family = AF_INET;
  L.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  L.addr.sin_port = htons((uint16_t)port);
  L.base = event_base_new();
  L.conns = calloc((size_t)L.n_conns, sizeof *L.conns);
  if (!L.base || !L.conns) return 1;
  for (int i = 0; i < L.n_conns; i++) {
    conn *c = &L.conns[i];
    c->idx = i;
    c->fd = -1;
    c->rev = event_new(L.base, -1, 0, on_read, c);
    c->wev = event_new(L.base, -1, 0, on_write, c);
    c->timer = evtimer_new(L.base, on_hangup_timer, c);
  }
  L.issuing = 1;
  L.ramp = evtimer_new(L.base, on_ramp, NULL);
  L.tick = event_new(L.base, -1, EV_PERSIST, on_tick, NULL);
  struct timeval tick = {0, 100000}, zero = {0, 0};
  event_add(L.tick, &tick);
  evtimer_add(L.ramp, &zero);
  double t_start = now_s();
  event_base_dispatch(L.base);
  double t_end = now_s();

  qsort(L.lat_us, L.n_lat, sizeof *L.lat_us, cmp_u32);
  double p50 = L.n_lat ? L.lat_us[L.n_lat / 2] / 1e3 : 0;
  double p99 = L.n_lat ? L.lat_us[(size_t)((double)L.n_lat * 0.99)] / 1e3 : 0;
  double pmax = L.n_lat ? L.lat_us[L.n_lat - 1] / 1e3 : 0;
  const char *lb = L.label;
  printf("%s_connections %d conns\n", lb, L.n_conns);
  printf("%s_min_in_flight %ld requests\n", lb, L.min_in_flight_window);
  printf("%s_window %.1f s\n", lb, L.duration);
  printf("%s_throughput %.0f req/s\n", lb, (double)L.win_ok / L.duration);
  printf("%s_latency_p50 %.1f ms\n", lb, p50);
  printf("%s_latency_p99 %.1f ms\n", lb, p99);
  printf("%s_latency_max %.1f ms\n", lb, pmax);
  printf("%s_sent %ld requests\n", lb, L.n_sent);
  printf("%s_ok %ld requests\n", lb, L.n_ok);
  printf("%s_http_errors %ld requests\n", lb, L.n_err_status);
  printf("%s_hangups %ld requests\n", lb, L.n_hangup);
  printf("%s_closed_by_server %ld requests\n", lb, L.n_closed);
  printf("%s_connect_failures %ld\n", lb, L.n_connect_fail);
  printf("%s_run_time %.1f s\n", lb, t_end - t_start);
  fflush(stdout);
  if (L.out) fclose(L.out);
  for (int i = 0; i < L.n_conns; i++) {
    event_free(L.conns[i].rev);
    event_free(L.conns[i].wev);
    event_free(L.conns[i].timer);
  }
  event_free(L.tick);
  event_free(L.ramp);
  event_base_free(L.base);
  free(L.conns);
  free(L.lat_us);
  return 0;
}
