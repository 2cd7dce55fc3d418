/*
 * Two C clients against the real vc-ca and vc-server (started by tests/tests/c_abi.rs, which
 * passes their addresses, tokens and a voucher in the environment): enrollment and its refusals,
 * registration, presence, calls declined and accepted, end-to-end encrypted media over the direct
 * path and through the relay, billing, NULL and garbage on every entry point, and the listener
 * contract (destroy exactly once). Built and run by scripts/c-tests.sh under AddressSanitizer and
 * valgrind.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vcsdk.h"

static int checks;

static void die(const char *file, int line, const char *fmt, ...) {
  char detail[1024];
  char code[128];
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  vc_last_error_message(detail, sizeof detail);
  vc_last_error_code(code, sizeof code);
  fprintf(stderr, "\n  last error [%s]: %s\n", code, detail);
  exit(1);
}

/* expr must give `want`. */
#define EXPECT(expr, want)                                                                  \
  do {                                                                                      \
    vc_result got_ = (expr);                                                                \
    checks++;                                                                               \
    if (got_ != (want))                                                                     \
      die(__FILE__, __LINE__, "%s gave %d (%s), expected %d (%s)", #expr, (int)got_,        \
          vc_result_message(got_), (int)(want), vc_result_message(want));                   \
  } while (0)
#define OK(expr) EXPECT(expr, VC_RESULT_OK)
#define TRUE(cond)                                                                          \
  do {                                                                                      \
    checks++;                                                                               \
    if (!(cond)) die(__FILE__, __LINE__, "%s is false", #cond);                             \
  } while (0)

/* The last error code must be `want`. */
static void expect_code(const char *want, int line) {
  char code[128];
  vc_last_error_code(code, sizeof code);
  checks++;
  if (strcmp(code, want) != 0) die(__FILE__, line, "error code is '%s', expected '%s'", code, want);
}
#define CODE(want) expect_code(want, __LINE__)

/* The last error message must contain `part`. */
static void expect_message(const char *part, int line) {
  char text[1024];
  vc_last_error_message(text, sizeof text);
  checks++;
  if (strstr(text, part) == NULL) die(__FILE__, line, "error '%s' does not mention '%s'", text, part);
}
#define MESSAGE(part) expect_message(part, __LINE__)

static const char *env(const char *name) {
  const char *v = getenv(name);
  if (v == NULL || *v == 0) {
    fprintf(stderr, "%s is not set (run through tests/tests/c_abi.rs)\n", name);
    exit(2);
  }
  return v;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
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

static void path_in(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

/* ---- listener: records what happened; the test waits on it with a bounded wait ---- */

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  const char *name;
  int events;
  int destroyed;
  int incoming;
  char incoming_call[VC_ID_CAPACITY];
  char incoming_from[VC_ID_CAPACITY];
  int accepted;
  int declined;
  int ended;
  char end_reason[256];
  int presence_online;
  int presence_offline;
  char presence_user[VC_ID_CAPACITY];
  /* When set, the callback frees this client on the next "offline" presence event. */
  vc_client *free_on_offline;
} listener_state;

static void state_init(listener_state *s, const char *name) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->changed, NULL);
  s->name = name;
}

static void state_free(listener_state *s) {
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->changed);
}

static void copy_id(char *dst, const char *src) {
  snprintf(dst, VC_ID_CAPACITY, "%s", src ? src : "");
}

static void on_event(void *ctx, const vc_event *e) {
  listener_state *s = ctx;
  pthread_mutex_lock(&s->lock);
  s->events++;
  switch (e->kind) {
    case VC_EVENT_INCOMING_CALL:
      s->incoming++;
      copy_id(s->incoming_call, e->call_id);
      copy_id(s->incoming_from, e->user);
      break;
    case VC_EVENT_CALL_STATE:
      if (e->state == VC_CALL_STATE_ACCEPTED) s->accepted++;
      if (e->state == VC_CALL_STATE_DECLINED) s->declined++;
      if (e->state == VC_CALL_STATE_ENDED) {
        s->ended++;
        snprintf(s->end_reason, sizeof s->end_reason, "%s", e->reason ? e->reason : "");
      }
      break;
    case VC_EVENT_PRESENCE:
      if (e->online) s->presence_online++;
      if (!e->online) s->presence_offline++;
      copy_id(s->presence_user, e->user);
      if (!e->online && s->free_on_offline != NULL) {
        vc_client *self = s->free_on_offline;
        s->free_on_offline = NULL;
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
        /* Freeing the client from its own callback: destroy follows when this returns. */
        vc_client_free(self);
        return;
      }
      break;
    default:
      break;
  }
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
}

