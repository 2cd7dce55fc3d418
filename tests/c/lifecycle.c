/*
 * The life cycle of a C client against the real vc-ca and vc-server (started by
 * tests/tests/c_abi.rs, which passes their addresses and a token in the environment): many
 * connect/free cycles must leave no descriptor, no socket and no memory behind; vc_client_free
 * delivers no event to the listener while it runs (only `destroy`, exactly once); and
 * vc_library_shutdown stops the library's threads, after which calls fail with
 * VC_RESULT_CLOSED instead of crashing. Built and run by scripts/c-tests.sh under
 * AddressSanitizer, under valgrind and plain (the plain run also holds the heap to a bound).
 *
 * Environment: VC_WORK, VC_CA_URL, VC_CA_ROOT, VC_SERVER, VC_TOKEN_ALICE; VC_CYCLES (default
 * 200) and VC_WARMUP (default 20) connect/free cycles.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vcsdk.h"

static int checks;

static void die(int line, const char *fmt, ...) {
  char detail[1024];
  char code[128];
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "lifecycle.c:%d: ", line);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  vc_last_error_message(detail, sizeof detail);
  vc_last_error_code(code, sizeof code);
  fprintf(stderr, "\n  last error [%s]: %s\n", code, detail);
  exit(1);
}

#define EXPECT(expr, want)                                                                  \
  do {                                                                                      \
    vc_result got_ = (expr);                                                                \
    checks++;                                                                               \
    if (got_ != (want))                                                                     \
      die(__LINE__, "%s gave %d (%s), expected %d (%s)", #expr, (int)got_,                  \
          vc_result_message(got_), (int)(want), vc_result_message(want));                   \
  } while (0)
#define OK(expr) EXPECT(expr, VC_RESULT_OK)
#define TRUE(cond)                                                                          \
  do {                                                                                      \
    checks++;                                                                               \
    if (!(cond)) die(__LINE__, "%s is false", #cond);                                       \
  } while (0)

static void expect_code(const char *want, int line) {
  char code[128];
  vc_last_error_code(code, sizeof code);
  checks++;
  if (strcmp(code, want) != 0) die(line, "error code is '%s', expected '%s'", code, want);
}
#define CODE(want) expect_code(want, __LINE__)

static const char *env(const char *name) {
  const char *v = getenv(name);
  if (v == NULL || *v == 0) {
    fprintf(stderr, "%s is not set (run through tests/tests/c_abi.rs)\n", name);
    exit(2);
  }
  return v;
}

static int env_int(const char *name, int fallback) {
  const char *v = getenv(name);
  return v == NULL || *v == 0 ? fallback : atoi(v);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) exit(2);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
  buf[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* ---- what the process holds ---- */

typedef struct {
  int fds;          /* open descriptors */
  int sockets;      /* of them, sockets */
  int to_server;    /* TCP connections to the server's port, established or in CLOSE-WAIT */
  long rss_kb;      /* VmRSS */
  size_t heap;      /* bytes malloc has handed out and not got back (0 when malloc is replaced) */
  int threads;      /* threads of the process */
} usage;

static int server_port(void) {
  const char *colon = strrchr(env("VC_SERVER"), ':');
  return colon == NULL ? -1 : atoi(colon + 1);
}

/* TCP connections (IPv4 and IPv6) whose remote port is the server's, in state ESTABLISHED (01)
 * or CLOSE-WAIT (08): sockets a process still holds open. Only this program talks to this
 * server while it runs. */
static int connections_to_server(void) {
  const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  int port = server_port(), n = 0;
  for (int t = 0; t < 2; t++) {
    FILE *f = fopen(tables[t], "r");
    if (f == NULL) continue;
    char line[512];
    if (fgets(line, sizeof line, f) == NULL) { /* header */
      fclose(f);
      continue;
    }
    while (fgets(line, sizeof line, f) != NULL) {
      char local[128], remote[128];
      unsigned state;
      if (sscanf(line, "%*s %127s %127s %x", local, remote, &state) != 3) continue;
      const char *colon = strrchr(remote, ':');
      if (colon == NULL) continue;
      int rport = (int)strtol(colon + 1, NULL, 16);
      if (rport == port && (state == 0x01 || state == 0x08)) n++;
    }
    fclose(f);
  }
  return n;
}

