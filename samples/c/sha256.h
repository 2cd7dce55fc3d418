/* SHA-256 (FIPS 180-4) for the sample's file check: one call over a whole buffer. */
#ifndef VC_SAMPLE_SHA256_H
#define VC_SAMPLE_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* Writes the SHA-256 of `len` bytes at `data` into `out` (32 bytes). */
void sha256(const uint8_t *data, size_t len, uint8_t out[32]);

#endif
