#define _GNU_SOURCE
/* C test of libvcsdk's SFrame contexts: round trips of both suites, refusal of tampered, replayed,
 * foreign and unknown-key frames, a KID never re-installed for sending, and NULL / garbage
 * arguments on every entry point (each must return an error, never crash). Built and run by
 * scripts/test.sh with AddressSanitizer and UndefinedBehaviorSanitizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vcsdk.h"

static int failures = 0;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
            failures++;                                          \
        }                                                        \
    } while (0)

#define EXPECT(call, want)                                                                    \
    do {                                                                                      \
        vc_result got_ = (call);                                                              \
        CHECK(got_ == (want), "%s = %d (%s), want %d", #call, (int)got_,                      \
              vc_result_message(got_), (int)(want));                                          \
    } while (0)

static void round_trips(uint16_t suite, size_t key_len) {
    uint8_t key[32];
    memset(key, 0x42, sizeof key);
    vc_sframe_context *tx = NULL, *rx = NULL, *stranger = NULL;
    EXPECT(vc_sframe_context_new(&tx), VC_RESULT_OK);
    EXPECT(vc_sframe_context_new(&rx), VC_RESULT_OK);
    EXPECT(vc_sframe_context_new(&stranger), VC_RESULT_OK);
    EXPECT(vc_sframe_add_send_key(tx, suite, 7, key, key_len), VC_RESULT_OK);
    EXPECT(vc_sframe_add_receive_key(rx, suite, 7, key, key_len), VC_RESULT_OK);
    uint8_t other[32];
    memset(other, 0x17, sizeof other);
    EXPECT(vc_sframe_add_send_key(stranger, suite, 7, other, key_len), VC_RESULT_OK);

    static uint8_t plain[16384], frame[16384 + VC_SFRAME_MAX_OVERHEAD], back[16384 + 64];
    for (size_t i = 0; i < sizeof plain; i++) plain[i] = (uint8_t)(i * 31 + 7);
    const uint8_t meta[] = "stream=video";
    size_t sizes[] = {0, 1, 160, 1200, 16384};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = 0, m = 0;
        uint64_t kid = 0;
        EXPECT(vc_sframe_encrypt(tx, 7, meta, sizeof meta, plain, sizes[s], frame, sizeof frame, &n),
               VC_RESULT_OK);
        CHECK(n > sizes[s] && n <= sizes[s] + VC_SFRAME_MAX_OVERHEAD, "frame length %zu", n);
        CHECK(sizes[s] < 16 || memmem(frame, n, plain, 16) == NULL, "plaintext visible in frame");
        EXPECT(vc_sframe_decrypt(rx, meta, sizeof meta, frame, n, back, sizeof back, &m, &kid),
               VC_RESULT_OK);
        CHECK(m == sizes[s] && kid == 7 && memcmp(back, plain, m) == 0, "round trip %zu", sizes[s]);
        /* Replayed. */
        EXPECT(vc_sframe_decrypt(rx, meta, sizeof meta, frame, n, back, sizeof back, &m, NULL),
               VC_RESULT_REPLAY);
    }
    /* Tampered: each byte flipped in a fresh frame. */
    size_t n = 0, m = 0;
    EXPECT(vc_sframe_encrypt(tx, 7, NULL, 0, plain, 100, frame, sizeof frame, &n), VC_RESULT_OK);
    for (size_t i = 0; i < n; i++) {
        frame[i] ^= 0x01;
        vc_result r = vc_sframe_decrypt(rx, NULL, 0, frame, n, back, sizeof back, &m, NULL);
        CHECK(r != VC_RESULT_OK, "byte %zu flipped was accepted", i);
        frame[i] ^= 0x01;
    }
    /* Wrong metadata. */
    EXPECT(vc_sframe_decrypt(rx, meta, sizeof meta, frame, n, back, sizeof back, &m, NULL),
           VC_RESULT_AUTHENTICATION_FAILED);
    EXPECT(vc_sframe_decrypt(rx, NULL, 0, frame, n, back, sizeof back, &m, NULL), VC_RESULT_OK);
    /* A stranger's frame under the same KID. */
    EXPECT(vc_sframe_encrypt(stranger, 7, NULL, 0, plain, 100, frame, sizeof frame, &n), VC_RESULT_OK);
    EXPECT(vc_sframe_decrypt(rx, NULL, 0, frame, n, back, sizeof back, &m, NULL),
           VC_RESULT_AUTHENTICATION_FAILED);
    /* Unknown KID, retired KID, re-installed sending KID, small buffers. */
    EXPECT(vc_sframe_add_send_key(tx, suite, 8, key, key_len), VC_RESULT_OK);
    EXPECT(vc_sframe_encrypt(tx, 8, NULL, 0, plain, 10, frame, sizeof frame, &n), VC_RESULT_OK);
    EXPECT(vc_sframe_decrypt(rx, NULL, 0, frame, n, back, sizeof back, &m, NULL),
           VC_RESULT_UNKNOWN_KEY);
    EXPECT(vc_sframe_encrypt(tx, 99, NULL, 0, plain, 10, frame, sizeof frame, &n),
           VC_RESULT_UNKNOWN_KEY);
    EXPECT(vc_sframe_retire_receive_key(rx, 7, 0), VC_RESULT_OK);
    EXPECT(vc_sframe_encrypt(tx, 7, NULL, 0, plain, 10, frame, sizeof frame, &n), VC_RESULT_OK);
    EXPECT(vc_sframe_decrypt(rx, NULL, 0, frame, n, back, sizeof back, &m, NULL),
           VC_RESULT_UNKNOWN_KEY);
    EXPECT(vc_sframe_remove_send_key(tx, 7), VC_RESULT_OK);
    EXPECT(vc_sframe_add_send_key(tx, suite, 7, key, key_len), VC_RESULT_KEY_REUSED);
    /* Too small an output: nothing is done and the capacity needed is reported; exactly that
     * much succeeds. */
    EXPECT(vc_sframe_encrypt(tx, 8, NULL, 0, plain, 100, frame, 50, &n), VC_RESULT_BUFFER_TOO_SMALL);
    size_t needed = n;
    CHECK(needed > 100 && needed <= 100 + VC_SFRAME_MAX_OVERHEAD, "needed %zu", needed);
    EXPECT(vc_sframe_encrypt(tx, 8, NULL, 0, plain, 100, frame, needed, &n), VC_RESULT_OK);
    CHECK(n == needed, "frame %zu, needed %zu", n, needed);
    EXPECT(vc_sframe_add_receive_key(rx, suite, 8, key, key_len), VC_RESULT_OK);
    EXPECT(vc_sframe_decrypt(rx, NULL, 0, frame, n, back, 10, &m, NULL), VC_RESULT_BUFFER_TOO_SMALL);
    CHECK(m == 100, "needed %zu", m);
    /* The frame was not marked as seen: it decrypts with the room reported. */
    EXPECT(vc_sframe_decrypt(rx, NULL, 0, frame, n, back, m, &m, NULL), VC_RESULT_OK);
    CHECK(m == 100 && memcmp(back, plain, 100) == 0, "decrypt with the room reported");
    EXPECT(vc_sframe_decrypt(rx, NULL, 0, frame, 3, back, sizeof back, &m, NULL), VC_RESULT_MALFORMED);
    vc_sframe_context_free(tx);
    vc_sframe_context_free(rx);
    vc_sframe_context_free(stranger);
}