static void on_destroy(void *ctx) {
  listener_state *s = ctx;
  pthread_mutex_lock(&s->lock);
  s->destroyed++;
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
}

static vc_client_listener listener_for(listener_state *s) {
  vc_client_listener l = {.ctx = s, .on_event = on_event, .destroy = on_destroy};
  return l;
}

/* Waits up to `secs` for *counter to reach `at_least`. */
static void wait_count(listener_state *s, int *counter, int at_least, int secs, const char *what) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += secs;
  pthread_mutex_lock(&s->lock);
  while (*counter < at_least) {
    if (pthread_cond_timedwait(&s->changed, &s->lock, &deadline) == ETIMEDOUT) break;
  }
  int got = *counter;
  pthread_mutex_unlock(&s->lock);
  checks++;
  if (got < at_least) {
    fprintf(stderr, "%s: %s did not happen within %d s (%d of %d)\n", s->name, what, secs, got,
            at_least);
    exit(1);
  }
}

static int destroyed(listener_state *s) {
  pthread_mutex_lock(&s->lock);
  int n = s->destroyed;
  pthread_mutex_unlock(&s->lock);
  return n;
}

/* ---- NULL and garbage on every entry point that needs no network ---- */

static void null_and_garbage(const char *work) {
  char buf[256];
  size_t len = 0;
  vc_identity *id = NULL;
  vc_client *client = NULL;
  vc_media *media = NULL;
  vc_identity_info info;
  vc_account account;
  vc_media_options options;
  vc_media_stats stats;
  bool flag;
  const uint8_t pem[] = "x";

  TRUE(strlen(vc_version()) >= 5);
  TRUE(strcmp(vc_result_message(12345), "unknown result code") == 0);
  TRUE(strcmp(vc_result_message(VC_RESULT_REFUSED), "refused by the CA or the server") == 0);
  TRUE(vc_last_error_message(NULL, 0) == 0);
  TRUE(vc_last_error_code(NULL, 0) == 0);
  /* The error functions return a length without the NUL: that + 1 bytes hold it whole. */
  EXPECT(vc_identity_load(NULL, &id), VC_RESULT_NULL_PARAMETER);
  {
    size_t n = vc_last_error_message(NULL, 0), c = vc_last_error_code(NULL, 0);
    char *text = malloc(n + 1), *code = malloc(c + 1);
    TRUE(text != NULL && code != NULL && n > 0 && c > 0);
    TRUE(vc_last_error_message(text, n + 1) == n && strlen(text) == n);
    TRUE(vc_last_error_code(code, c + 1) == c && strcmp(code, "null_parameter") == 0);
    TRUE(vc_last_error_message(text, n) == n && strlen(text) == n - 1); /* one short: cut */
    free(text);
    free(code);
  }

  /* identities */
  EXPECT(vc_identity_enroll(NULL, "https://127.0.0.1:1", pem, 1, "t", "a", &id), VC_RESULT_NULL_PARAMETER);
  MESSAGE("dir is NULL");
  CODE("null_parameter");
  EXPECT(vc_identity_enroll(work, NULL, pem, 1, "t", "a", &id), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_identity_enroll(work, "https://127.0.0.1:1", NULL, 1, "t", "a", &id), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_identity_enroll(work, "https://127.0.0.1:1", pem, 1, NULL, "a", &id), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_identity_enroll(work, "https://127.0.0.1:1", pem, 1, "t", NULL, &id), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_identity_enroll(work, "https://127.0.0.1:1", pem, 1, "t", "a", NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_identity_enroll(work, "https://127.0.0.1:1", pem, 1, "t", "no spaces allowed", &id),
         VC_RESULT_INVALID_ARGUMENT);
  MESSAGE("client id");
  EXPECT(vc_identity_enroll("\xff\xfe", "https://127.0.0.1:1", pem, 1, "t", "a", &id),
         VC_RESULT_INVALID_ARGUMENT);
  MESSAGE("not UTF-8");
  EXPECT(vc_identity_enroll(work, "https://127.0.0.1:1", pem, 1, "t", "a", &id), VC_RESULT_INVALID_ARGUMENT);
  MESSAGE("no CERTIFICATE block");
  size_t root_len;
  char *root = read_file(env("VC_CA_ROOT"), &root_len);
  path_in(buf, sizeof buf, work, "unused");
  EXPECT(vc_identity_enroll(buf, "ftp://x", (const uint8_t *)root, root_len, "t", "a", &id),
         VC_RESULT_INVALID_ARGUMENT);
  MESSAGE("https://");
  free(root);
  TRUE(id == NULL);
  EXPECT(vc_identity_load(NULL, &id), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_identity_load(work, NULL), VC_RESULT_NULL_PARAMETER);
  path_in(buf, sizeof buf, work, "nobody-here");
  EXPECT(vc_identity_load(buf, &id), VC_RESULT_STORE);
  TRUE(id == NULL);
  vc_identity_free(NULL);
  EXPECT(vc_identity_id(NULL, buf, sizeof buf, &len), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_identity_get_info(NULL, &info), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_identity_renew(NULL), VC_RESULT_NULL_PARAMETER);

  /* clients: the listener is owned from the call on, even when the call fails */
  listener_state s;
  state_init(&s, "garbage");
  vc_client_listener l = listener_for(&s);
  EXPECT(vc_client_connect(NULL, "127.0.0.1:1", NULL, &l, &client), VC_RESULT_NULL_PARAMETER);
  TRUE(destroyed(&s) == 1);
  EXPECT(vc_client_connect(NULL, "127.0.0.1:1", NULL, &l, NULL), VC_RESULT_NULL_PARAMETER);
  TRUE(destroyed(&s) == 2);
  EXPECT(vc_client_connect(NULL, NULL, NULL, NULL, &client), VC_RESULT_NULL_PARAMETER);
  TRUE(destroyed(&s) == 2);
  TRUE(client == NULL);
  vc_client_free(NULL);
  EXPECT(vc_client_is_registered(NULL, &flag), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_register(NULL, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_active_users(NULL, buf, sizeof buf, &len), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_subscribe_presence(NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_call(NULL, "bob", buf, sizeof buf, &len), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_answer(NULL, "x", VC_ANSWER_ACCEPT), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_hangup(NULL, "x"), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_account(NULL, &account), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_redeem_voucher(NULL, "v", &account), VC_RESULT_NULL_PARAMETER);

  /* media */
  EXPECT(vc_media_options_default(NULL), VC_RESULT_NULL_PARAMETER);
  OK(vc_media_options_default(&options));
  TRUE(options.level == 2 && options.direct && options.handshake_timeout_ms > 0);
  EXPECT(vc_media_open(NULL, "x", NULL, &media), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_open(NULL, "x", NULL, NULL), VC_RESULT_NULL_PARAMETER);
  TRUE(media == NULL);
  vc_media_free(NULL);
  EXPECT(vc_media_close(NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_send(NULL, VC_STREAM_AUDIO, pem, 1), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_receive(NULL, 0, (uint8_t *)buf, sizeof buf, &len, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_rekey(NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_get_stats(NULL, &stats), VC_RESULT_NULL_PARAMETER);
  state_free(&s);
}

/* NULL and garbage on a live client. */
static void garbage_on_live_client(vc_client *c) {
  char buf[8];
  size_t len = 0;
  vc_media *media = NULL;
  vc_media_options options;
  EXPECT(vc_client_is_registered(c, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_register(c, "\xff"), VC_RESULT_INVALID_ARGUMENT);
  EXPECT(vc_client_call(c, NULL, buf, sizeof buf, &len), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_call(c, "bob", NULL, 65, &len), VC_RESULT_NULL_PARAMETER);
  /* Checked before the request (which would be refused as not_registered). */
  EXPECT(vc_client_call(c, "bob", buf, sizeof buf, &len), VC_RESULT_BUFFER_TOO_SMALL);
  TRUE(len == VC_ID_CAPACITY);
  EXPECT(vc_client_answer(c, NULL, VC_ANSWER_ACCEPT), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_answer(c, "x", 7), VC_RESULT_INVALID_ARGUMENT);
  MESSAGE("not a vc_answer");
  EXPECT(vc_client_answer(c, "x", 0xffffffffu), VC_RESULT_INVALID_ARGUMENT);
  EXPECT(vc_client_hangup(c, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_account(c, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_redeem_voucher(c, NULL, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_active_users(c, NULL, 10, &len), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_hangup(c, "no-such-call"), VC_RESULT_REFUSED); /* not registered yet */
  CODE("not_registered");
  EXPECT(vc_media_open(c, NULL, NULL, &media), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_open(c, "x", NULL, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_open(c, "no-such-call", NULL, &media), VC_RESULT_INVALID_ARGUMENT);
  MESSAGE("not one this client placed or accepted");
  OK(vc_media_options_default(&options));
  options.level = 9;
  EXPECT(vc_media_open(c, "x", &options, &media), VC_RESULT_INVALID_ARGUMENT);
  MESSAGE("security level 9");
  options.level = 2;
  options.handshake_timeout_ms = 0;
  EXPECT(vc_media_open(c, "x", &options, &media), VC_RESULT_INVALID_ARGUMENT);
  TRUE(media == NULL);
}

/* ---- enrollment and its refusals ---- */

static vc_identity *enroll(const char *work, const char *name, const char *token, const char *id) {
  char dir[512];
  size_t root_len;
  char *root = read_file(env("VC_CA_ROOT"), &root_len);
  vc_identity *identity = NULL;
  path_in(dir, sizeof dir, work, name);
  OK(vc_identity_enroll(dir, env("VC_CA_URL"), (const uint8_t *)root, root_len, token, id, &identity));
  free(root);
  TRUE(identity != NULL);
  return identity;
}

static void enrollment_refusals(const char *work, vc_identity *alice) {
  char dir[512];
  size_t root_len, other_len;
  char *root = read_file(env("VC_CA_ROOT"), &root_len);
  char *other_root = read_file(env("VC_OTHER_CA_ROOT"), &other_len);
  vc_identity *id = NULL;
  const char *url = env("VC_CA_URL");

  /* A token used before. */
  path_in(dir, sizeof dir, work, "again");
  EXPECT(vc_identity_enroll(dir, url, (const uint8_t *)root, root_len, env("VC_TOKEN_ALICE"), "alice", &id),
         VC_RESULT_REFUSED);
  CODE("token_used");
  /* A token nobody issued. */
  EXPECT(vc_identity_enroll(dir, url, (const uint8_t *)root, root_len, "not-a-token", "alice", &id),
         VC_RESULT_REFUSED);
  CODE("token_unknown");
  /* A valid token for another id. */
  EXPECT(vc_identity_enroll(dir, url, (const uint8_t *)root, root_len, env("VC_TOKEN_SPARE"), "eve", &id),
         VC_RESULT_REFUSED);
  CODE("wrong_id");
  /* The CA's certificate checked against a root that is not the CA's. */
  EXPECT(vc_identity_enroll(dir, url, (const uint8_t *)other_root, other_len, env("VC_TOKEN_SPARE"), "dave",
                            &id),
         VC_RESULT_CONNECTION);
  MESSAGE("pinned CA root");
  /* A directory that already holds an identity. */
  path_in(dir, sizeof dir, work, "alice");
  EXPECT(vc_identity_enroll(dir, url, (const uint8_t *)root, root_len, env("VC_TOKEN_SPARE"), "dave", &id),
         VC_RESULT_INVALID_ARGUMENT);
  MESSAGE("already holds a valid certificate");
  TRUE(id == NULL);

  /* The stored identity loads again and says who it is. */
  OK(vc_identity_load(dir, &id));
  char name[VC_ID_CAPACITY];
  size_t len = 0;
  OK(vc_identity_id(id, name, sizeof name, &len));
  TRUE(strcmp(name, "alice") == 0 && len == 5);
  EXPECT(vc_identity_id(id, name, 3, &len), VC_RESULT_BUFFER_TOO_SMALL);
  TRUE(len == 6); /* the capacity needed, NUL included */
  TRUE(name[0] == 'a'); /* untouched: still "alice" from before */
  {
    char *exact = malloc(len);
    TRUE(exact != NULL);
    OK(vc_identity_id(id, exact, len, &len)); /* exactly the size reported suffices */
    TRUE(strcmp(exact, "alice") == 0 && len == 5);
    free(exact);
  }
  EXPECT(vc_identity_id(id, NULL, 0, &len), VC_RESULT_BUFFER_TOO_SMALL); /* asking for the size */
  TRUE(len == 6);
  EXPECT(vc_identity_id(id, NULL, 8, &len), VC_RESULT_NULL_PARAMETER);
  OK(vc_identity_id(id, name, sizeof name, NULL)); /* the length is optional */
  TRUE(strcmp(name, "alice") == 0);
  EXPECT(vc_identity_load("\xff\xfe", &id), VC_RESULT_INVALID_ARGUMENT);
  vc_identity_info before, after;
  OK(vc_identity_get_info(id, &before));
  TRUE(before.not_after > before.not_before && !before.renewal_due);
  EXPECT(vc_identity_get_info(id, NULL), VC_RESULT_NULL_PARAMETER);
  /* Renewal: a new key and certificate, stored. */
  OK(vc_identity_renew(alice));
  OK(vc_identity_get_info(alice, &after));
  TRUE(after.not_after >= before.not_after);
  vc_identity_free(id);
  id = NULL;
  OK(vc_identity_load(dir, &id));
  vc_identity_free(id);
  free(root);
  free(other_root);
}

/* ---- connection refusals ---- */

static void connection_refusals(const char *work, vc_identity *alice) {
  const char *server = env("VC_SERVER");
  vc_client *c = NULL;
  listener_state s;
  state_init(&s, "refused");
  vc_client_listener l = listener_for(&s);

  /* A server name the server's certificate does not carry. */
  EXPECT(vc_client_connect(alice, server, "not-the-server.example", &l, &c), VC_RESULT_CONNECTION);
  TRUE(destroyed(&s) == 1);
  /* Nobody listening. */
  EXPECT(vc_client_connect(alice, "127.0.0.1:1", NULL, &l, &c), VC_RESULT_CONNECTION);
  TRUE(destroyed(&s) == 2);
  EXPECT(vc_client_connect(alice, "no port", NULL, &l, &c), VC_RESULT_INVALID_ARGUMENT);
  TRUE(destroyed(&s) == 3);

  /* An identity from another CA. */
  char dir[512];
  size_t other_len;
  char *other_root = read_file(env("VC_OTHER_CA_ROOT"), &other_len);
  vc_identity *mallory = NULL;
  path_in(dir, sizeof dir, work, "mallory");
  OK(vc_identity_enroll(dir, env("VC_OTHER_CA_URL"), (const uint8_t *)other_root, other_len,
                        env("VC_OTHER_TOKEN"), "mallory", &mallory));
  free(other_root);
  EXPECT(vc_client_connect(mallory, server, NULL, &l, &c), VC_RESULT_CONNECTION);
  TRUE(destroyed(&s) == 4);
  vc_identity_free(mallory);

  /* A revoked identity. */
  vc_identity *carol = NULL;
  OK(vc_identity_load(env("VC_REVOKED_DIR"), &carol));
  vc_result r = vc_client_connect(carol, server, NULL, &l, &c);
  TRUE(r == VC_RESULT_CONNECTION || r == VC_RESULT_PROTOCOL);
  MESSAGE("Revoked");
  TRUE(destroyed(&s) == 5);
  TRUE(c == NULL);
  vc_identity_free(carol);
  state_free(&s);
}

/* ---- media ---- */

typedef struct {
  vc_client *client;
  char call_id[VC_ID_CAPACITY];
  bool direct;
  vc_media *media;
  vc_result result;
  int frames;
} media_job;

/* Opens the media (blocks until the peer did too). */
static void *open_media(void *arg) {
  media_job *job = arg;
  vc_media_options options;
  vc_media_options_default(&options);
  options.direct = job->direct;
  job->result = vc_media_open(job->client, job->call_id, &options, &job->media);
  return NULL;
}

/* Bob's side: each frame is checked and acknowledged on the signalling stream with its size. */
static void *echo_frames(void *arg) {
  media_job *job = arg;
  size_t cap = 70000;
  uint8_t *buf = malloc(cap);
  job->result = VC_RESULT_OK;
  for (int i = 0; i < job->frames; i++) {
    size_t len = 0;
    uint32_t stream = 99;
    vc_result r = vc_media_receive(job->media, 10000, buf, cap, &len, &stream);
    if (r != VC_RESULT_OK) {
      job->result = r;
      break;
    }
    for (size_t k = 0; k < len; k++) {
      if (buf[k] != (uint8_t)(i + k)) {
        fprintf(stderr, "frame %d byte %zu differs\n", i, k);
        job->result = VC_RESULT_MALFORMED;
        free(buf);
        return NULL;
      }
    }
    char ack[64];
    int n = snprintf(ack, sizeof ack, "%d:%zu:%u", i, len, stream);
    r = vc_media_send(job->media, VC_STREAM_SIGNALLING, (const uint8_t *)ack, (size_t)n);
    if (r != VC_RESULT_OK) {
      job->result = r;
      break;
    }
  }
  free(buf);
  return NULL;
}

/* Sends `frames` frames of growing size (one packet up to many), each acknowledged before the
 * next, so nothing is lost to full socket buffers. */
static void send_and_check(vc_media *m, int first, int frames) {
  uint8_t *frame = malloc(60000);
  for (int i = first; i < first + frames; i++) {
    size_t len = i == 0 ? 0 : (size_t)(i * 1237) % 60000;
    uint32_t stream = (uint32_t)(i % 3); /* audio, video, data */
    for (size_t k = 0; k < len; k++) frame[k] = (uint8_t)(i + k);
    OK(vc_media_send(m, stream, frame, len));
    char ack[64];
    size_t got = 0;
    uint32_t ack_stream = 99;
    OK(vc_media_receive(m, 10000, (uint8_t *)ack, sizeof ack - 1, &got, &ack_stream));
    ack[got] = 0;
    char want[64];
    snprintf(want, sizeof want, "%d:%zu:%u", i, len, stream);
    TRUE(ack_stream == VC_STREAM_SIGNALLING);
    if (strcmp(ack, want) != 0) die(__FILE__, __LINE__, "ack '%s', expected '%s'", ack, want);
  }
  free(frame);
}

/* One accepted call from alice to bob with media; returns the media path seen. */
static vc_media_path media_call(vc_client *alice, listener_state *as, vc_client *bob, listener_state *bs,
                                bool direct, int frames) {
  char call_id[VC_ID_CAPACITY];
  size_t len = 0;
  int accepted = as->accepted, incoming = bs->incoming, a_ended = as->ended, b_ended = bs->ended;
  OK(vc_client_call(alice, "bob", call_id, sizeof call_id, &len));
  TRUE(len == strlen(call_id) && len > 0);
  wait_count(bs, &bs->incoming, incoming + 1, 30, "the incoming call");
  TRUE(strcmp(bs->incoming_call, call_id) == 0);
  TRUE(strcmp(bs->incoming_from, "alice") == 0);
  OK(vc_client_answer(bob, call_id, VC_ANSWER_ACCEPT));
  wait_count(as, &as->accepted, accepted + 1, 30, "the accepted state");

  media_job b = {.client = bob, .direct = direct, .frames = frames};
  media_job a = {.client = alice, .direct = direct};
  snprintf(b.call_id, sizeof b.call_id, "%s", call_id);
  snprintf(a.call_id, sizeof a.call_id, "%s", call_id);
  pthread_t bt;
  pthread_create(&bt, NULL, open_media, &b);
  open_media(&a);
  pthread_join(bt, NULL);
  OK(a.result);
  OK(b.result);

  /* A frame larger than the buffer is kept for the next receive. */
  uint8_t big[3000];
  memset(big, 0x5a, sizeof big);
  OK(vc_media_send(a.media, VC_STREAM_VIDEO, big, sizeof big));
  uint8_t small[100];
  size_t got = 0;
  uint32_t stream = 99;
  EXPECT(vc_media_receive(b.media, 10000, small, sizeof small, &got, &stream), VC_RESULT_BUFFER_TOO_SMALL);
  TRUE(got == sizeof big);
  uint8_t room[4000];
  OK(vc_media_receive(b.media, 0, room, sizeof room, &got, &stream));
  TRUE(got == sizeof big && stream == VC_STREAM_VIDEO && room[0] == 0x5a && room[2999] == 0x5a);
  /* Nothing waiting. */
  EXPECT(vc_media_receive(b.media, 0, room, sizeof room, &got, NULL), VC_RESULT_TIMEOUT);
  EXPECT(vc_media_receive(b.media, 50, room, sizeof room, &got, NULL), VC_RESULT_TIMEOUT);
  EXPECT(vc_media_send(a.media, 4, big, 1), VC_RESULT_INVALID_ARGUMENT);
  EXPECT(vc_media_send(a.media, VC_STREAM_AUDIO, NULL, 5), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_receive(b.media, 0, room, sizeof room, NULL, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_receive(b.media, 0, NULL, 10, &got, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_media_get_stats(a.media, NULL), VC_RESULT_NULL_PARAMETER);
  /* A frame over the largest the session takes (4 MiB by default) is refused, not cut. */
  size_t huge_len = (4u << 20) + 1;
  uint8_t *huge = calloc(huge_len, 1);
  TRUE(huge != NULL);
  EXPECT(vc_media_send(a.media, VC_STREAM_DATA, huge, huge_len), VC_RESULT_INVALID_ARGUMENT);
  MESSAGE("exceeds the largest frame");
  free(huge);

  /* Frames of every size, checked byte for byte and acknowledged; then a new key epoch. */
  pthread_create(&bt, NULL, echo_frames, &b);
  send_and_check(a.media, 0, frames / 2);
  OK(vc_media_rekey(a.media));
  send_and_check(a.media, frames / 2, frames - frames / 2);
  pthread_join(bt, NULL);
  OK(b.result);

  vc_media_stats sa, sb;
  OK(vc_media_get_stats(a.media, &sa));
  OK(vc_media_get_stats(b.media, &sb));
  TRUE(sa.path == sb.path);
  TRUE(sa.frames_sent == (uint64_t)frames + 1);
  TRUE(sb.frames_received == (uint64_t)frames + 1);
  TRUE(sa.frames_received == (uint64_t)frames);
  TRUE(sa.send_epoch >= 1 && sb.receive_epoch >= 1);
  TRUE(sb.auth_failures == 0 && sb.replays_refused == 0 && sb.unknown_key == 0 && sb.malformed == 0);
  printf("%s call: %d frames each way, %llu bytes sent in %llu packets; path %s\n",
         direct ? "direct" : "relayed", frames, (unsigned long long)sa.bytes_sent,
         (unsigned long long)sa.packets_sent, sa.path == VC_MEDIA_PATH_DIRECT ? "direct" : "relay");

  /* Alice hangs up: both see the end; the media closes. */
  OK(vc_client_hangup(alice, call_id));
  EXPECT(vc_client_hangup(alice, "no-such-call"), VC_RESULT_REFUSED);
  CODE("unknown_call");
  wait_count(as, &as->ended, a_ended + 1, 30, "the end of the call (alice)");
  wait_count(bs, &bs->ended, b_ended + 1, 30, "the end of the call (bob)");
  OK(vc_media_close(a.media));
  EXPECT(vc_media_send(a.media, VC_STREAM_AUDIO, big, 10), VC_RESULT_CLOSED);
  /* A closed session's statistics say so, and keep their final counts. */
  vc_media_stats after;
  OK(vc_media_get_stats(a.media, &after));
  TRUE(after.path == VC_MEDIA_PATH_CLOSED);
  TRUE(after.frames_sent == sa.frames_sent && after.frames_received == sa.frames_received);
  vc_result closed = VC_RESULT_OK;
  for (int i = 0; i < 100 && closed != VC_RESULT_CLOSED; i++)
    closed = vc_media_receive(b.media, 100, room, sizeof room, &got, NULL);
  TRUE(closed == VC_RESULT_CLOSED);
  OK(vc_media_get_stats(b.media, &after)); /* closed by the end of the call */
  TRUE(after.path == VC_MEDIA_PATH_CLOSED);
  TRUE(after.frames_received == sb.frames_received);
  vc_media_path path = sa.path;
  vc_media_free(a.media);
  vc_media_free(b.media);
  return path;
}

int main(void) {
  const char *work = env("VC_WORK");
  const char *server = env("VC_SERVER");
  null_and_garbage(work);

  vc_identity *alice_id = enroll(work, "alice", env("VC_TOKEN_ALICE"), "alice");
  vc_identity *bob_id = enroll(work, "bob", env("VC_TOKEN_BOB"), "bob");
  enrollment_refusals(work, alice_id);
  connection_refusals(work, alice_id);

  listener_state as, bs;
  state_init(&as, "alice");
  state_init(&bs, "bob");
  vc_client_listener al = listener_for(&as), bl = listener_for(&bs);
  vc_client *alice = NULL, *bob = NULL;
  OK(vc_client_connect(alice_id, server, NULL, &al, &alice));
  OK(vc_client_connect(bob_id, server, NULL, &bl, &bob));
  /* The identity handles may go; the clients keep what they need. */
  vc_identity_free(alice_id);
  vc_identity_free(bob_id);
  garbage_on_live_client(alice);

  /* Registration. */
  bool registered = true;
  OK(vc_client_is_registered(alice, &registered));
  TRUE(!registered);
  char call_id[VC_ID_CAPACITY];
  size_t len = 0;
  EXPECT(vc_client_call(alice, "bob", call_id, sizeof call_id, &len), VC_RESULT_REFUSED);
  CODE("not_registered");
  EXPECT(vc_client_register(alice, "no-such-terms"), VC_RESULT_REFUSED);
  CODE("terms_mismatch");
  OK(vc_client_register(alice, NULL));
  OK(vc_client_is_registered(alice, &registered));
  TRUE(registered);
  OK(vc_client_subscribe_presence(alice));
  OK(vc_client_register(bob, NULL));
  wait_count(&as, &as.presence_online, 1, 30, "bob's presence");
  TRUE(strcmp(as.presence_user, "bob") == 0);

  /* Who is online. */
  char users[256];
  OK(vc_client_active_users(alice, users, sizeof users, &len));
  TRUE(strcmp(users, "alice\nbob") == 0 && len == 9);
  EXPECT(vc_client_active_users(alice, users, 4, &len), VC_RESULT_BUFFER_TOO_SMALL);
  TRUE(len == 10);
  EXPECT(vc_client_active_users(alice, users, 9, &len), VC_RESULT_BUFFER_TOO_SMALL);
  TRUE(len == 10);
  {
    char *exact = malloc(len);
    TRUE(exact != NULL);
    OK(vc_client_active_users(alice, exact, len, &len));
    TRUE(strcmp(exact, "alice\nbob") == 0 && len == 9);
    free(exact);
  }

  /* Calls that cannot be placed. */
  EXPECT(vc_client_call(alice, "bob", call_id, sizeof call_id, &len), VC_RESULT_REFUSED);
  CODE("insufficient_credit");
  EXPECT(vc_client_answer(bob, "0123456789abcdef0123456789abcdef", VC_ANSWER_ACCEPT), VC_RESULT_REFUSED);
  CODE("not_offered");

  /* Credit. */
  vc_account account;
  OK(vc_client_account(alice, &account));
  TRUE(account.balance == 0 && account.prepaid && strcmp(account.currency, "EUR") == 0);
  TRUE(!account.has_last_call);
  OK(vc_client_redeem_voucher(alice, env("VC_VOUCHER"), &account));
  TRUE(account.balance == 500);
  EXPECT(vc_client_redeem_voucher(alice, env("VC_VOUCHER"), &account), VC_RESULT_REFUSED);
  CODE("voucher_redeemed");
  EXPECT(vc_client_redeem_voucher(alice, "no-such-voucher", NULL), VC_RESULT_REFUSED);
  CODE("voucher_unknown");
  EXPECT(vc_client_call(alice, "nobody", call_id, sizeof call_id, &len), VC_RESULT_REFUSED);
  CODE("unknown_user");
  EXPECT(vc_client_call(alice, "alice", call_id, sizeof call_id, &len), VC_RESULT_REFUSED);
  CODE("self_call");

  /* A call-id buffer below VC_ID_CAPACITY is refused before anything is sent: no call is
   * placed (bob hears nothing, and alice is not left in a call: the next call goes through). */
  char small_id[33];
  len = 0;
  EXPECT(vc_client_call(alice, "bob", small_id, sizeof small_id, &len), VC_RESULT_BUFFER_TOO_SMALL);
  TRUE(len == VC_ID_CAPACITY);
  MESSAGE("no call was placed");
  EXPECT(vc_client_call(alice, "bob", small_id, 0, NULL), VC_RESULT_BUFFER_TOO_SMALL);

  /* A declined call. */
  int incoming = bs.incoming;
  OK(vc_client_call(alice, "bob", call_id, sizeof call_id, &len));
  wait_count(&bs, &bs.incoming, incoming + 1, 30, "the incoming call");
  TRUE(strcmp(bs.incoming_call, call_id) == 0); /* the only call bob was offered */
  OK(vc_client_answer(bob, call_id, VC_ANSWER_DECLINE));
  wait_count(&as, &as.declined, 1, 30, "the declined state");
  pthread_mutex_lock(&bs.lock);
  TRUE(bs.incoming == incoming + 1);
  pthread_mutex_unlock(&bs.lock);
  EXPECT(vc_client_answer(bob, call_id, VC_ANSWER_ACCEPT), VC_RESULT_REFUSED);

  /* Accepted calls with media, direct and through the relay. */
  TRUE(media_call(alice, &as, bob, &bs, true, 40) == VC_MEDIA_PATH_DIRECT);
  OK(vc_client_account(alice, &account));
  TRUE(account.has_last_call && account.last_call_cost == account.rate_per_minute);
  TRUE(account.balance == 500 - account.last_call_cost);
  TRUE(account.last_call_billable_secs >= 0 && account.last_call_billable_secs <= account.first_increment_secs);
  printf("alice's balance after the call: %lld %s (the call cost %lld)\n", (long long)account.balance,
         account.currency, (long long)account.last_call_cost);
  TRUE(media_call(alice, &as, bob, &bs, false, 20) == VC_MEDIA_PATH_RELAY);

  /* Freeing a client runs its listener's destroy exactly once, after its last event. */
  /* Alice's callback frees alice when it learns bob went offline. */
  pthread_mutex_lock(&as.lock);
  as.free_on_offline = alice;
  pthread_mutex_unlock(&as.lock);
  vc_client_free(bob);
  TRUE(destroyed(&bs) == 1);
  wait_count(&as, &as.destroyed, 1, 30, "alice's destroy after freeing herself in a callback");
  TRUE(as.presence_offline >= 1 && strcmp(as.presence_user, "bob") == 0);
  TRUE(destroyed(&as) == 1);
  TRUE(as.events >= 6 && bs.events >= 6);
  state_free(&as);
  state_free(&bs);
  printf("all C call tests passed (%d checks)\n", checks);
  return 0;
}
