// Hardware CRC-32C: one instruction per 8 bytes. The disk ring checksums every record and block
// twice (write and read), so the portable table version is a visible share of a disk buffer's CPU.
#include "anduin_support.h"
#include <string.h>

#if defined(__x86_64__)
int anduin_crc32c_hw_available(void) {
    return __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2")))
uint32_t anduin_crc32c_hw(uint32_t crc, const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p);
        p++;
        len--;
    }
    return c32;
}
#else
int anduin_crc32c_hw_available(void) { return 0; }
uint32_t anduin_crc32c_hw(uint32_t crc, const void *data, size_t len) { (void)data; (void)len; return crc; }
#endif
