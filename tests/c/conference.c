/*
 * Three C clients in one conference against the real vc-ca and vc-server (started by
 * tests/tests/c_abi.rs, which passes addresses and tokens in the environment): invitations through
 * the client listener, an access list that declines unseen, group keys renewed on every join and
 * leave, frames between members, the moderator's policy change at one epoch for all, removal, and
 * NULL and garbage on every conference entry point. Built and run by scripts/c-tests.sh under
 * AddressSanitizer and valgrind.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vcsdk.h"

static int checks;

static void die(int line, const char *fmt, ...) {
  char detail[1024];
  char code[128];
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "conference.c:%d: ", line);
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
      die(__LINE__, "%s gave %d (%s), expected %d", #expr, (int)got_, vc_result_message(got_), \
          (int)(want));                                                                     \
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

/* ---- what the listeners saw, waited on with bounded waits ---- */

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  const char *name;
  int invitations;
  char invited_to[VC_ID_CAPACITY];
  char invited_by[VC_ID_CAPACITY];
  /* conference events */
  int epochs;
  unsigned last_epoch;
  unsigned last_level;
  char last_distributor[VC_ID_CAPACITY];
  int declined;
  int left;
  char left_member[VC_ID_CAPACITY];
  int ended;
  char ended_reason[256];
  int destroyed;
} seen;

static void seen_init(seen *s, const char *name) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->changed, NULL);
  s->name = name;
}

static void seen_free(seen *s) {
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->changed);
}

static void copy(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

static void on_client_event(void *ctx, const vc_event *e) {
  seen *s = ctx;
  pthread_mutex_lock(&s->lock);
  if (e->kind == VC_EVENT_CONFERENCE_INVITATION) {
    s->invitations++;
    copy(s->invited_to, sizeof s->invited_to, e->conference);
    copy(s->invited_by, sizeof s->invited_by, e->user);
  }
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
}

static void on_conference_event(void *ctx, const vc_conference_event *e) {
  seen *s = ctx;
  pthread_mutex_lock(&s->lock);
  switch (e->kind) {
    case VC_CONFERENCE_EVENT_EPOCH:
      s->epochs++;
      s->last_epoch = e->epoch;
      s->last_level = e->policy.level;
      copy(s->last_distributor, sizeof s->last_distributor, e->member);
      break;
    case VC_CONFERENCE_EVENT_DECLINED:
      s->declined++;
      break;
    case VC_CONFERENCE_EVENT_LEFT:
      s->left++;
      copy(s->left_member, sizeof s->left_member, e->member);
      break;
    case VC_CONFERENCE_EVENT_ENDED:
      s->ended++;
      copy(s->ended_reason, sizeof s->ended_reason, e->reason);
      break;
    default:
      break;
  }
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
}

static void on_destroy(void *ctx) {
  seen *s = ctx;
  pthread_mutex_lock(&s->lock);
  s->destroyed++;
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
}

/* Waits up to `secs` until `*value >= at_least`. */
static void wait_for(seen *s, const void *value, unsigned at_least, int is_unsigned, int secs,
                     const char *what) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += secs;
  pthread_mutex_lock(&s->lock);
  for (;;) {
    unsigned now = is_unsigned ? *(const unsigned *)value : (unsigned)*(const int *)value;
    if (now >= at_least) break;
    if (pthread_cond_timedwait(&s->changed, &s->lock, &deadline) == ETIMEDOUT) {
      pthread_mutex_unlock(&s->lock);
      fprintf(stderr, "%s: %s did not happen within %d s\n", s->name, what, secs);
      exit(1);
    }
  }
  pthread_mutex_unlock(&s->lock);
  checks++;
}
#define WAIT_COUNT(s, field, n, what) wait_for((s), &(s)->field, (unsigned)(n), 0, 120, what)
#define WAIT_EPOCH(s, n) wait_for((s), &(s)->last_epoch, (unsigned)(n), 1, 120, "epoch " #n)

/* ---- the members ---- */

