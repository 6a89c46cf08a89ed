// zero_ckpt.c: ZeRO-1 checkpoints, one shard of AdamW's moments per rank
// (see dist.h).
//
// zero1-rank-R-of-W.bin, little-endian (x86-64's own order):
//   "DSTLZRO1"                     8 bytes
//   version u32 (1), rank u32, world u32, pad u32
//   grad_numel u64, lo u64, n u64  the shard is flat indices [lo, lo + n)
//   adam_step u64                  AdamW updates taken
//   m f32[n], v f32[n]
//   crc32 u32                      zlib's CRC-32 of every byte before it
// Uncompressed: moments are dense floats that zstd barely shrinks, and each
// rank writes its own file in parallel with the others.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>                 // defines: crc32
#include "kernels/backend.h"      // defines: backend_to_host, backend_from_host
#include "train/dist/dist.h"
#include "train/formats/fsutil.h"        // defines: fs_fsync

#define ZERO_MAGIC "DSTLZRO1"
#define ZERO_VERSION 1u
#define ZERO_HEADER_BYTES 56

typedef struct ZeroHeader {
    uint32_t version, rank, world;
    uint64_t grad_numel, lo, n, adam_step;
} ZeroHeader;

static void shard_name(char *buf, size_t n, int rank, int world) {
    snprintf(buf, n, "zero1-rank-%05d-of-%05d.bin", rank, world);
}

static void staging_dir(char *buf, size_t n, const char *run_dir, long step) {
    snprintf(buf, n, "%s/checkpoints/.zero1-step_%07ld", run_dir, step);
}


static uint32_t crc_of(uint32_t crc, const void *p, size_t n) {
    const unsigned char *b = p;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, b, k);
        b += k;
        n -= k;
    }
    return crc;
}

static void encode_header(unsigned char *h, const ZeroHeader *z) {
    uint32_t pad = 0;
    memcpy(h, ZERO_MAGIC, 8);
    memcpy(h + 8, &z->version, 4); memcpy(h + 12, &z->rank, 4); memcpy(h + 16, &z->world, 4); memcpy(h + 20, &pad, 4);
    memcpy(h + 24, &z->grad_numel, 8); memcpy(h + 32, &z->lo, 8); memcpy(h + 40, &z->n, 8); memcpy(h + 48, &z->adam_step, 8);
}

// Host copies of the moments (they live on the graph's device).
static int moments_to_host(const AdamW *opt, float **m, float **v) {
    size_t bytes = (opt->n ? opt->n : 1) * sizeof(float);
    *m = malloc(bytes);
    *v = malloc(bytes);
    if (!*m || !*v) { free(*m); free(*v); return -1; }
    backend_to_host(opt->device, *m, opt->m, opt->n * sizeof(float));
    backend_to_host(opt->device, *v, opt->v, opt->n * sizeof(float));
    return 0;
}

