/* SFrame through the C ABI: nanoseconds per vc_sframe_encrypt / vc_sframe_decrypt of 1200-byte
 * frames, both suites. scripts/bench-c.sh runs it beside the Rust-level and raw aws-lc-rs figures
 * (sframe-floor) and prints the ratios. Usage: bench_sframe [iterations] */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vcsdk.h"

#define SIZE 1200
#define POOL 1024

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void die(vc_result r, const char *what) {
    char text[256];
    vc_last_error_message(text, sizeof text);
    fprintf(stderr, "%s: %s (%s)\n", what, vc_result_message(r), text);
    exit(1);
}

static void bench(uint16_t suite, size_t key_len, const char *name, long iterations) {
    uint8_t key[32], plain[SIZE], out[SIZE];
    static uint8_t frames[POOL][SIZE + VC_SFRAME_MAX_OVERHEAD];
    size_t lens[POOL], n = 0;
    memset(key, 3, sizeof key);
    memset(plain, 5, sizeof plain);
    vc_sframe_context *tx = NULL, *rx = NULL;
    vc_result r;
    if ((r = vc_sframe_context_new(&tx)) != VC_RESULT_OK) die(r, "new");
    if ((r = vc_sframe_add_send_key(tx, suite, 1, key, key_len)) != VC_RESULT_OK) die(r, "key");

    double start = now_ns();
    for (long i = 0; i < iterations; i++) {
        r = vc_sframe_encrypt(tx, 1, NULL, 0, plain, SIZE, frames[i % POOL], sizeof frames[0], &n);
        if (r != VC_RESULT_OK) die(r, "encrypt");
    }
    double enc = (now_ns() - start) / (double)iterations;
    for (int i = 0; i < POOL; i++) {
        r = vc_sframe_encrypt(tx, 1, NULL, 0, plain, SIZE, frames[i], sizeof frames[0], &lens[i]);
        if (r != VC_RESULT_OK) die(r, "encrypt");
    }
    double spent = 0;
    long done = 0;
    while (done < iterations) {
        /* A fresh receiver per pass over the pool (the replay window refuses repeats). */
        vc_sframe_context_free(rx);
        rx = NULL;
        if ((r = vc_sframe_context_new(&rx)) != VC_RESULT_OK) die(r, "new");
        if ((r = vc_sframe_add_receive_key(rx, suite, 1, key, key_len)) != VC_RESULT_OK) die(r, "key");
        start = now_ns();
        for (int i = 0; i < POOL && done < iterations; i++, done++) {
            r = vc_sframe_decrypt(rx, NULL, 0, frames[i], lens[i], out, sizeof out, &n, NULL);
            if (r != VC_RESULT_OK) die(r, "decrypt");
        }
        spent += now_ns() - start;
    }
    printf("c_abi %s encrypt %.1f ns decrypt %.1f ns\n", name, enc, spent / (double)iterations);
    vc_sframe_context_free(tx);
    vc_sframe_context_free(rx);
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? atol(argv[1]) : 2000000;
    if (iterations < POOL) iterations = POOL;
    bench(VC_SFRAME_SUITE_AES_128_GCM_SHA256_128, 16, "aes128gcm", iterations);
    bench(VC_SFRAME_SUITE_AES_256_GCM_SHA512_128, 32, "aes256gcm", iterations);
    return 0;
}