typedef struct {
  vc_identity *identity;
  vc_client *client;
  vc_conference *conference;
  seen client_seen;
  seen conf_seen;
} member;

static void bring_online(member *m, const char *work, const char *id, const char *token) {
  char dir[512];
  size_t root_len;
  char *root = read_file(env("VC_CA_ROOT"), &root_len);
  snprintf(dir, sizeof dir, "%s/%s", work, id);
  OK(vc_identity_enroll(dir, env("VC_CA_URL"), (const uint8_t *)root, root_len, token, id,
                        &m->identity));
  free(root);
  seen_init(&m->client_seen, id);
  seen_init(&m->conf_seen, id);
  vc_client_listener l = {.ctx = &m->client_seen, .on_event = on_client_event, .destroy = on_destroy};
  OK(vc_client_connect(m->identity, env("VC_SERVER"), "localhost", &l, &m->client));
  OK(vc_client_register(m->client, NULL));
}

static vc_conference_listener conf_listener(member *m) {
  vc_conference_listener l = {.ctx = &m->conf_seen, .on_event = on_conference_event, .destroy = on_destroy};
  return l;
}

/* `from` sends on audio until `to` receives that frame (bounded). */
static void deliver(member *from, member *to, const char *text) {
  uint8_t buf[512];
  for (int attempt = 0; attempt < 200; attempt++) {
    OK(vc_conference_send(from->conference, VC_STREAM_AUDIO, (const uint8_t *)text, strlen(text)));
    for (;;) {
      size_t len = 0;
      uint32_t stream = 99;
      uint16_t sender = 9999;
      vc_result r = vc_conference_receive(to->conference, 100, buf, sizeof buf, &len, &stream, &sender);
      if (r == VC_RESULT_TIMEOUT) break;
      OK(r);
      if (len == strlen(text) && memcmp(buf, text, len) == 0) {
        TRUE(stream == VC_STREAM_AUDIO);
        TRUE(sender < 16);
        return;
      }
    }
  }
  die(__LINE__, "'%s' never arrived", text);
}

/* Invites `who` into `host`'s conference and has it join. */
static void bring_in(member *host, member *who, const char *id) {
  int before = who->client_seen.invitations;
  OK(vc_conference_invite(host->conference, id));
  WAIT_COUNT(&who->client_seen, invitations, before + 1, "an invitation");
  char conf[VC_ID_CAPACITY];
  OK(vc_conference_id(host->conference, conf, sizeof conf, NULL));
  TRUE(strcmp(who->client_seen.invited_to, conf) == 0);
  vc_conference_listener l = conf_listener(who);
  OK(vc_conference_join(who->client, conf, true, &l, &who->conference));
}

/* ---- NULL and garbage on every conference entry point ---- */

