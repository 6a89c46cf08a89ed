// drivelog_fuzz.h: what the two drive-log harnesses share: where a shard's
// dataset bytes lie in the file, and reading a shard the way `distil logs
// validate` does (every sample, cameras included, every text, the vocab).
#pragma once
#include <hdf5.h>
#include "data/drivelog.h"      // defines: dl_shard_open, dl_read_sample, dl_read_text
#include "fuzz/fuzz.h"

// One stretch of a file that holds a dataset's stored bytes (a chunk, or a
// contiguous dataset's data).
typedef struct Extent { uint64_t offset, bytes; } Extent;

typedef struct Extents { Extent *v; int n, cap; } Extents;

static inline void extents_add(Extents *e, uint64_t offset, uint64_t bytes) {
    if (!bytes || offset == HADDR_UNDEF) return;
    if (e->n == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 64;
        e->v = realloc(e->v, sizeof *e->v * (size_t)e->cap);
        if (!e->v) abort();
    }
    e->v[e->n++] = (Extent){ offset, bytes };
}

// Datasets of a variable-length type store references into the global heap,
// not values: those belong with the metadata (the file harness), not here.
static inline herr_t add_dataset_extents(hid_t root, const char *name, const H5O_info_t *info, void *ctx) {
    if (info->type != H5O_TYPE_DATASET) return 0;
    Extents *e = ctx;
    hid_t d = H5Dopen2(root, name, H5P_DEFAULT), t = H5Dget_type(d), plist = H5Dget_create_plist(d);
    int variable = H5Tis_variable_str(t) > 0 || H5Tget_class(t) == H5T_VLEN;
    H5D_layout_t layout = H5Pget_layout(plist);
    if (!variable && layout == H5D_CONTIGUOUS) {
        extents_add(e, H5Dget_offset(d), H5Dget_storage_size(d));
    } else if (!variable && layout == H5D_CHUNKED) {
        hsize_t n = 0;
        hid_t space = H5Dget_space(d);   // HDF5 1.10 takes no H5S_ALL here
        H5Dget_num_chunks(d, space, &n);
        for (hsize_t i = 0; i < n; i++) {
            hsize_t coords[H5S_MAX_RANK];
            unsigned mask;
            haddr_t addr;
            hsize_t size;
            if (H5Dget_chunk_info(d, space, i, coords, &mask, &addr, &size) >= 0) extents_add(e, addr, size);
        }
        H5Sclose(space);
    }
    H5Pclose(plist);
    H5Tclose(t);
    H5Dclose(d);
    return 0;
}

static inline int by_offset(const void *a, const void *b) {
    uint64_t x = ((const Extent *)a)->offset, y = ((const Extent *)b)->offset;
    return (x > y) - (x < y);
}

// The dataset bytes of a well-formed shard, sorted by offset.
static inline Extents shard_extents(const char *path) {
    Extents e = { 0 };
    char err[DL_ERR_LEN];
    DlShard sh;
    if (dl_shard_open(&sh, path, err, sizeof err)) { fprintf(stderr, "fuzz: seed shard %s: %s\n", path, err); abort(); }
    dl_shard_close(&sh);   // registers the zstd filter, and proves the seed is good
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, add_dataset_extents, &e, H5O_INFO_BASIC);
    H5Fclose(f);
    qsort(e.v, (size_t)e.n, sizeof *e.v, by_offset);
    return e;
}

// What `distil logs validate` does with a shard, plus the texts and a
// vocabulary comparison. Bad input must come back as error lines.
static inline void read_whole_shard(DlShard *sh) {
    size_t frame_bytes = 0;
    for (int c = 0; c < sh->n_cameras; c++) frame_bytes += (size_t)sh->frames[c] * (size_t)sh->height[c] * (size_t)sh->width[c] * 3;
    uint8_t *frames = malloc(frame_bytes ? frame_bytes : 1);
    DlReader *rd = dl_reader_new();
    char err[DL_ERR_LEN], text[256];
    if (frames && rd) {
        DlSampleDst dst = { .frames = frames };
        for (int64_t n = 0; n < sh->n; n++) {
            DlSampleInfo info;
            dl_read_sample(sh, rd, n, &dst, &info, err, sizeof err);
            dl_read_text(sh, n, text, sizeof text, err, sizeof err);
        }
    }
    dl_shard_agree(sh, sh, err, sizeof err);
    dl_reader_free(rd);
    free(frames);
}
