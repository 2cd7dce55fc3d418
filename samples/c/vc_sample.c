/*
 * vc_sample: a complete libvcsdk client in C.
 *
 * It enrolls with the CA on first use (or loads the identity it stored then), connects to the
 * server with mutual TLS, registers, and then either
 *   - listens: accepts calls and saves the files streamed to it over the call's end-to-end
 *     encrypted media, or
 *   - calls a user and streams a file to them, waiting for the receiver's SHA-256 verdict,
 * printing the media statistics and the account balance. It speaks the file format of `vc call
 * --send` / `vc listen --save`, so either side may be the Rust `vc` tool.
 *
 *   vc_sample --dir DIR --server HOST:PORT [--ca-url URL --ca-root FILE --token TOKEN --id ID]
 *             [--voucher CODE] listen [--save DIR] [--calls N] [--timeout SECS]
 *   vc_sample ... call USER --send FILE [--frame-size BYTES] [--rate FPS] [--relay-only]
 *                 [--wait-online SECS]
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "sha256.h"
#include "vcsdk.h"

/* Largest file accepted when listening. */
#define MAX_FILE (256u << 20)
/* Largest frame size accepted from a sender. */
#define MAX_FRAME_SIZE (1u << 24)
/* How long the caller waits for the callee to answer, and for the verdict. */
#define WAIT_ANSWER_SECS 60
#define WAIT_VERDICT_SECS 30

/* ---- errors ---- */

static void print_error(const char *what, vc_result r) {
  char message[1024];
  char code[128];
  vc_last_error_message(message, sizeof message);
  vc_last_error_code(code, sizeof code);
  fprintf(stderr, "%s: %s [%s]: %s\n", what, vc_result_message(r), code, message);
}

#define TRY(what, expr)                     \
  do {                                      \
    vc_result r_ = (expr);                  \
    if (r_ != VC_RESULT_OK) {               \
      print_error(what, r_);                \
      return 1;                             \
    }                                       \
  } while (0)

/* ---- what the event thread tells the main thread ---- */

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  int incoming;                      /* incoming calls seen */
  char incoming_call[VC_ID_CAPACITY];
  char incoming_from[VC_ID_CAPACITY];
  /* The latest calls' states (events may come before vc_client_call() returns the call's id). */
  struct call_record {
    char call_id[VC_ID_CAPACITY];
    int accepted;
    int final; /* ended, declined, busy, no answer */
    char final_text[300];
  } calls[8];
  int next_record;
  int changes; /* bumped on every state change */
} app_state;

/* The record of `call_id`, made if new (the oldest is reused). Called with the lock held. */
static struct call_record *record_of(app_state *s, const char *call_id) {
  for (int i = 0; i < 8; i++)
    if (strcmp(s->calls[i].call_id, call_id) == 0) return &s->calls[i];
  struct call_record *r = &s->calls[s->next_record];
  s->next_record = (s->next_record + 1) % 8;
  memset(r, 0, sizeof *r);
  snprintf(r->call_id, sizeof r->call_id, "%s", call_id);
  return r;
}

static const char *state_name(vc_call_state s) {
  switch (s) {
    case VC_CALL_STATE_RINGING: return "ringing";
    case VC_CALL_STATE_ACCEPTED: return "accepted";
    case VC_CALL_STATE_DECLINED: return "declined";
    case VC_CALL_STATE_BUSY: return "busy";
    case VC_CALL_STATE_NO_ANSWER: return "no answer";
    case VC_CALL_STATE_ENDED: return "ended";
    case VC_CALL_STATE_ANSWERED_ELSEWHERE: return "answered on another device";
  }
  return "?";
}