static usage measure(void) {
  usage u = {0};
  DIR *d = opendir("/proc/self/fd");
  TRUE(d != NULL);
  int own = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd == own) continue;
    u.fds++;
    char path[64], target[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n > 0) {
      target[n] = 0;
      if (strncmp(target, "socket:", 7) == 0) u.sockets++;
    }
  }
  closedir(d);
  FILE *f = fopen("/proc/self/status", "r");
  TRUE(f != NULL);
  char line[256];
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) u.rss_kb = atol(line + 6);
    if (strncmp(line, "Threads:", 8) == 0) u.threads = atoi(line + 8);
  }
  fclose(f);
  struct mallinfo2 m = mallinfo2();
  u.heap = m.uordblks + m.hblkhd;
  u.to_server = connections_to_server();
  return u;
}

/* ---- a listener that counts what reaches it, and what reaches it during a free ---- */

typedef struct {
  pthread_mutex_t lock;
  int events;
  int disconnected;
  int during_free;  /* events delivered while vc_client_free ran */
  int destroyed;
  int freeing;
} counter;

static void on_event(void *ctx, const vc_event *e) {
  counter *c = ctx;
  pthread_mutex_lock(&c->lock);
  c->events++;
  if (e->kind == VC_EVENT_DISCONNECTED) c->disconnected++;
  if (c->freeing) c->during_free++;
  pthread_mutex_unlock(&c->lock);
}

static void on_destroy(void *ctx) {
  counter *c = ctx;
  pthread_mutex_lock(&c->lock);
  c->destroyed++;
  pthread_mutex_unlock(&c->lock);
}

static void counter_reset(counter *c) {
  pthread_mutex_lock(&c->lock);
  c->events = c->disconnected = c->during_free = c->destroyed = c->freeing = 0;
  pthread_mutex_unlock(&c->lock);
}

/* Connects, does one round trip with the server, and frees: the listener hears nothing while
 * the free runs and its destroy has run once when it returns. */
static void cycle(vc_identity *id, counter *c, int *disconnects_seen) {
  vc_client *client = NULL;
  counter_reset(c);
  vc_client_listener l = {.ctx = c, .on_event = on_event, .destroy = on_destroy};
  OK(vc_client_connect(id, env("VC_SERVER"), NULL, &l, &client));
  char users[256];
  size_t len = 0;
  OK(vc_client_active_users(client, users, sizeof users, &len));
  TRUE(strcmp(users, "alice") == 0);
  pthread_mutex_lock(&c->lock);
  c->freeing = 1;
  pthread_mutex_unlock(&c->lock);
  vc_client_free(client);
  pthread_mutex_lock(&c->lock);
  int during = c->during_free, destroyed = c->destroyed;
  *disconnects_seen += c->disconnected;
  c->freeing = 0;
  pthread_mutex_unlock(&c->lock);
  if (during != 0) die(__LINE__, "%d event(s) reached the listener during vc_client_free", during);
  TRUE(destroyed == 1);
}

static void print_usage(const char *when, usage u) {
  printf("%s: %d descriptors (%d sockets), %d connection(s) to the server, VmRSS %ld kB, "
         "heap %zu bytes, %d threads\n",
         when, u.fds, u.sockets, u.to_server, u.rss_kb, u.heap, u.threads);
}

/* The heap may grow by at most this much per cycle after the warm-up. A client whose
 * connection is kept costs about 38 kB; what does grow (the runtime's and the allocator's
 * caches settling) adds well under 1 kB a cycle over 200 cycles and less the longer it runs. */
#define HEAP_BYTES_PER_CYCLE 1024

