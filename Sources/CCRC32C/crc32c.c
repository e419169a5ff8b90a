#include "CCRC32C.h"

#include <pthread.h>
#include <string.h>

static uint32_t table[8][256];
static int table_ready = 0;

static void build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][n] = c;
        }
    }
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t coffer_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) {
        build_table();
    }
    const uint8_t *p = (const uint8_t *)data;
    uint32_t c = ~crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        uint32_t lo = (uint32_t)word ^ c;
        uint32_t hi = (uint32_t)(word >> 32);
        c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
            table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        length -= 8;
    }
    while (length--) {
        c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    }
    return ~c;
}

/*
 * The hardware paths run three independent CRC streams over three adjacent blocks, since the instruction has a
 * latency of three cycles but a throughput of one per cycle, then combine them by "shifting" the first CRCs over the
 * following blocks with precomputed zero-byte operators (Mark Adler's method, as in zlib's crc32_combine):
 * crc(A B) = shift(crc(A), |B|) ^ crc(B) when crc(B) starts from 0 without pre-conditioning.
 */
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static uint32_t long_shift[4][256];
static uint32_t short_shift[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

static uint32_t gf2_matrix_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) {
            sum ^= *mat;
        }
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_matrix_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) {
        square[n] = gf2_matrix_times(mat, mat[n]);
    }
}

/* The operator that appends `length` zero bytes (a power of two) to a raw CRC. */
static void zeros_operator(uint32_t *even, size_t length) {
    uint32_t odd[32];
    odd[0] = 0x82F63B78u; /* one zero bit */
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_matrix_square(even, odd); /* two zero bits */
    gf2_matrix_square(odd, even); /* four zero bits */
    /* The first square gives one zero byte in even, the next two in odd, and so on while length shifts down. */
    do {
        gf2_matrix_square(even, odd);
        length >>= 1;
        if (length == 0) {
            return;
        }
        gf2_matrix_square(odd, even);
        length >>= 1;
    } while (length);
    for (int n = 0; n < 32; n++) {
        even[n] = odd[n];
    }
}

static void build_shift_table(uint32_t zeros[4][256], size_t length) {
    uint32_t op[32];
    zeros_operator(op, length);
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = gf2_matrix_times(op, n);
        zeros[1][n] = gf2_matrix_times(op, n << 8);
        zeros[2][n] = gf2_matrix_times(op, n << 16);
        zeros[3][n] = gf2_matrix_times(op, n << 24);
    }
}

static void build_shift_tables(void) {
    build_shift_table(long_shift, LONG_BLOCK);
    build_shift_table(short_shift, SHORT_BLOCK);
}

static inline uint32_t shift(uint32_t zeros[4][256], uint32_t crc) {
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

static inline uint64_t load64(const uint8_t *p) {
    uint64_t word;
    memcpy(&word, p, 8);
    return word;
}

#if defined(__x86_64__)
#define HW_TARGET __attribute__((target("sse4.2")))
#define CRC_WORD(c, w) __builtin_ia32_crc32di((c), (w))
#define CRC_BYTE(c, b) __builtin_ia32_crc32qi((uint32_t)(c), (b))
#define HAVE_HW 1
static int hw_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
#define HW_TARGET
#define CRC_WORD(c, w) __crc32cd((uint32_t)(c), (w))
#define CRC_BYTE(c, b) __crc32cb((uint32_t)(c), (b))
#define HAVE_HW 1
static int hw_available(void) { return 1; }
#endif

#ifdef HAVE_HW
/* Three streams of `block` bytes at a time while at least 3 * block bytes remain. */
#define THREE_WAY(block, table)                                                                                    \
    while (length >= 3 * (block)) {                                                                                \
        uint64_t c1 = 0, c2 = 0;                                                                                   \
        const uint8_t *end = p + (block);                                                                          \
        do {                                                                                                       \
            c0 = CRC_WORD(c0, load64(p));                                                                          \
            c1 = CRC_WORD(c1, load64(p + (block)));                                                                \
            c2 = CRC_WORD(c2, load64(p + 2 * (block)));                                                            \
            p += 8;                                                                                                \
        } while (p < end);                                                                                         \
        c0 = shift(table, (uint32_t)c0) ^ (uint32_t)c1;                                                            \
        c0 = shift(table, (uint32_t)c0) ^ (uint32_t)c2;                                                            \
        p += 2 * (block);                                                                                          \
        length -= 3 * (block);                                                                                     \
    }

HW_TARGET static uint32_t crc32c_hw(uint32_t crc, const void *data, size_t length) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t c0 = (uint32_t)~crc;
    if (length >= 3 * SHORT_BLOCK) {
        pthread_once(&shift_once, build_shift_tables);
        while (length && ((uintptr_t)p & 7) != 0) {
            c0 = CRC_BYTE(c0, *p++);
            length--;
        }
        THREE_WAY(LONG_BLOCK, long_shift)
        THREE_WAY(SHORT_BLOCK, short_shift)
    }
    while (length >= 8) {
        c0 = CRC_WORD(c0, load64(p));
        p += 8;
        length -= 8;
    }
    while (length--) {
        c0 = CRC_BYTE(c0, *p++);
    }
    return ~(uint32_t)c0;
}
#else
static uint32_t crc32c_hw(uint32_t crc, const void *data, size_t length) {
    return coffer_crc32c_portable(crc, data, length);
}

static int hw_available(void) { return 0; }
#endif

/* -1: not probed yet; 0: table; 1: instruction. */
static int use_hw = -1;

int coffer_crc32c_is_hardware(void) {
    int v = __atomic_load_n(&use_hw, __ATOMIC_RELAXED);
    if (v < 0) {
        v = hw_available() ? 1 : 0;
        __atomic_store_n(&use_hw, v, __ATOMIC_RELAXED);
    }
    return v;
}

uint32_t coffer_crc32c(uint32_t crc, const void *data, size_t length) {
    if (coffer_crc32c_is_hardware()) {
        return crc32c_hw(crc, data, length);
    }
    return coffer_crc32c_portable(crc, data, length);
}
