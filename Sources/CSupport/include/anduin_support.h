#ifndef ANDUIN_SUPPORT_H
#define ANDUIN_SUPPORT_H
#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has the CRC32C instruction (x86-64 SSE4.2), else 0.
int anduin_crc32c_hw_available(void);

/// CRC-32C of `len` bytes continuing from `crc` (the raw register: callers pass ~previous and
/// invert the result), with the SSE4.2 instruction. Only call when anduin_crc32c_hw_available().
uint32_t anduin_crc32c_hw(uint32_t crc, const void *data, size_t len);

/// Names the calling thread (Linux keeps 15 bytes; longer names are refused, so cut first).
/// 0 on success. A no-op returning 0 where threads cannot be named.
int anduin_name_this_thread(const char *name);

#endif
