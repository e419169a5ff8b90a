#ifndef COFFER_CRC32C_H
#define COFFER_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and RocksDB.
/// `crc` is the value returned by a previous call (0 to start); the result is final (already inverted),
/// so `coffer_crc32c(coffer_crc32c(0, a, n), b, m)` equals the CRC of `a` followed by `b`.
/// Uses the SSE4.2 or ARMv8 CRC32 instructions when the CPU has them, a table otherwise.
uint32_t coffer_crc32c(uint32_t crc, const void *data, size_t length);

/// The portable table implementation, exposed so tests can check it against the hardware path.
uint32_t coffer_crc32c_portable(uint32_t crc, const void *data, size_t length);

/// 1 when `coffer_crc32c` uses a hardware instruction on this CPU.
int coffer_crc32c_is_hardware(void);

#endif
