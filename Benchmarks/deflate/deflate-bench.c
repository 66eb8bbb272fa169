// Deflate libraries on real request bodies: zlib, libdeflate (whole-buffer API) and ISA-L igzip, all
// producing gzip members. For each library and level: input MB per CPU-second (CLOCK_PROCESS_CPUTIME_ID,
// so a shared machine's steal and waits do not count) and the compressed size as a share of the input.
// Every output is checked by inflating it with zlib and comparing with the input.
//
//   cc -O2 deflate-bench.c -lz -ldeflate -lisal -o deflate-bench && ./deflate-bench body-*.ndjson
#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

typedef struct { unsigned char *data; size_t size; } Buf;

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static size_t zlib_gzip(int level, const Buf *in, unsigned char *out, size_t cap) {
    static z_stream s;
    static int ready = -100;
    if (ready != level) {
        if (ready != -100) deflateEnd(&s);
        memset(&s, 0, sizeof s);
        if (deflateInit2(&s, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
        ready = level;
    }
    deflateReset(&s);
    s.next_in = in->data; s.avail_in = (uInt)in->size;
    s.next_out = out; s.avail_out = (uInt)cap;
    if (deflate(&s, Z_FINISH) != Z_STREAM_END) abort();
    return cap - s.avail_out;
}

static size_t libdeflate_gzip(int level, const Buf *in, unsigned char *out, size_t cap) {
    static struct libdeflate_compressor *c;
    static int ready = -1;
    if (ready != level) {
        if (c) libdeflate_free_compressor(c);
        c = libdeflate_alloc_compressor(level);
        if (!c) abort();
        ready = level;
    }
    size_t n = libdeflate_gzip_compress(c, in->data, in->size, out, cap);
    if (n == 0) abort();
    return n;
}

static size_t isal_gzip(int level, const Buf *in, unsigned char *out, size_t cap) {
    static struct isal_zstream s;
    static unsigned char *level_buf;
    static const uint32_t sizes[] = {ISAL_DEF_LVL0_DEFAULT, ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT,
                                     ISAL_DEF_LVL3_DEFAULT};
    if (!level_buf) level_buf = malloc(ISAL_DEF_LVL3_DEFAULT);
    isal_deflate_init(&s);
    s.level = level;
    s.level_buf = level_buf;
    s.level_buf_size = sizes[level];
    s.gzip_flag = IGZIP_GZIP;
    s.end_of_stream = 1;
    s.flush = NO_FLUSH;
    s.next_in = in->data; s.avail_in = (uint32_t)in->size;
    s.next_out = out; s.avail_out = (uint32_t)cap;
    if (isal_deflate(&s) != COMP_OK || s.internal_state.state != ZSTATE_END) abort();
    return cap - s.avail_out;
}

static void check(const unsigned char *gz, size_t n, const Buf *in, unsigned char *scratch) {
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, 15 + 16) != Z_OK) abort();
    s.next_in = (unsigned char *)gz; s.avail_in = (uInt)n;
    s.next_out = scratch; s.avail_out = (uInt)in->size + 1;
    int rc = inflate(&s, Z_FINISH);
    if (rc != Z_STREAM_END || s.total_out != in->size || memcmp(scratch, in->data, in->size) != 0) {
        fprintf(stderr, "round trip failed (rc %d)\n", rc);
        exit(1);
    }
    inflateEnd(&s);
}

typedef size_t (*Fn)(int, const Buf *, unsigned char *, size_t);

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s BODY...\n", argv[0]); return 2; }
    int nb = argc - 1;
    Buf *bodies = calloc(nb, sizeof *bodies);
    size_t total = 0, biggest = 0;
    for (int i = 0; i < nb; i++) {
        FILE *f = fopen(argv[i + 1], "rb");
        if (!f) { perror(argv[i + 1]); return 1; }
        fseek(f, 0, SEEK_END);
        bodies[i].size = ftell(f);
        fseek(f, 0, SEEK_SET);
        bodies[i].data = malloc(bodies[i].size);
        if (fread(bodies[i].data, 1, bodies[i].size, f) != bodies[i].size) return 1;
        fclose(f);
        total += bodies[i].size;
        if (bodies[i].size > biggest) biggest = bodies[i].size;
    }
    size_t cap = biggest + biggest / 8 + 4096;
    unsigned char *out = malloc(cap), *scratch = malloc(biggest + 1);
    printf("%d bodies, %.2f MB, %.0f KiB on average\n\n", nb, total / 1e6, total / 1024.0 / nb);
    printf("| library | level | MB/s (input, per CPU-s) | output / input |\n| --- | --- | --- | --- |\n");
    struct { const char *name; Fn fn; int levels[8]; } libs[] = {
        {"zlib", zlib_gzip, {1, 3, 6, -1}},
        {"libdeflate", libdeflate_gzip, {1, 4, 5, 6, 9, -1}},
        {"isa-l igzip", isal_gzip, {0, 1, 2, 3, -1}},
    };
    for (size_t l = 0; l < sizeof libs / sizeof libs[0]; l++) {
        for (int k = 0; libs[l].levels[k] >= 0; k++) {
            int level = libs[l].levels[k];
            size_t outsz = 0;
            for (int i = 0; i < nb; i++) {  // one checked pass, which also warms up
                size_t n = libs[l].fn(level, &bodies[i], out, cap);
                check(out, n, &bodies[i], scratch);
                outsz += n;
            }
            double t0 = cpu_now(), t;
            size_t done = 0;
            do {  // at least 1 CPU-second of whole passes
                for (int i = 0; i < nb; i++) libs[l].fn(level, &bodies[i], out, cap);
                done += total;
                t = cpu_now() - t0;
            } while (t < 1.0);
            printf("| %s | %d | %.0f | %.3f |\n", libs[l].name, level, done / 1e6 / t, (double)outsz / total);
            fflush(stdout);
        }
    }
    return 0;
}