static void cycles(vc_identity *id) {
  int warmup = env_int("VC_WARMUP", 20), n = env_int("VC_CYCLES", 200);
  counter c;
  memset(&c, 0, sizeof c);
  pthread_mutex_init(&c.lock, NULL);
  int disconnects = 0;
  usage start = measure();
  print_usage("before any client", start);
  for (int i = 0; i < warmup; i++) cycle(id, &c, &disconnects);
  usage before = measure();
  print_usage("after the warm-up", before);
  for (int i = 0; i < n; i++) cycle(id, &c, &disconnects);
  usage after = measure();
  print_usage("after the cycles", after);
  printf("per cycle over %d cycles: %+.1f descriptors, %+.1f kB VmRSS, %+.1f heap bytes; "
         "%d disconnection event(s) seen outside the frees\n",
         n, (double)(after.fds - before.fds) / n, (double)(after.rss_kb - before.rss_kb) / n,
         ((double)after.heap - (double)before.heap) / n, disconnects);
  if (after.fds != before.fds)
    die(__LINE__, "%d descriptors before the cycles, %d after", before.fds, after.fds);
  if (after.sockets != start.sockets)
    die(__LINE__, "%d sockets before any client, %d after the last free", start.sockets, after.sockets);
  if (after.to_server != 0)
    die(__LINE__, "%d connection(s) to the server left after the last free", after.to_server);
  if (before.heap == 0 || after.heap == 0) {
    printf("heap not measured (malloc is replaced by a sanitizer or valgrind)\n");
  } else if (after.heap > before.heap + (size_t)n * HEAP_BYTES_PER_CYCLE) {
    die(__LINE__, "the heap grew from %zu to %zu bytes over %d cycles", before.heap, after.heap, n);
  }
  pthread_mutex_destroy(&c.lock);
}

/* ---- shutting the library down ---- */

static int destroyed_by_shutdown;
static void count_destroy(void *ctx) {
  (void)ctx;
  __atomic_add_fetch(&destroyed_by_shutdown, 1, __ATOMIC_SEQ_CST);
}

static void shutdown_and_after(vc_identity *id) {
  /* A client still open when the library shuts down: its connection is cut, its listener's
   * destroy runs, and the handle can still be freed. */
  vc_client *open = NULL;
  vc_client_listener l = {.ctx = NULL, .on_event = NULL, .destroy = count_destroy};
  OK(vc_client_connect(id, env("VC_SERVER"), NULL, &l, &open));
  usage before = measure();
  OK(vc_library_shutdown());
  usage after = measure();
  print_usage("after vc_library_shutdown", after);
  if (after.threads != 1)
    die(__LINE__, "%d threads after vc_library_shutdown (%d before); only main should be left", after.threads,
        before.threads);
  TRUE(__atomic_load_n(&destroyed_by_shutdown, __ATOMIC_SEQ_CST) == 1);
  OK(vc_library_shutdown()); /* twice is harmless */

  /* Every call that needs the library's threads now fails with VC_RESULT_CLOSED. */
  char buf[256];
  size_t len = 0;
  EXPECT(vc_client_active_users(open, buf, sizeof buf, &len), VC_RESULT_CLOSED);
  CODE("closed");
  vc_client *again = NULL;
  vc_client_listener l2 = {.ctx = NULL, .on_event = NULL, .destroy = count_destroy};
  EXPECT(vc_client_connect(id, env("VC_SERVER"), NULL, &l2, &again), VC_RESULT_CLOSED);
  TRUE(again == NULL);
  TRUE(__atomic_load_n(&destroyed_by_shutdown, __ATOMIC_SEQ_CST) == 2);
  EXPECT(vc_identity_renew(id), VC_RESULT_CLOSED);
  vc_client_free(open);
  TRUE(__atomic_load_n(&destroyed_by_shutdown, __ATOMIC_SEQ_CST) == 2);

  /* What needs no thread of the library keeps working. */
  TRUE(strcmp(vc_result_message(VC_RESULT_CLOSED), "closed") == 0);
  OK(vc_identity_id(id, buf, sizeof buf, &len));
  TRUE(strcmp(buf, "alice") == 0);
  vc_sframe_context *ctx = NULL;
  OK(vc_sframe_context_new(&ctx));
  vc_sframe_context_free(ctx);
  usage end = measure();
  print_usage("after the last free", end);
  TRUE(end.to_server == 0);
}

int main(void) {
  const char *work = env("VC_WORK");
  char dir[512];
  snprintf(dir, sizeof dir, "%s/alice", work);
  size_t root_len;
  char *root = read_file(env("VC_CA_ROOT"), &root_len);
  vc_identity *id = NULL;
  OK(vc_identity_enroll(dir, env("VC_CA_URL"), (const uint8_t *)root, root_len, env("VC_TOKEN_ALICE"),
                        "alice", &id));
  free(root);
  {
    vc_client *c = NULL;
    OK(vc_client_connect(id, env("VC_SERVER"), NULL, NULL, &c));
    OK(vc_client_register(c, NULL));
    vc_client_free(c);
  }
  cycles(id);
  shutdown_and_after(id);
  vc_identity_free(id);
  printf("all C life-cycle tests passed (%d checks)\n", checks);
  return 0;
}