static int write_shard(const char *path, const AdamW *opt, const Graph *g, char *err, size_t errlen) {
    const Dist *d = dist_world();
    ZeroHeader z = { ZERO_VERSION, (uint32_t)d->rank, (uint32_t)d->world, g->grad_numel, opt->lo, opt->n, (uint64_t)opt->step };
    unsigned char h[ZERO_HEADER_BYTES];
    encode_header(h, &z);
    float *m, *v;
    if (moments_to_host(opt, &m, &v)) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
    uint32_t crc = crc_of(0, h, sizeof h);
    crc = crc_of(crc, m, opt->n * sizeof(float));
    crc = crc_of(crc, v, opt->n * sizeof(float));
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int bad = !f;
    if (f) {
        bad = fwrite(h, 1, sizeof h, f) != sizeof h || fwrite(m, sizeof(float), opt->n, f) != opt->n ||
              fwrite(v, sizeof(float), opt->n, f) != opt->n || fwrite(&crc, 4, 1, f) != 1 || fflush(f) || fsync(fileno(f));
        if (fclose(f)) bad = 1;
    }
    free(m); free(v);
    if (bad || rename(tmp, path)) {
        snprintf(err, errlen, "%s: cannot write this rank's optimizer shard: %s (disk full?)", path, strerror(errno ? errno : EIO));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int dist_zero_stage(const AdamW *opt, const Graph *g, const char *run_dir, long step, char *err, size_t errlen) {
    char dir[1100], path[1200], name[64];
    snprintf(path, sizeof path, "%s/checkpoints", run_dir);
    staging_dir(dir, sizeof dir, run_dir, step);
    if ((mkdir(path, 0777) && errno != EEXIST) || (mkdir(dir, 0777) && errno != EEXIST)) {
        snprintf(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    const Dist *d = dist_world();
    shard_name(name, sizeof name, d->rank, d->world);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = write_shard(path, opt, g, err, errlen);
    if (!rc && fs_fsync(dir, 1)) { snprintf(err, errlen, "%s: fsync: %s", dir, strerror(errno)); rc = -1; }
    // A rank that failed exits with status 2, which ends the job: the
    // others never wait here forever.
    if (rc) return rc;
    dist_barrier("checkpoint shards");
    return 0;
}

int dist_zero_adopt(const char *run_dir, long step, const char *tmp, char *err, size_t errlen) {
    char dir[1100], from[1200], to[1200], name[64];
    staging_dir(dir, sizeof dir, run_dir, step);
    const Dist *d = dist_world();
    for (int r = 0; r < d->world; r++) {
        shard_name(name, sizeof name, r, d->world);
        snprintf(from, sizeof from, "%s/%s", dir, name);
        snprintf(to, sizeof to, "%s/%s", tmp, name);
        if (rename(from, to)) {
            snprintf(err, errlen, "%s: rank %d's optimizer shard is missing: %s", from, r, strerror(errno));
            return -1;
        }
    }
    if (fs_fsync(tmp, 1)) { snprintf(err, errlen, "%s: fsync: %s", tmp, strerror(errno)); return -1; }
    rmdir(dir);
    return 0;
}

int dist_zero_in_checkpoint(const char *dir) {
    char path[1200], name[64];
    shard_name(name, sizeof name, 0, dist_world()->world);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, F_OK) == 0) return 1;
    // Written at another world size: any rank-0 shard counts.
    snprintf(path, sizeof path, "%s/zero1-rank-00000-of-00001.bin", dir);
    return access(path, F_OK) == 0;
}

static int read_all(const char *path, unsigned char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    struct stat st;
    if (fstat(fileno(f), &st)) { fclose(f); return -1; }
    *len = (size_t)st.st_size;
    *out = malloc(*len ? *len : 1);
    int bad = !*out || fread(*out, 1, *len, f) != *len;
    fclose(f);
    if (bad) { free(*out); return -1; }
    return 0;
}

int dist_zero_load(AdamW *opt, const Graph *g, const char *dir, char *err, size_t errlen) {
    const Dist *d = dist_world();
    char path[1200], name[64];
    shard_name(name, sizeof name, d->rank, d->world);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unsigned char *b;
    size_t len;
    if (read_all(path, &b, &len)) {
        snprintf(err, errlen, "%s: cannot read rank %d's optimizer shard: %s (ZeRO-1 resumes at the world size it was "
                 "written with, with dist.zero: 1)", path, d->rank, strerror(errno));
        return -1;
    }
    ZeroHeader z;
    int rc = -1;
    if (len < ZERO_HEADER_BYTES + 4 || memcmp(b, ZERO_MAGIC, 8)) { snprintf(err, errlen, "%s: not a ZeRO-1 shard", path); goto done; }
    memcpy(&z.version, b + 8, 4); memcpy(&z.rank, b + 12, 4); memcpy(&z.world, b + 16, 4);
    memcpy(&z.grad_numel, b + 24, 8); memcpy(&z.lo, b + 32, 8); memcpy(&z.n, b + 40, 8); memcpy(&z.adam_step, b + 48, 8);
    if (z.version != ZERO_VERSION) { snprintf(err, errlen, "%s: shard format version %u; this distil reads %u", path, z.version, ZERO_VERSION); goto done; }
    if (len != ZERO_HEADER_BYTES + 2 * z.n * sizeof(float) + 4) { snprintf(err, errlen, "%s: truncated (%zu bytes)", path, len); goto done; }
    uint32_t crc;
    memcpy(&crc, b + len - 4, 4);
    if (crc != crc_of(0, b, len - 4)) { snprintf(err, errlen, "%s: checksum mismatch: the shard is corrupt", path); goto done; }
    if ((int)z.rank != d->rank || (int)z.world != d->world || z.grad_numel != g->grad_numel || z.lo != opt->lo || z.n != opt->n) {
        snprintf(err, errlen, "%s: a shard of [%llu, %llu) of %llu for rank %u of %u, and this is rank %d of %d holding [%zu, %zu) "
                 "of %zu; resume at the same world size", path, (unsigned long long)z.lo, (unsigned long long)(z.lo + z.n),
                 (unsigned long long)z.grad_numel, z.rank, z.world, d->rank, d->world, opt->lo, opt->lo + opt->n, g->grad_numel);
        goto done;
    }
    backend_from_host(opt->device, opt->m, b + ZERO_HEADER_BYTES, z.n * sizeof(float));
    backend_from_host(opt->device, opt->v, b + ZERO_HEADER_BYTES + z.n * sizeof(float), z.n * sizeof(float));
    opt->step = (long)z.adam_step;
    rc = 0;
done:
    free(b);
    return rc;
}