/* Runs on the library's event thread: records, prints, wakes the main thread. */
static void on_event(void *ctx, const vc_event *e) {
  app_state *s = ctx;
  pthread_mutex_lock(&s->lock);
  switch (e->kind) {
    case VC_EVENT_INCOMING_CALL:
      printf("incoming call from %s (call %s)\n", e->user, e->call_id);
      snprintf(s->incoming_call, sizeof s->incoming_call, "%s", e->call_id);
      snprintf(s->incoming_from, sizeof s->incoming_from, "%s", e->user);
      s->incoming++;
      break;
    case VC_EVENT_CALL_STATE:
      printf("call %s: %s%s%s\n", e->call_id, state_name(e->state), e->reason ? " - " : "",
             e->reason ? e->reason : "");
      {
        struct call_record *r = record_of(s, e->call_id);
        if (e->state == VC_CALL_STATE_ACCEPTED) r->accepted = 1;
        if (e->state != VC_CALL_STATE_RINGING && e->state != VC_CALL_STATE_ACCEPTED) {
          r->final = 1;
          snprintf(r->final_text, sizeof r->final_text, "%s%s%s", state_name(e->state),
                   e->reason ? " - " : "", e->reason ? e->reason : "");
        }
        s->changes++;
      }
      break;
    case VC_EVENT_LOW_BALANCE:
      printf("low balance: %" PRId64 " minor units left, about %" PRId64 " s of calling\n", e->balance,
             e->seconds_left);
      break;
    case VC_EVENT_DISCONNECTED:
      printf("disconnected from the server (%s); reconnecting\n", e->reason ? e->reason : "");
      break;
    case VC_EVENT_RECONNECTED:
      printf("reconnected\n");
      break;
    case VC_EVENT_CLOSED:
      printf("the connection to the server ended for good (%s)\n", e->reason ? e->reason : "");
      break;
    default:
      break;
  }
  fflush(stdout);
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
}

/* Waits (at most `secs`, or for ever when 0) until *flag differs from `from`. */
static int wait_change(app_state *s, const int *flag, int from, int secs) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += secs;
  pthread_mutex_lock(&s->lock);
  while (*flag == from) {
    if (secs == 0) {
      pthread_cond_wait(&s->changed, &s->lock);
    } else if (pthread_cond_timedwait(&s->changed, &s->lock, &deadline) == ETIMEDOUT) {
      break;
    }
  }
  int changed = *flag != from;
  pthread_mutex_unlock(&s->lock);
  return changed;
}

/* ---- the file format of `vc call --send` / `vc listen --save` ---- */

static void hex(const uint8_t *in, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", in[i]);
}

/* The value of `"key":` in a flat JSON object: a string (unescaped) or a bare token. */
static int json_field(const char *json, const char *key, char *out, size_t cap) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\"", key);
  const char *p = strstr(json, pattern);
  if (p == NULL || cap == 0) return 0;
  p += strlen(pattern);
  while (*p == ' ') p++;
  if (*p++ != ':') return 0;
  while (*p == ' ') p++;
  size_t n = 0;
  if (*p == '"') {
    for (p++; *p && *p != '"'; p++) {
      if (*p == '\\' && p[1]) p++;
      if (n + 1 >= cap) return 0;
      out[n++] = *p;
    }
    if (*p != '"') return 0;
  } else {
    for (; *p && *p != ',' && *p != '}' && *p != ' '; p++) {
      if (n + 1 >= cap) return 0;
      out[n++] = *p;
    }
  }
  out[n] = 0;
  return 1;
}

static int is_type(const char *json, const char *type) {
  char value[32];
  return json_field(json, "type", value, sizeof value) && strcmp(value, type) == 0;
}

/* A file name that stays inside the save directory. */
static int safe_name(const char *name) {
  size_t n = strlen(name);
  return n > 0 && n <= 200 && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
         strpbrk(name, "/\\") == NULL;
}

