// CRC-32C in C: the CPU instruction where there is one, slicing-by-8 elsewhere.
// See include/ccrc32c.h for the contract.
#include "ccrc32c.h"

#include <string.h>

#define CRC32C_POLY 0x82F63B78u

// ---- portable: slicing-by-8. The 8 KiB of tables are built once, under pthread_once.
#include <pthread.h>

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void crc32c_build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc32c_table[0][n];
        for (int s = 1; s < 8; s++) {
            c = crc32c_table[0][c & 0xFF] ^ (c >> 8);
            crc32c_table[s][n] = c;
        }
    }
}

uint32_t ccrc32c_update_portable(uint32_t crc, const void *bytes, size_t length) {
    pthread_once(&crc32c_table_once, crc32c_build_table);
    const unsigned char *p = (const unsigned char *)bytes;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        word = __builtin_bswap64(word);
#endif
        uint32_t lo = (uint32_t)word ^ crc;
        uint32_t hi = (uint32_t)(word >> 32);
        crc = crc32c_table[7][lo & 0xFF] ^ crc32c_table[6][(lo >> 8) & 0xFF] ^
              crc32c_table[5][(lo >> 16) & 0xFF] ^ crc32c_table[4][lo >> 24] ^
              crc32c_table[3][hi & 0xFF] ^ crc32c_table[2][(hi >> 8) & 0xFF] ^
              crc32c_table[1][(hi >> 16) & 0xFF] ^ crc32c_table[0][hi >> 24];
        p += 8;
        length -= 8;
    }
    while (length--) crc = crc32c_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

// ---- hardware
#if defined(__x86_64__)
#include <nmmintrin.h>

int ccrc32c_hardware_available(void) { return __builtin_cpu_supports("sse4.2") ? 1 : 0; }

__attribute__((target("sse4.2")))
uint32_t ccrc32c_update_hardware(uint32_t crc, const void *bytes, size_t length) {
    const unsigned char *p = (const unsigned char *)bytes;
    uint64_t c = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    if (length >= 4) {
        uint32_t word;
        memcpy(&word, p, 4);
        c32 = _mm_crc32_u32(c32, word);
        p += 4;
        length -= 4;
    }
    while (length--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}

#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif

int ccrc32c_hardware_available(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) ? 1 : 0; }

__attribute__((target("+crc")))
uint32_t ccrc32c_update_hardware(uint32_t crc, const void *bytes, size_t length) {
    const unsigned char *p = (const unsigned char *)bytes;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        crc = __builtin_arm_crc32cd(crc, word);
        p += 8;
        length -= 8;
    }
    while (length--) crc = __builtin_arm_crc32cb(crc, *p++);
    return crc;
}

#else
int ccrc32c_hardware_available(void) { return 0; }
uint32_t ccrc32c_update_hardware(uint32_t crc, const void *bytes, size_t length) {
    return ccrc32c_update_portable(crc, bytes, length);
}
#endif

// ---- frame checks
static inline uint32_t load32le(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static unsigned check_frame_hardware(const unsigned char *f, size_t n) {
    // Header chain: 8 + 4 bytes. Payload chain: n bytes. Independent, so interleaved.
    uint64_t word;
    memcpy(&word, f, 8);
    uint32_t hw;
    memcpy(&hw, f + 8, 4);
    uint64_t h = _mm_crc32_u64(0xFFFFFFFFu, word);
    const unsigned char *p = f + 16;
    uint64_t c = 0xFFFFFFFFu;
    size_t left = n;
    if (left >= 8) {
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        left -= 8;
    }
    h = _mm_crc32_u32((uint32_t)h, hw);
    while (left >= 8) {
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        left -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    if (left >= 4) {
        uint32_t w4;
        memcpy(&w4, p, 4);
        c32 = _mm_crc32_u32(c32, w4);
        p += 4;
        left -= 4;
    }
    while (left--) c32 = _mm_crc32_u8(c32, *p++);
    unsigned result = 0;
    if (((uint32_t)h ^ 0xFFFFFFFFu) != load32le(f + 12)) result |= 1;
    if ((c32 ^ 0xFFFFFFFFu) != load32le(f + 16 + n)) result |= 2;
    return result;
}
#endif

unsigned ccrc32c_check_frame(const void *frame, size_t payload_length, int hardware) {
    const unsigned char *f = (const unsigned char *)frame;
#if defined(__x86_64__)
    if (hardware) return check_frame_hardware(f, payload_length);
#endif
    uint32_t (*update)(uint32_t, const void *, size_t) = hardware ? ccrc32c_update_hardware : ccrc32c_update_portable;
    unsigned result = 0;
    if ((update(0xFFFFFFFFu, f, 12) ^ 0xFFFFFFFFu) != load32le(f + 12)) result |= 1;
    if ((update(0xFFFFFFFFu, f + 16, payload_length) ^ 0xFFFFFFFFu) != load32le(f + 16 + payload_length)) result |= 2;
    return result;
}

int ccrc32c_check_header(const void *frame, int hardware) {
    const unsigned char *f = (const unsigned char *)frame;
    uint32_t crc = hardware ? ccrc32c_update_hardware(0xFFFFFFFFu, f, 12) : ccrc32c_update_portable(0xFFFFFFFFu, f, 12);
    return (crc ^ 0xFFFFFFFFu) == load32le(f + 12);
}

// ---- dispatch: 0 = not decided, 1 = portable, 2 = hardware. Racing first callers all store the
// same answer.
static volatile int crc32c_choice = 0;

uint32_t ccrc32c_update(uint32_t crc, const void *bytes, size_t length) {
    int choice = __atomic_load_n(&crc32c_choice, __ATOMIC_RELAXED);
    if (choice == 0) {
        choice = ccrc32c_hardware_available() ? 2 : 1;
        __atomic_store_n(&crc32c_choice, choice, __ATOMIC_RELAXED);
    }
    return choice == 2 ? ccrc32c_update_hardware(crc, bytes, length)
                       : ccrc32c_update_portable(crc, bytes, length);
}
