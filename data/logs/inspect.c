// inspect.c: `distil logs inspect FILE [--sample N]`: what a shard holds,
// as HDF5 sees it (attributes, datasets, dtypes, shapes, chunks, filters,
// sizes), then the sample count and one sample's trace as text.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/logs/cmds.h"     // defines: logs_parse_int, logs_option_value
#include "data/drivelog.h"      // defines: dl_shard_open, dl_read_sample, dl_type_name, dl_filter_name
#include "data/wall.h"          // defines: dl_wall_run, dl_wall_at

static void print_value_of_attr(hid_t a) {
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t npoints = H5Sget_simple_extent_npoints(sp);
    H5T_class_t cls = H5Tget_class(t);
    char tname[64];
    dl_type_name(t, tname, sizeof tname);
    if (npoints != 1) {
        printf("(%s, %lld values)", tname, (long long)npoints);
    } else if (cls == H5T_INTEGER) {
        long long v = 0;
        if (H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0) printf("%lld", v);
        printf("  (%s)", tname);
    } else if (cls == H5T_FLOAT) {
        double v = 0;
        if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0) printf("%g", v);
        printf("  (%s)", tname);
    } else if (cls == H5T_STRING) {
        hid_t m = H5Tcopy(H5T_C_S1);
        H5Tset_cset(m, H5Tget_cset(t));
        if (H5Tis_variable_str(t) > 0) {
            char *s = NULL;
            H5Tset_size(m, H5T_VARIABLE);
            if (H5Aread(a, m, &s) >= 0) printf("\"%s\"  (variable-length string)", s ? s : "");
            if (s) H5free_memory(s);
        } else {
            size_t size = H5Tget_size(t);
            char *s = calloc(1, size + 1);
            H5Tset_size(m, size + 1);
            H5Tset_strpad(m, H5T_STR_NULLTERM);
            if (s && H5Aread(a, m, s) >= 0) printf("\"%s\"  (fixed-length string of %zu)", s, size);
            free(s);
        }
        H5Tclose(m);
    } else {
        printf("(%s)", tname);
    }
    H5Sclose(sp);
    H5Tclose(t);
}

static herr_t print_attr(hid_t loc, const char *name, const H5A_info_t *info, void *indent) {
    (void)info;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return 0;
    printf("%s%s = ", (const char *)indent, name);
    print_value_of_attr(a);
    printf("\n");
    H5Aclose(a);
    return 0;
}

static void human_bytes(double b, char *buf, size_t len) {
    const char *unit[] = { "B", "KB", "MB", "GB", "TB" };
    int u = 0;
    while (b >= 1000 && u < 4) { b /= 1000; u++; }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

static void print_dataset(hid_t d, const char *name) {
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[32];
    char tname[64], shape[160] = "[", layout[160] = "contiguous", filters[160] = "";
    dl_type_name(t, tname, sizeof tname);
    if (rank < 0 || rank > 32) rank = 0;
    H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int i = 0; i < rank; i++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    strcat(shape, "]");
    H5D_layout_t lay = H5Pget_layout(dcpl);
    if (lay == H5D_COMPACT) snprintf(layout, sizeof layout, "compact");
    if (lay == H5D_CHUNKED) {
        hsize_t chunk[32];
        int cr = H5Pget_chunk(dcpl, 32, chunk);
        snprintf(layout, sizeof layout, "chunks [");
        for (int i = 0; i < cr; i++)
            snprintf(layout + strlen(layout), sizeof layout - strlen(layout), "%s%llu", i ? ", " : "", (unsigned long long)chunk[i]);
        strcat(layout, "]");
    }
    int nf = H5Pget_nfilters(dcpl);
    for (int i = 0; i < nf; i++) {
        unsigned flags, cd[8], config;
        size_t n_cd = 8;
        char fname[64], hname[64];
        int id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &n_cd, cd, sizeof hname, hname, &config);
        dl_filter_name(id, fname, sizeof fname);
        size_t used = strlen(filters);
        snprintf(filters + used, sizeof filters - used, "%s%s", used ? " + " : "", fname);
        if ((id == 1 || id == 32015) && n_cd >= 1) snprintf(filters + strlen(filters), sizeof filters - strlen(filters), "(%u)", cd[0]);
    }
    double logical = (double)H5Sget_simple_extent_npoints(sp) * (double)H5Tget_size(t);
    double stored = (double)H5Dget_storage_size(d);
    char ls[32], ss[32];
    human_bytes(logical, ls, sizeof ls);
    human_bytes(stored, ss, sizeof ss);
    printf("  /%-28s %-9s %-22s %-24s %-12s", name, tname, shape, layout, nf ? filters : "no filter");
    if (H5Tis_variable_str(t) > 0) printf(" %s stored\n", ss);
    else if (stored > 0 && logical > 0) printf(" %s -> %s (%.2fx)\n", ls, ss, logical / stored);
    else printf(" %s -> %s%s\n", ls, ss, stored > 0 ? "" : " (nothing written)");
    H5Aiterate2(d, H5_INDEX_NAME, H5_ITER_INC, NULL, print_attr, "      attribute ");
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(t);
}