static int stream_by_name(const char *name) {
  static const char *names[] = {"audio", "video", "data", "signalling"};
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

static vc_result signal_json(vc_media *m, const char *json) {
  return vc_media_send(m, VC_STREAM_SIGNALLING, (const uint8_t *)json, strlen(json));
}

static void print_stats(vc_media *m) {
  vc_media_stats s;
  if (vc_media_get_stats(m, &s) != VC_RESULT_OK) return;
  const char *path = s.path == VC_MEDIA_PATH_DIRECT  ? "direct"
                     : s.path == VC_MEDIA_PATH_RELAY ? "relayed by the server"
                                                     : "closed";
  printf("media (%s): %" PRIu64 " frames sent (%" PRIu64 " bytes, %" PRIu64 " packets); %" PRIu64
         " frames received (%" PRIu64 " bytes, %" PRIu64 " packets); %" PRIu64
         " lost; refused: %" PRIu64 " replays, %" PRIu64 " forged, %" PRIu64
         " unknown keys; key epochs %u sent, %u received\n",
         path, s.frames_sent, s.bytes_sent, s.packets_sent, s.frames_received, s.bytes_received,
         s.packets_received, s.frames_lost, s.replays_refused, s.auth_failures, s.unknown_key,
         s.send_epoch, s.receive_epoch);
}

static void print_account(vc_client *c) {
  vc_account a;
  vc_result r = vc_client_account(c, &a);
  if (r != VC_RESULT_OK) {
    print_error("account", r);
    return;
  }
  /* Amounts are integers of minor units; vc_money_format shows them as people read them. */
  char balance[48], rate[48], cost[48];
  vc_money_format(a.balance, a.currency, balance, sizeof balance, NULL);
  vc_money_format(a.rate_per_minute, a.currency, rate, sizeof rate, NULL);
  printf("account: balance %s (%s); tariff %s per minute", balance,
         a.prepaid ? "prepaid" : "postpaid", rate);
  if (a.has_last_call) {
    vc_money_format(a.last_call_cost, a.currency, cost, sizeof cost, NULL);
    printf("; last call lasted %" PRId64 " s, cost %s", a.last_call_billable_secs, cost);
  }
  printf("\n");
}

/* ---- listening ---- */

typedef struct {
  char name[256];
  char sha256[65];
  int stream;
  uint8_t *data;
  uint8_t *received;
  size_t size;
  size_t frame_size;
  size_t frames;
} incoming_file;

static void drop_file(incoming_file *f) {
  free(f->data);
  free(f->received);
  memset(f, 0, sizeof *f);
}

/* Checks an announced file; returns a refusal reason or NULL. */
static const char *start_file(incoming_file *f, const char *json) {
  char size[32], frame_size[32], stream[32];
  drop_file(f);
  if (!json_field(json, "name", f->name, sizeof f->name) || !safe_name(f->name))
    return "refusing the file name";
  if (!json_field(json, "sha256", f->sha256, sizeof f->sha256) || strlen(f->sha256) != 64)
    return "no SHA-256";
  if (!json_field(json, "size", size, sizeof size) || !json_field(json, "frame_size", frame_size, sizeof frame_size) ||
      !json_field(json, "stream", stream, sizeof stream))
    return "incomplete announcement";
  unsigned long long n = strtoull(size, NULL, 10), fs = strtoull(frame_size, NULL, 10);
  if (n > MAX_FILE) return "file too large";
  if (fs == 0 || fs > MAX_FRAME_SIZE) return "frame size out of range";
  f->stream = stream_by_name(stream);
  if (f->stream < 0) return "unknown stream";
  f->size = (size_t)n;
  f->frame_size = (size_t)fs;
  f->frames = (f->size + f->frame_size - 1) / f->frame_size;
  f->data = calloc(f->size ? f->size : 1, 1);
  f->received = calloc(f->frames ? f->frames : 1, 1);
  if (f->data == NULL || f->received == NULL) return "out of memory";
  printf("receiving %s (%zu bytes) on the %s stream\n", f->name, f->size, stream);
  return NULL;
}

/* Puts an `offset (8 bytes, big-endian) || bytes` frame in place; misfits are ignored. */
static void place(incoming_file *f, const uint8_t *frame, size_t len) {
  if (f->data == NULL || len < 8) return;
  uint64_t offset = 0;
  for (int i = 0; i < 8; i++) offset = offset << 8 | frame[i];
  size_t n = len - 8;
  if (offset % f->frame_size != 0 || offset > f->size) return;
  size_t want = f->size - offset < f->frame_size ? f->size - offset : f->frame_size;
  if (n != want || offset + n > f->size) return;
  memcpy(f->data + offset, frame + 8, n);
  f->received[offset / f->frame_size] = 1;
}

/* Checks and writes a complete file; answers the sender. */
static void finish_file(vc_media *m, incoming_file *f, const char *save_dir) {
  char reply[512];
  size_t got = 0;
  for (size_t i = 0; i < f->frames; i++) got += f->received[i];
  uint8_t digest[32];
  char digest_hex[65];
  sha256(f->data, f->size, digest);
  hex(digest, 32, digest_hex);
  if (got < f->frames) {
    snprintf(reply, sizeof reply, "{\"type\":\"failed\",\"reason\":\"%zu of %zu frames arrived\"}", got, f->frames);
  } else if (strcmp(digest_hex, f->sha256) != 0) {
    snprintf(reply, sizeof reply, "{\"type\":\"failed\",\"reason\":\"SHA-256 does not match\"}");
  } else {
    int written = 1;
    if (save_dir != NULL) {
      char path[1024], tmp[1100];
      snprintf(path, sizeof path, "%s/%s", save_dir, f->name);
      snprintf(tmp, sizeof tmp, "%s.partial", path);
      FILE *out = fopen(tmp, "wb");
      written = out != NULL && fwrite(f->data, 1, f->size, out) == f->size;
      if (out != NULL) written = fclose(out) == 0 && written;
      written = written && rename(tmp, path) == 0;
      if (written) printf("saved %s (%zu bytes, SHA-256 %s)\n", path, f->size, digest_hex);
    }
    if (written)
      snprintf(reply, sizeof reply, "{\"type\":\"saved\",\"sha256\":\"%s\"}", digest_hex);
    else
      snprintf(reply, sizeof reply, "{\"type\":\"failed\",\"reason\":\"could not write the file\"}");
  }
  if (strstr(reply, "failed")) printf("%s: %s\n", f->name, reply);
  signal_json(m, reply);
  drop_file(f);
}

/* Receives files on `m` until the call ends. */
static void receive_files(vc_media *m, const char *save_dir) {
  size_t cap = 64 * 1024;
  uint8_t *buf = malloc(cap + 1);
  incoming_file file;
  memset(&file, 0, sizeof file);
  for (;;) {
    size_t len = 0;
    uint32_t stream = 0;
    vc_result r = vc_media_receive(m, 1000, buf, cap, &len, &stream);
    if (r == VC_RESULT_TIMEOUT) continue;
    if (r == VC_RESULT_BUFFER_TOO_SMALL && len <= MAX_FRAME_SIZE + 8) {
      uint8_t *bigger = realloc(buf, len + 1);
      if (bigger == NULL) break;
      buf = bigger;
      cap = len;
      continue;
    }
    if (r != VC_RESULT_OK) break; /* closed: the call ended */
    if (stream == VC_STREAM_SIGNALLING) {
      buf[len] = 0;
      if (is_type((char *)buf, "file")) {
        const char *refused = start_file(&file, (char *)buf);
        if (refused != NULL) {
          char reply[300];
          snprintf(reply, sizeof reply, "{\"type\":\"failed\",\"reason\":\"%s\"}", refused);
          printf("%s\n", refused);
          signal_json(m, reply);
          drop_file(&file);
        }
      } else if (is_type((char *)buf, "done") && file.data != NULL) {
        finish_file(m, &file, save_dir);
      }
    } else if ((int)stream == file.stream) {
      place(&file, buf, len);
    }
  }
  drop_file(&file);
  free(buf);
}

/* Answers calls until `calls` of them were taken (0: for ever); gives up when no call comes
 * within `timeout` seconds (0: waits for ever). */
static int listen_for_calls(vc_client *c, app_state *s, const char *save_dir, int calls, int timeout) {
  printf("listening (accepting every call)\n");
  fflush(stdout);
  int seen = 0;
  for (int done = 0; calls == 0 || done < calls; done++) {
    if (!wait_change(s, &s->incoming, seen, timeout)) {
      fprintf(stderr, "no call within %d s\n", timeout);
      return 1;
    }
    pthread_mutex_lock(&s->lock);
    seen = s->incoming;
    pthread_mutex_unlock(&s->lock);
    char call_id[VC_ID_CAPACITY];
    pthread_mutex_lock(&s->lock);
    snprintf(call_id, sizeof call_id, "%s", s->incoming_call);
    pthread_mutex_unlock(&s->lock);
    TRY("answer", vc_client_answer(c, call_id, VC_ANSWER_ACCEPT));
    vc_media *m = NULL;
    vc_result r = vc_media_open(c, call_id, NULL, &m);
    if (r != VC_RESULT_OK) {
      print_error("media", r);
      continue;
    }
    receive_files(m, save_dir);
    print_stats(m);
    vc_media_free(m);
  }
  return 0;
}

/* ---- calling ---- */

static void sleep_until(struct timespec *t) {
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, t, NULL) == EINTR) {
  }
}

