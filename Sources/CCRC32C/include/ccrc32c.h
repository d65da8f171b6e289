// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, init 0xFFFFFFFF, final xor 0xFFFFFFFF.
//
// Two implementations with the same contract: the CPU's CRC instruction (SSE4.2 `crc32` on
// x86-64, the ARMv8 CRC extension on arm64) and a portable slicing-by-8 table. The caller
// chooses at run time with `ccrc32c_hardware_available()`, so one binary runs everywhere.
//
// Every function takes and returns the *raw* register value (no pre/post inversion): start
// from 0xFFFFFFFF, feed any number of pieces, and xor the result with 0xFFFFFFFF at the end.
// This lets a caller compute a CRC over non-contiguous pieces without copying them.
#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when this CPU has a CRC-32C instruction that `ccrc32c_update_hardware` uses, else 0.
int ccrc32c_hardware_available(void);

/// Updates a raw CRC-32C register with `length` bytes using the CPU instruction.
/// Only call it when `ccrc32c_hardware_available()` returned 1.
uint32_t ccrc32c_update_hardware(uint32_t crc, const void *bytes, size_t length);

/// Updates a raw CRC-32C register with `length` bytes using the portable table.
uint32_t ccrc32c_update_portable(uint32_t crc, const void *bytes, size_t length);

/// Updates a raw CRC-32C register with the fastest implementation this CPU has.
/// The choice is made once, on first use, and is thread-safe.
uint32_t ccrc32c_update(uint32_t crc, const void *bytes, size_t length);

/// Checks both CRCs of a complete protocol v1 frame in one call: the header CRC (bytes 0–11
/// against the u32 at 12) and the payload CRC (the `payload_length` bytes at 16 against the u32
/// after them). With `hardware` set (only where `ccrc32c_hardware_available()`), the two CRC
/// chains run interleaved, hiding the instruction's latency. Returns a bit mask: bit 0 set = the
/// header CRC does not match, bit 1 set = the payload CRC does not match.
unsigned ccrc32c_check_frame(const void *frame, size_t payload_length, int hardware);

/// Checks only the header CRC of a frame whose header (16 bytes) is present. 1 if it matches.
int ccrc32c_check_header(const void *frame, int hardware);

#ifdef __cplusplus
}
#endif

#endif