static herr_t visit(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info; (void)data;
    char where[200];
    snprintf(where, sizeof where, "/%s", name);
    dl_wall_at(where);
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) { printf("  /%s (cannot open)\n", name); return 0; }
    if (H5Iget_type(o) == H5I_DATASET) print_dataset(o, name);
    H5Oclose(o);
    return 0;
}

// The file as HDF5 sees it, whether or not it follows the contract.
static int print_structure(const char *path) {
    dl_hdf5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        dl_hdf5_unlock();
        return -1;
    }
    hsize_t size = 0;
    H5Fget_filesize(f, &size);
    char hs[32];
    human_bytes((double)size, hs, sizeof hs);
    printf("%s: HDF5, %s\nattributes:\n", path, hs);
    dl_wall_at("the root attributes");
    H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, print_attr, "  ");
    printf("datasets:\n");
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, visit, NULL);
    H5Fclose(f);
    dl_hdf5_unlock();
    return 0;
}

// print_structure behind the wall (data/wall.h): every object and attribute
// of the file, the ones distil does not read included, goes through libhdf5.
static int structure_child(void *path, char *err, size_t errlen) {
    if (print_structure(path) == 0) return 0;
    snprintf(err, errlen, "%s: not an HDF5 file", (const char *)path);
    return -1;
}

static int print_sample(const DlShard *sh, int64_t n) {
    static const char *commands[] = { "follow", "turn left", "straight", "turn right" };
    DlReader *rd = dl_reader_new();
    int64_t len = sh->offsets[n + 1] - sh->offsets[n];
    if (len < 0) len = 0;
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)(len + 1));
    DlSampleDst dst = { .tokens = tokens, .max_tokens = (int)len };
    DlSampleInfo info;
    char err[DL_ERR_LEN];
    int rc = rd && tokens ? dl_read_sample(sh, rd, n, &dst, &info, err, sizeof err) : -1;
    if (rc != DL_OK) {
        fprintf(stderr, "distil: error: %s\n", rc < 0 ? "out of memory" : err);
    } else {
        printf("sample %lld: clip_id %lld, t0 %.3f s, command %s, trace of %lld tokens at temperature %g:\n", (long long)n,
               (long long)info.clip_id, (double)info.t0_us * 1e-6, info.has_command ? commands[info.command] : "(none)",
               (long long)info.trace_len, info.temperature);
        printf("  ");
        for (int i = 0; i < info.n_tokens; i++) printf("%s%s", i ? " " : "", sh->vocab[tokens[i]]);
        printf("\n");
        char text[4096];
        if (dl_read_text(sh, n, text, sizeof text, err, sizeof err) == 0 && text[0]) printf("text:\n  %s\n", text);
    }
    free(tokens);
    dl_reader_free(rd);
    return rc == DL_OK ? 0 : -1;
}

int logs_inspect_main(int argc, char **argv) {
    const char *path = NULL;
    long long sample = 0;
    for (int i = 0; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: distil logs inspect FILE [--sample N]\n");
            return 0;
        } else if (!strcmp(argv[i], "--sample")) {
            if (!(v = logs_option_value("inspect", argc, argv, &i)) || logs_parse_int("inspect", "--sample", v, 0, 1ll << 60, &sample))
                return 2;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "distil: error: logs inspect: unexpected '%s'; usage: distil logs inspect FILE [--sample N]\n", argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) { fprintf(stderr, "distil: error: logs inspect: no FILE given; usage: distil logs inspect FILE [--sample N]\n"); return 2; }
    DlShard sh;
    char err[DL_ERR_LEN];
    int open_rc = dl_shard_open(&sh, path, err, sizeof err);   // first: it registers zstd and names what is wrong
    char werr[DL_ERR_LEN];
    if (dl_wall_run(path, structure_child, (void *)path, NULL, werr, sizeof werr)) {
        fprintf(stderr, "distil: error: %s\n", open_rc ? err : werr);
        dl_shard_close(&sh);
        return 2;
    }
    if (open_rc) {
        fprintf(stderr, "distil: error: %s\n", err);
        dl_shard_close(&sh);
        return 2;
    }
    printf("drive-log v%lld: %lld samples, %d camera%s (%s), Th %d, T %d at %g Hz, K %d, k %d, D %d, V %lld, %lld trace tokens\n",
           (long long)sh.version, (long long)sh.n, sh.n_cameras, sh.n_cameras == 1 ? "" : "s", sh.cameras, sh.Th, sh.T, sh.hz,
           sh.K, sh.k, sh.D, (long long)sh.V, (long long)sh.M);
    int rc = 0;
    if (sh.n == 0) printf("no samples\n");
    else if (sample >= sh.n) { fprintf(stderr, "distil: error: %s: --sample %lld, but the shard has %lld samples\n", path, sample, (long long)sh.n); rc = 2; }
    else if (print_sample(&sh, sample)) rc = 2;
    dl_shard_close(&sh);
    return rc;
}