/* Streams the file and waits for the verdict; 0 when the receiver saved identical bytes. */
static int send_file(vc_media *m, const char *path, size_t frame_size, unsigned rate) {
  FILE *in = fopen(path, "rb");
  if (in == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    return 1;
  }
  fseek(in, 0, SEEK_END);
  long n = ftell(in);
  fseek(in, 0, SEEK_SET);
  if (n < 0 || (unsigned long)n > MAX_FILE) {
    fclose(in);
    fprintf(stderr, "%s: too large\n", path);
    return 1;
  }
  size_t size = (size_t)n;
  uint8_t *data = malloc(size ? size : 1);
  if (data == NULL || fread(data, 1, size, in) != size) {
    fclose(in);
    free(data);
    return 1;
  }
  fclose(in);
  uint8_t digest[32];
  char digest_hex[65];
  sha256(data, size, digest);
  hex(digest, 32, digest_hex);
  const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  char announce[512];
  snprintf(announce, sizeof announce,
           "{\"type\":\"file\",\"name\":\"%s\",\"size\":%zu,\"sha256\":\"%s\",\"stream\":\"video\","
           "\"frame_size\":%zu}",
           name, size, digest_hex, frame_size);
  int failed = 0;
  vc_result r = signal_json(m, announce);
  uint8_t *frame = malloc(frame_size + 8);
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  long period_ns = rate ? 1000000000L / (long)rate : 0;
  for (size_t offset = 0; r == VC_RESULT_OK && offset < size; offset += frame_size) {
    size_t len = size - offset < frame_size ? size - offset : frame_size;
    for (int i = 0; i < 8; i++) frame[i] = (uint8_t)((uint64_t)offset >> (56 - 8 * i));
    memcpy(frame + 8, data + offset, len);
    if (period_ns) {
      sleep_until(&next);
      next.tv_nsec += period_ns;
      while (next.tv_nsec >= 1000000000L) {
        next.tv_nsec -= 1000000000L;
        next.tv_sec++;
      }
    }
    r = vc_media_send(m, VC_STREAM_VIDEO, frame, len + 8);
  }
  free(frame);
  free(data);
  if (r == VC_RESULT_OK) r = signal_json(m, "{\"type\":\"done\"}");
  if (r != VC_RESULT_OK) {
    print_error("sending", r);
    return 1;
  }
  /* The verdict. */
  char reply[1024];
  time_t give_up = time(NULL) + WAIT_VERDICT_SECS;
  failed = 1;
  while (time(NULL) < give_up) {
    size_t len = 0;
    uint32_t stream = 0;
    r = vc_media_receive(m, 1000, (uint8_t *)reply, sizeof reply - 1, &len, &stream);
    if (r == VC_RESULT_TIMEOUT || r == VC_RESULT_BUFFER_TOO_SMALL) {
      if (r == VC_RESULT_BUFFER_TOO_SMALL) { /* not a verdict: skip it */
        uint8_t *skip = malloc(len);
        if (skip) vc_media_receive(m, 0, skip, len, &len, &stream);
        free(skip);
      }
      continue;
    }
    if (r != VC_RESULT_OK) break;
    if (stream != VC_STREAM_SIGNALLING) continue;
    reply[len] = 0;
    char got[80];
    if (is_type(reply, "saved") && json_field(reply, "sha256", got, sizeof got)) {
      if (strcmp(got, digest_hex) == 0) {
        printf("sent %s: %zu bytes; the receiver saved identical bytes (SHA-256 %s)\n", name, size,
               digest_hex);
        failed = 0;
      } else {
        printf("the receiver saved different bytes (SHA-256 %s)\n", got);
      }
      break;
    }
    if (is_type(reply, "failed")) {
      printf("the receiver could not rebuild the file: %s\n", reply);
      break;
    }
  }
  if (r == VC_RESULT_TIMEOUT) printf("no verdict from the receiver within %d s\n", WAIT_VERDICT_SECS);
  return failed;
}

