/* Builds against an installed libvcsdk and protects one frame. */
#include <stdio.h>
#include "vcsdk.h"

int main(void) {
    vc_sframe_context *ctx = NULL;
    uint8_t key[16] = {1}, out[64];
    size_t n = 0;
    if (vc_sframe_context_new(&ctx) != VC_RESULT_OK) return 1;
    if (vc_sframe_add_send_key(ctx, VC_SFRAME_SUITE_AES_128_GCM_SHA256_128, 1, key, 16) != VC_RESULT_OK) return 1;
    if (vc_sframe_encrypt(ctx, 1, NULL, 0, (const uint8_t *)"hi", 2, out, sizeof out, &n) != VC_RESULT_OK) return 1;
    vc_sframe_context_free(ctx);
    printf("consumer: libvcsdk %s, a %zu-byte frame\n", vc_version(), n);
    return 0;
}