static void bad_arguments(void) {
    uint8_t key[16] = {1}, buf[64];
    size_t n = 0;
    vc_sframe_context *ctx = NULL;
    EXPECT(vc_sframe_context_new(NULL), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_context_new(&ctx), VC_RESULT_OK);
    vc_sframe_context_free(NULL);
    EXPECT(vc_sframe_add_send_key(NULL, 4, 1, key, 16), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_add_send_key(ctx, 4, 1, NULL, 16), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_add_send_key(ctx, 4, 1, key, 0), VC_RESULT_INVALID_ARGUMENT);
    EXPECT(vc_sframe_add_send_key(ctx, 9, 1, key, 16), VC_RESULT_INVALID_ARGUMENT);
    EXPECT(vc_sframe_add_send_key(ctx, 0xffff, 1, key, 16), VC_RESULT_INVALID_ARGUMENT);
    EXPECT(vc_sframe_add_send_key(ctx, 4, 1, key, (size_t)-1), VC_RESULT_INVALID_ARGUMENT);
    EXPECT(vc_sframe_add_receive_key(NULL, 4, 1, key, 16), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_add_receive_key(ctx, 4, 1, NULL, 16), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_add_receive_key(ctx, 5, 1, key, 0), VC_RESULT_INVALID_ARGUMENT);
    EXPECT(vc_sframe_add_receive_key(ctx, 3, 1, key, 16), VC_RESULT_INVALID_ARGUMENT);
    EXPECT(vc_sframe_add_receive_key(ctx, 0xffff, 1, key, 16), VC_RESULT_INVALID_ARGUMENT);
    EXPECT(vc_sframe_remove_send_key(NULL, 1), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_retire_receive_key(NULL, 1, 10), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_add_send_key(ctx, 4, 1, key, 16), VC_RESULT_OK);
    EXPECT(vc_sframe_encrypt(NULL, 1, NULL, 0, buf, 1, buf, 64, &n), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_encrypt(ctx, 1, NULL, 5, buf, 1, buf + 8, 32, &n), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_encrypt(ctx, 1, NULL, 0, NULL, 1, buf, 64, &n), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_encrypt(ctx, 1, NULL, 0, buf, 1, NULL, 64, &n), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_encrypt(ctx, 1, NULL, 0, buf, 1, buf + 8, 32, NULL), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_encrypt(ctx, 1, NULL, 0, buf, 1, buf + 8, 0, &n), VC_RESULT_BUFFER_TOO_SMALL);
    EXPECT(vc_sframe_decrypt(NULL, NULL, 0, buf, 20, buf, 64, &n, NULL), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_decrypt(ctx, NULL, 0, NULL, 20, buf, 64, &n, NULL), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_decrypt(ctx, NULL, 0, buf, 20, NULL, 64, &n, NULL), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_decrypt(ctx, NULL, 0, buf, 20, buf + 32, 32, NULL, NULL), VC_RESULT_NULL_PARAMETER);
    EXPECT(vc_sframe_decrypt(ctx, NULL, 6, buf, 20, buf + 32, 32, &n, NULL), VC_RESULT_NULL_PARAMETER);
    /* Garbage frames: random-looking bytes of every short length. */
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 73 + 11);
    for (size_t len = 0; len <= sizeof junk; len++) {
        vc_result r = vc_sframe_decrypt(ctx, NULL, 0, junk, len, buf, sizeof buf, &n, NULL);
        CHECK(r != VC_RESULT_OK, "junk of %zu bytes accepted", len);
    }
    /* Error text: a message after a failure, the size query, truncation. */
    EXPECT(vc_sframe_add_send_key(ctx, 9, 2, key, 16), VC_RESULT_INVALID_ARGUMENT);
    size_t need = vc_last_error_message(NULL, 0);
    char text[256], tiny[8];
    CHECK(need > 0 && vc_last_error_message(text, sizeof text) == need, "error message size");
    CHECK(strstr(text, "0x0009") != NULL, "error names the suite: %s", text);
    vc_last_error_message(tiny, sizeof tiny);
    CHECK(strlen(tiny) == sizeof tiny - 1, "truncated and terminated");
    /* NULL with a length: nothing written, the size still reported; the code truncates too. */
    CHECK(vc_last_error_message(NULL, 32) == need, "NULL buffer with a length");
    char code[4];
    size_t code_len = vc_last_error_code(code, sizeof code);
    CHECK(code_len == strlen("invalid_argument") && strcmp(code, "inv") == 0, "code truncated: %s", code);
    CHECK(vc_last_error_code(NULL, 16) == code_len, "NULL code buffer with a length");
    EXPECT(vc_sframe_remove_send_key(ctx, 1), VC_RESULT_OK);
    CHECK(vc_last_error_message(NULL, 0) == 0, "cleared after success");
    CHECK(strcmp(vc_result_message(VC_RESULT_REPLAY), "replayed or too old frame") == 0, "text");
    CHECK(strlen(vc_version()) >= 5, "version");
    vc_sframe_context_free(ctx);
}

int main(void) {
    round_trips(VC_SFRAME_SUITE_AES_128_GCM_SHA256_128, 16);
    round_trips(VC_SFRAME_SUITE_AES_256_GCM_SHA512_128, 32);
    bad_arguments();
    if (failures) {
        fprintf(stderr, "sframe_test: %d failures\n", failures);
        return 1;
    }
    printf("sframe_test: ok (libvcsdk %s)\n", vc_version());
    return 0;
}