static int call_and_send(vc_client *c, app_state *s, const char *user, const char *file, size_t frame_size,
                         unsigned rate, int relay_only, int wait_online) {
  char call_id[VC_ID_CAPACITY];
  vc_result r;
  char code[64] = "";
  /* The callee may still be starting: retry while they are offline or not yet registered. */
  time_t give_up = time(NULL) + wait_online;
  printf("calling %s\n", user);
  fflush(stdout);
  for (;;) {
    r = vc_client_call(c, user, call_id, sizeof call_id, NULL);
    vc_last_error_code(code, sizeof code);
    int not_there_yet = strcmp(code, "user_offline") == 0 || strcmp(code, "unknown_user") == 0;
    if (r != VC_RESULT_REFUSED || !not_there_yet || time(NULL) >= give_up) break;
    printf("%s is not online yet; waiting\n", user);
    fflush(stdout);
    struct timespec pause = {0, 500 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  TRY("call", r);

  /* Accepted, or a final state, whichever comes first. */
  time_t deadline = time(NULL) + WAIT_ANSWER_SECS;
  for (;;) {
    pthread_mutex_lock(&s->lock);
    struct call_record now = *record_of(s, call_id);
    int changes = s->changes;
    pthread_mutex_unlock(&s->lock);
    if (now.final) {
      fprintf(stderr, "the call did not go through: %s\n", now.final_text);
      return 1;
    }
    if (now.accepted) break;
    if (time(NULL) >= deadline) {
      fprintf(stderr, "no answer within %d s\n", WAIT_ANSWER_SECS);
      vc_client_hangup(c, call_id);
      return 1;
    }
    wait_change(s, &s->changes, changes, 1);
  }
  vc_media_options options;
  vc_media_options_default(&options);
  options.direct = !relay_only;
  vc_media *m = NULL;
  r = vc_media_open(c, call_id, &options, &m);
  if (r != VC_RESULT_OK) {
    print_error("media", r);
    vc_client_hangup(c, call_id);
    return 1;
  }
  int failed = send_file(m, file, frame_size, rate);
  print_stats(m);
  /* Hang up and wait (briefly) for the end. */
  vc_client_hangup(c, call_id);
  for (int i = 0; i < 10; i++) {
    pthread_mutex_lock(&s->lock);
    int ended = record_of(s, call_id)->final, changes = s->changes;
    pthread_mutex_unlock(&s->lock);
    if (ended) break;
    wait_change(s, &s->changes, changes, 1);
  }
  vc_media_free(m);
  return failed;
}

/* ---- identity and connection ---- */

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(buf);
    return NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static void usage(void) {
  fprintf(stderr,
          "usage: vc_sample --dir DIR --server HOST:PORT [--ca-url URL --ca-root FILE --token TOKEN --id ID]\n"
          "                 [--voucher CODE] listen [--save DIR] [--calls N] [--timeout SECS]\n"
          "       vc_sample ... call USER --send FILE [--frame-size BYTES] [--rate FPS] [--relay-only]\n"
          "                 [--wait-online SECS]\n"
          "listen answers every call and saves the files streamed to it (until --calls calls were\n"
          "taken, or no call came for --timeout seconds); call streams FILE to USER (retrying for\n"
          "--wait-online seconds, default 60, while USER is offline or not registered yet).\n"
          "The identity in DIR is enrolled with the CA on first use (--ca-url, --ca-root, --token,\n"
          "--id) and loaded afterwards.\n");
}

int main(int argc, char **argv) {
  const char *dir = NULL, *server = NULL, *ca_url = NULL, *ca_root = NULL, *token = NULL, *id = NULL;
  const char *voucher = NULL, *mode = NULL, *user = NULL, *file = NULL, *save = NULL;
  size_t frame_size = 16384;
  unsigned rate = 30;
  int calls = 0, relay_only = 0, timeout = 0, wait_online = 60;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name, var)                     \
  if (strcmp(a, name) == 0 && v != NULL) { \
    var = v;                               \
    i++;                                   \
    continue;                              \
  }
    OPT("--dir", dir) OPT("--server", server) OPT("--ca-url", ca_url) OPT("--ca-root", ca_root)
    OPT("--token", token) OPT("--id", id) OPT("--voucher", voucher) OPT("--send", file) OPT("--save", save)
    if (strcmp(a, "--frame-size") == 0 && v) { frame_size = strtoul(v, NULL, 10); i++; continue; }
    if (strcmp(a, "--rate") == 0 && v) { rate = (unsigned)strtoul(v, NULL, 10); i++; continue; }
    if (strcmp(a, "--calls") == 0 && v) { calls = atoi(v); i++; continue; }
    if (strcmp(a, "--timeout") == 0 && v) { timeout = atoi(v); i++; continue; }
    if (strcmp(a, "--wait-online") == 0 && v) { wait_online = atoi(v); i++; continue; }
    if (strcmp(a, "--relay-only") == 0) { relay_only = 1; continue; }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(); return 0; }
    if (strcmp(a, "listen") == 0 && mode == NULL) { mode = a; continue; }
    if (strcmp(a, "call") == 0 && mode == NULL && v) { mode = a; user = v; i++; continue; }
    usage();
    return 2;
  }
  if (dir == NULL || server == NULL || mode == NULL || (strcmp(mode, "call") == 0 && file == NULL) ||
      frame_size == 0 || frame_size > MAX_FRAME_SIZE) {
    usage();
    return 2;
  }
  printf("libvcsdk %s\n", vc_version());

  /* The identity: stored, or enrolled now. */
  vc_identity *identity = NULL;
  if (vc_identity_load(dir, &identity) != VC_RESULT_OK) {
    if (ca_url == NULL || ca_root == NULL || token == NULL || id == NULL) {
      fprintf(stderr, "no identity in %s: give --ca-url, --ca-root, --token and --id to enroll\n", dir);
      return 2;
    }
    size_t root_len = 0;
    char *root = read_all(ca_root, &root_len);
    if (root == NULL) {
      fprintf(stderr, "cannot read %s\n", ca_root);
      return 2;
    }
    vc_result r = vc_identity_enroll(dir, ca_url, (const uint8_t *)root, root_len, token, id, &identity);
    free(root);
    TRY("enroll", r);
    printf("enrolled as %s\n", id);
  }
  char me[VC_ID_CAPACITY];
  TRY("identity", vc_identity_id(identity, me, sizeof me, NULL));
  vc_identity_info info;
  TRY("identity", vc_identity_get_info(identity, &info));
  if (info.renewal_due) {
    TRY("renew", vc_identity_renew(identity));
    printf("renewed the certificate\n");
  }

  /* The connection. */
  static app_state state;
  pthread_mutex_init(&state.lock, NULL);
  pthread_cond_init(&state.changed, NULL);
  vc_client_listener listener = {.ctx = &state, .on_event = on_event, .destroy = NULL};
  vc_client *client = NULL;
  vc_result r = vc_client_connect(identity, server, NULL, &listener, &client);
  vc_identity_free(identity);
  TRY("connect", r);
  bool registered = false;
  TRY("connect", vc_client_is_registered(client, &registered));
  if (!registered) {
    r = vc_client_register(client, NULL);
    if (r != VC_RESULT_OK) {
      print_error("register", r);
      vc_client_free(client);
      return 1;
    }
    printf("registered %s\n", me);
  }
  printf("connected to %s as %s\n", server, me);
  if (voucher != NULL) {
    r = vc_client_redeem_voucher(client, voucher, NULL);
    if (r != VC_RESULT_OK) print_error("voucher", r);
  }
  print_account(client);
  fflush(stdout);

  int status = strcmp(mode, "listen") == 0
                   ? listen_for_calls(client, &state, save, calls, timeout)
                   : call_and_send(client, &state, user, file, frame_size, rate, relay_only, wait_online);
  print_account(client);
  vc_client_free(client);
  vc_library_shutdown(); /* done with the library: its threads stop */
  pthread_mutex_destroy(&state.lock);
  pthread_cond_destroy(&state.changed);
  return status;
}