static void null_and_garbage(member *alice) {
  vc_conference_policy p;
  vc_conference *c = NULL;
  char buf[64];
  size_t len = 0;
  vc_conference_stats stats;
  uint8_t data[8] = {0};

  EXPECT(vc_conference_policy_default(2, VC_CONFERENCE_MODE_MODERATION, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_policy_default(4, VC_CONFERENCE_MODE_MODERATION, &p), VC_RESULT_INVALID_ARGUMENT);
  EXPECT(vc_conference_policy_default(2, 7, &p), VC_RESULT_INVALID_ARGUMENT);
  OK(vc_conference_policy_default(1, VC_CONFERENCE_MODE_VOTING, &p));
  TRUE(p.level == 1 && p.audio == VC_PROTECTION_PLAIN && p.mode == VC_CONFERENCE_MODE_VOTING);

  /* A listener is owned from the call on: destroyed once even when the call fails. */
  seen throwaway;
  seen_init(&throwaway, "throwaway");
  vc_conference_listener l = {.ctx = &throwaway, .on_event = on_conference_event, .destroy = on_destroy};
  EXPECT(vc_conference_create(NULL, NULL, true, &l, &c), VC_RESULT_NULL_PARAMETER);
  TRUE(throwaway.destroyed == 1);
  EXPECT(vc_conference_create(alice->client, NULL, true, NULL, NULL), VC_RESULT_NULL_PARAMETER);
  OK(vc_conference_policy_default(2, VC_CONFERENCE_MODE_MODERATION, &p));
  p.level = 9;
  EXPECT(vc_conference_create(alice->client, &p, true, NULL, &c), VC_RESULT_INVALID_ARGUMENT);
  OK(vc_conference_policy_default(2, VC_CONFERENCE_MODE_MODERATION, &p));
  p.audio = (vc_protection)77;
  EXPECT(vc_conference_create(alice->client, &p, true, NULL, &c), VC_RESULT_INVALID_ARGUMENT);
  OK(vc_conference_policy_default(1, VC_CONFERENCE_MODE_MODERATION, &p));
  p.video = VC_PROTECTION_AES128GCM; /* level 1 sends everything plain */
  EXPECT(vc_conference_create(alice->client, &p, true, NULL, &c), VC_RESULT_INVALID_ARGUMENT);
  OK(vc_conference_policy_default(2, VC_CONFERENCE_MODE_MODERATION, &p));
  p.mode = (vc_conference_mode)5;
  EXPECT(vc_conference_create(alice->client, &p, true, NULL, &c), VC_RESULT_INVALID_ARGUMENT);
  TRUE(c == NULL);

  l.destroy = on_destroy;
  EXPECT(vc_conference_join(alice->client, NULL, true, &l, &c), VC_RESULT_NULL_PARAMETER);
  TRUE(throwaway.destroyed == 2);
  EXPECT(vc_conference_join(alice->client, "00000000000000000000000000000000", true, &l, &c),
         VC_RESULT_INVALID_ARGUMENT);
  TRUE(throwaway.destroyed == 3);
  EXPECT(vc_conference_join(NULL, "x", true, NULL, &c), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_join(alice->client, "x", true, NULL, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_join(alice->client, "\xff\xfe", true, NULL, &c), VC_RESULT_INVALID_ARGUMENT);
  seen_free(&throwaway);

  EXPECT(vc_client_decline_conference(NULL, "x"), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_decline_conference(alice->client, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_decline_conference(alice->client, "nope"), VC_RESULT_INVALID_ARGUMENT);
  EXPECT(vc_client_set_access_list(NULL, ""), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_set_access_list(alice->client, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_client_set_access_list(alice->client, "deny = [\"bad id!\"]"), VC_RESULT_INVALID_ARGUMENT);
  EXPECT(vc_client_set_access_list(alice->client, "colour = 3"), VC_RESULT_INVALID_ARGUMENT);
  EXPECT(vc_client_set_access_list(alice->client, "default = \"sometimes\""), VC_RESULT_INVALID_ARGUMENT);
  OK(vc_client_set_access_list(alice->client, ""));

  /* Handles that are NULL. */
  vc_conference_free(NULL);
  EXPECT(vc_conference_id(NULL, buf, sizeof buf, &len), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_invite(NULL, "bob"), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_remove(NULL, "bob"), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_hand_over(NULL, "bob"), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_leave(NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_set_policy(NULL, &p), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_propose(NULL, &p, 10, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_vote(NULL, 1, true), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_get_policy(NULL, &p), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_roster(NULL, buf, sizeof buf, &len), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_send(NULL, VC_STREAM_AUDIO, data, sizeof data), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_receive(NULL, 0, (uint8_t *)buf, sizeof buf, &len, NULL, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_get_stats(NULL, &stats), VC_RESULT_NULL_PARAMETER);
}

/* With a live conference: NULL and garbage in the other arguments. */
static void garbage_on_a_live_conference(member *alice) {
  vc_conference *c = alice->conference;
  vc_conference_policy p;
  char small[4];
  size_t len = 0;
  uint8_t buf[16];
  uint64_t proposal = 0;
  OK(vc_conference_get_policy(c, &p));
  TRUE(p.level == 2 && p.mode == VC_CONFERENCE_MODE_MODERATION && p.signalling == VC_PROTECTION_AES128GCM);
  EXPECT(vc_conference_get_policy(c, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_id(c, small, sizeof small, &len), VC_RESULT_BUFFER_TOO_SMALL);
  TRUE(len == 33); /* the capacity needed, NUL included */
  {
    char *exact = malloc(len);
    size_t needed = len;
    TRUE(exact != NULL);
    OK(vc_conference_id(c, exact, needed, &len)); /* exactly the size reported suffices */
    TRUE(len == 32 && strlen(exact) == 32);
    free(exact);
  }
  EXPECT(vc_conference_id(c, NULL, 40, &len), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_roster(c, NULL, 8, &len), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_invite(c, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_invite(c, "ghost"), VC_RESULT_REFUSED);
  CODE("unknown_user");
  EXPECT(vc_conference_invite(c, "alice"), VC_RESULT_REFUSED); /* already a member */
  CODE("conf_invalid");
  EXPECT(vc_conference_remove(c, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_remove(c, "ghost"), VC_RESULT_REFUSED);
  CODE("conf_invalid");
  EXPECT(vc_conference_hand_over(c, "\xff"), VC_RESULT_INVALID_ARGUMENT);
  EXPECT(vc_conference_set_policy(c, NULL), VC_RESULT_NULL_PARAMETER);
  p.level = 3; /* level 3 with AES-128 streams: refused */
  EXPECT(vc_conference_set_policy(c, &p), VC_RESULT_INVALID_ARGUMENT);
  OK(vc_conference_policy_default(2, VC_CONFERENCE_MODE_VOTING, &p));
  EXPECT(vc_conference_propose(c, &p, 30, &proposal), VC_RESULT_REFUSED); /* moderation mode */
  CODE("conf_forbidden");
  EXPECT(vc_conference_propose(c, NULL, 30, &proposal), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_vote(c, 12345, true), VC_RESULT_REFUSED);
  CODE("conf_forbidden");
  EXPECT(vc_conference_send(c, 9, buf, 1), VC_RESULT_INVALID_ARGUMENT);
  EXPECT(vc_conference_send(c, VC_STREAM_VIDEO, NULL, 5), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_receive(c, 0, buf, sizeof buf, NULL, NULL, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_receive(c, 0, NULL, 8, &len, NULL, NULL), VC_RESULT_NULL_PARAMETER);
  EXPECT(vc_conference_receive(c, 0, buf, sizeof buf, &len, NULL, NULL), VC_RESULT_TIMEOUT);
  EXPECT(vc_conference_get_stats(c, NULL), VC_RESULT_NULL_PARAMETER);
}

int main(void) {
  const char *work = env("VC_WORK");
  member alice, bob, carol;
  memset(&alice, 0, sizeof alice);
  memset(&bob, 0, sizeof bob);
  memset(&carol, 0, sizeof carol);
  bring_online(&alice, work, "alice", env("VC_TOKEN_ALICE"));
  bring_online(&bob, work, "bob", env("VC_TOKEN_BOB"));
  bring_online(&carol, work, "carol", env("VC_TOKEN_CAROL"));
  null_and_garbage(&alice);

  vc_conference_listener l = conf_listener(&alice);
  OK(vc_conference_create(alice.client, NULL, true, &l, &alice.conference));
  WAIT_EPOCH(&alice.conf_seen, 1);
  garbage_on_a_live_conference(&alice);

  /* Carol admits only alice: bob's invitation is declined for her, unseen. */
  OK(vc_client_set_access_list(carol.client, "default = \"nobody\"\nallow = [\"alice\"]\n"));
  vc_conference_listener bl = conf_listener(&bob);
  vc_conference *bobs_own = NULL;
  OK(vc_conference_create(bob.client, NULL, true, &bl, &bobs_own));
  OK(vc_conference_invite(bobs_own, "carol"));
  WAIT_COUNT(&bob.conf_seen, declined, 1, "carol's automatic decline");
  TRUE(carol.client_seen.invitations == 0);
  OK(vc_conference_leave(bobs_own));
  WAIT_COUNT(&bob.conf_seen, ended, 1, "bob's own conference to end");
  vc_conference_free(bobs_own);
  TRUE(bob.conf_seen.destroyed == 1);
  seen_free(&bob.conf_seen);
  seen_init(&bob.conf_seen, "bob");

  bring_in(&alice, &bob, "bob");
  WAIT_EPOCH(&alice.conf_seen, 2);
  WAIT_EPOCH(&bob.conf_seen, 2);
  bring_in(&alice, &carol, "carol");
  WAIT_EPOCH(&alice.conf_seen, 3);
  WAIT_EPOCH(&bob.conf_seen, 3);
  WAIT_EPOCH(&carol.conf_seen, 3);
  char roster[256];
  size_t len = 0;
  OK(vc_conference_roster(carol.conference, roster, sizeof roster, &len));
  TRUE(strcmp(roster, "alice\nbob\ncarol") == 0 && len == 15);
  EXPECT(vc_conference_roster(carol.conference, roster, 15, &len), VC_RESULT_BUFFER_TOO_SMALL);
  TRUE(len == 16);
  {
    char *exact = malloc(len);
    TRUE(exact != NULL);
    OK(vc_conference_roster(carol.conference, exact, len, &len));
    TRUE(strcmp(exact, "alice\nbob\ncarol") == 0 && len == 15);
    free(exact);
  }
  TRUE(strcmp(carol.conf_seen.last_distributor, "alice") == 0);

  deliver(&alice, &bob, "alice to bob");
  deliver(&bob, &carol, "bob to carol");
  deliver(&carol, &alice, "carol to alice");

  /* Bob is not the moderator; alice moves everyone to level 3 at one epoch. */
  vc_conference_policy p3;
  OK(vc_conference_policy_default(3, VC_CONFERENCE_MODE_MODERATION, &p3));
  EXPECT(vc_conference_set_policy(bob.conference, &p3), VC_RESULT_REFUSED);
  CODE("conf_forbidden");
  OK(vc_conference_set_policy(alice.conference, &p3));
  WAIT_EPOCH(&bob.conf_seen, 4);
  WAIT_EPOCH(&carol.conf_seen, 4);
  TRUE(bob.conf_seen.last_level == 3 && carol.conf_seen.last_level == 3);
  deliver(&alice, &carol, "at level three");

  /* Alice removes carol: carol is out; alice and bob rekey without her. */
  OK(vc_conference_remove(alice.conference, "carol"));
  WAIT_COUNT(&carol.conf_seen, ended, 1, "carol's removal");
  TRUE(strstr(carol.conf_seen.ended_reason, "removed by alice") != NULL);
  WAIT_EPOCH(&bob.conf_seen, 5);
  TRUE(strcmp(bob.conf_seen.left_member, "carol") == 0);
  EXPECT(vc_conference_invite(carol.conference, "bob"), VC_RESULT_INVALID_ARGUMENT); /* not a member */
  deliver(&bob, &alice, "just us");
  vc_conference_stats stats;
  OK(vc_conference_get_stats(alice.conference, &stats));
  TRUE(stats.epoch >= 5 && stats.peers == 1 && stats.frames_received >= 2 && stats.auth_failures == 0);
  TRUE(stats.last_bundle_bytes > 0);

  OK(vc_conference_leave(bob.conference));
  WAIT_COUNT(&bob.conf_seen, ended, 1, "bob's leave");
  WAIT_COUNT(&alice.conf_seen, left, 2, "bob gone at alice");
  OK(vc_conference_leave(alice.conference));

  member *all[] = {&alice, &bob, &carol};
  for (int i = 0; i < 3; i++) {
    vc_conference_free(all[i]->conference);
    TRUE(all[i]->conf_seen.destroyed == 1);
    vc_client_free(all[i]->client);
    TRUE(all[i]->client_seen.destroyed == 1);
    vc_identity_free(all[i]->identity);
    seen_free(&all[i]->conf_seen);
    seen_free(&all[i]->client_seen);
  }
  printf("all C conference tests passed (%d checks)\n", checks);
  return 0;
}
