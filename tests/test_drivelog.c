// test_drivelog.c: the drive-log reader and loader on shards written here with
// the HDF5 C API: round trips through every storage layout, every per-sample
// rule and the main structural ones, cross-shard agreement, the rank split,
// resume, prefetch determinism, skip/error on bad samples, trace truncation,
// and the wall's child handing its parent every problem it lists.
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <hdf5.h>
#include "tests/test.h"
#include "data/drivelog.h"        // defines: dl_shard_open, dl_read_sample, dl_set_open
#include "data/drivelog_write.h"  // defines: dlw_write, dlw_value, ... (known contents)
#include "data/loader.h"          // defines: loader_open, loader_next, loader_seek
#include "data/wall.h"            // defines: dl_wall_run_listening, dl_wall_problem

static char tmpdir[64];
static unsigned long long seed;

static const char *tmp_path(const char *name) {
    static char buf[8][256];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static int write_shard(const char *path, const DlWriteSpec *s) {
    char err[DL_ERR_LEN];
    int rc = dlw_write(path, s, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    return rc;
}

// ---- reading back every field ----------------------------------------------------

// Compare every field of sample n against what the writer put there.
static int sample_matches(const DlShard *sh, DlReader *rd, const DlWriteSpec *s, int64_t n, int L) {
    size_t frame = (size_t)s->F * s->H * s->W * 3;
    uint8_t *frames = malloc(frame * (size_t)s->cams);
    float hist[64], fut[64], traj[256], w[16], emb[16];
    int32_t tokens[64], ids[64 * 8];
    float lps[64 * 8];
    DlSampleDst dst = { frames, hist, fut, traj, w, emb, tokens, ids, lps, L };
    DlSampleInfo info;
    char err[DL_ERR_LEN];
    int ok = 1;
    if (dl_read_sample(sh, rd, n, &dst, &info, err, sizeof err) != DL_OK) {
        fprintf(stderr, "  sample %lld: %s\n", (long long)n, err);
        free(frames);
        return 0;
    }
    for (int c = 0; c < s->cams && ok; c++)
        for (int f = 0; f < s->F && ok; f++)
            for (int y = 0; y < s->H && ok; y++)
                for (int x = 0; x < s->W && ok; x++)
                    for (int ch = 0; ch < 3 && ok; ch++)
                        ok = frames[c * frame + (((size_t)f * s->H + y) * s->W + x) * 3 + ch] == dlw_pixel(s, n, c, f, y, x, ch);
    if (!ok) fprintf(stderr, "  sample %lld: frames differ\n", (long long)n);
    for (int i = 0; i < s->Th * 4 && ok; i++) ok = hist[i] == dlw_value(s, DL_HISTORY, n, i);
    for (int i = 0; i < s->T * 3 && ok; i++) ok = fut[i] == (s->with_future ? dlw_value(s, DL_FUTURE, n, i) : 0.0f);
    for (int i = 0; i < s->K * s->T * 3 && ok; i++) ok = traj[i] == dlw_value(s, DL_TRAJECTORY, n, i);
    for (int i = 0; i < s->D && ok; i++) ok = emb[i] == dlw_value(s, DL_EMBEDDING, n, i);
    if (!ok) fprintf(stderr, "  sample %lld: a float field differs\n", (long long)n);
    float wsum = 0;
    for (int j = 0; j < s->K; j++) wsum += s->with_weight ? dlw_weight(s, n, j) : 1.0f;
    for (int j = 0; j < s->K && ok; j++) ok = fabsf(w[j] - (s->with_weight ? dlw_weight(s, n, j) : 1.0f) / wsum) < 1e-6f;
    if (!ok) fprintf(stderr, "  sample %lld: weights differ\n", (long long)n);
    int64_t len = dlw_trace_len(s, n);
    ok = ok && info.trace_len == len && info.n_tokens == (len < L ? len : L);
    for (int t = 0; t < info.n_tokens && ok; t++) {
        ok = tokens[t] == dlw_token(s, n, t);
        for (int j = 0; j < s->k && ok; j++)
            ok = ids[t * s->k + j] == dlw_topk_id(s, n, t, j) && lps[t * s->k + j] == dlw_topk_logprob(j);
    }
    if (!ok) fprintf(stderr, "  sample %lld: the trace differs\n", (long long)n);
    ok = ok && info.clip_id == s->shard_id * 1000000ll + n && info.t0_us == n * 100000;
    ok = ok && info.command == (s->with_command ? (int)(n % 4) : 0) && info.has_future == s->with_future;
    ok = ok && info.has_embedding == (s->D > 0) && fabsf(info.temperature - (s->temperature > 0 ? s->temperature : 1.0f)) < 1e-6f;
    if (!ok) fprintf(stderr, "  sample %lld: ids, command, flags or temperature differ\n", (long long)n);
    free(frames);
    return ok;
}

static void round_trip(const char *name, DlWriteSpec s, int expect_raw) {
    const char *path = tmp_path(name);
    REQUIRE(write_shard(path, &s) == 0, "%s: write", name);
    DlShard sh;
    char err[DL_ERR_LEN];
    REQUIRE(dl_shard_open(&sh, path, err, sizeof err) == 0, "%s: open: %s", name, err);
    CHECK(sh.n == s.n && sh.n_cameras == s.cams && sh.Th == s.Th && sh.T == s.T && sh.K == s.K && sh.k == s.k && sh.D == s.D,
          "%s: shapes", name);
    CHECK(sh.V == s.V && !strcmp(sh.vocab[s.V - 1], "tok49") && sh.bos == 0 && sh.eos == 1, "%s: vocab", name);
    CHECK(!strcmp(sh.cameras, "cam0,cam1") && !strcmp(sh.camera_names[1], "cam1") && sh.hz == 10.0, "%s: attributes", name);
    CHECK(!strcmp(sh.fleet, "dlw test fleet") && !strcmp(sh.teacher, "dlw rule teacher v1"), "%s: strings", name);
    CHECK(sh.ds[DL_CAMERA0].raw_ok == expect_raw && sh.ds[DL_TOPK_LOGPROBS].raw_ok == expect_raw,
          "%s: raw chunk path %d, expected %d", name, sh.ds[DL_CAMERA0].raw_ok, expect_raw);
    DlReader *rd = dl_reader_new();
    int good = 0;
    for (int64_t n = 0; n < s.n; n++) good += sample_matches(&sh, rd, &s, n, 6);
    for (int64_t n = s.n - 1; n >= 0; n -= 3) good += sample_matches(&sh, rd, &s, n, 64);   // backwards, full traces
    CHECK(good == s.n + (s.n + 2) / 3, "%s: %d samples read back intact", name, good);
    char text[128];
    CHECK(dl_read_text(&sh, 5, text, sizeof text, err, sizeof err) == 0 && !strcmp(text, "sample 5 of shard 0"),
          "%s: text '%s'", name, text);
    dl_reader_free(rd);
    dl_shard_close(&sh);
}

static void test_round_trip_zstd_one_sample_chunks(void) { round_trip("zstd.h5", dlw_defaults(), 1); }

static void test_round_trip_contiguous(void) {
    DlWriteSpec s = dlw_defaults();
    s.chunk_samples = 0;
    s.compress = DLW_NONE;
    s.with_weight = 0;     // uniform weights
    round_trip("contiguous.h5", s, 0);
}

static void test_round_trip_deflate_shuffle_multi_sample_chunks(void) {
    DlWriteSpec s = dlw_defaults();
    s.compress = DLW_DEFLATE_SHUFFLE;
    s.chunk_samples = 5;   // 12 samples: the last chunk is partial
    s.with_future = s.with_command = 0;
    round_trip("deflate.h5", s, 1);
}

static void test_round_trip_float16_split_chunks_fixed_strings(void) {
    DlWriteSpec s = dlw_defaults();
    s.logprob_f16 = 1;
    s.split_inner = 1;     // camera chunks cut each sample in two
    s.fixed_strings = 1;
    s.H = 7;               // the second half-chunk runs past H
    s.temperature = 0;     // absent: 1.0
    round_trip("f16.h5", s, 1);
}

// A user block before the HDF5 data (HDF5 counts chunk addresses from its end).
static void test_round_trip_user_block(void) {
    DlWriteSpec s = dlw_defaults();
    s.userblock = 1024;
    round_trip("userblock.h5", s, 1);
}

// The raw chunk path and HDF5's own H5Dread (through the in-process zstd
// filter) must give the same bytes.
static void test_raw_path_matches_hdf5(void) {
    DlWriteSpec s = dlw_defaults();
    s.logprob_f16 = 1;
    const char *path = tmp_path("paths.h5");
    REQUIRE(write_shard(path, &s) == 0, "write");
    DlShard a, b;
    char err[DL_ERR_LEN];
    REQUIRE(dl_shard_open(&a, path, err, sizeof err) == 0 && dl_shard_open(&b, path, err, sizeof err) == 0, "%s", err);
    REQUIRE(a.ds[DL_CAMERA0].raw_ok && a.ds[DL_TOPK_LOGPROBS].raw_ok, "raw chunk path not taken");
    for (int i = 0; i < DL_N_SLOTS; i++) b.ds[i].raw_ok = 0;
    DlReader *rd = dl_reader_new();
    int same = 0;
    for (int64_t n = 0; n < s.n; n++) {
        static uint8_t fa[2 * 2 * 8 * 12 * 3], fb[sizeof fa];
        float ha[16], hb[16], ta[64], tb[64], wa[4], wb[4], ea[8], eb[8], la[64 * 4], lb[64 * 4];
        int32_t ka[64], kb[64], ia[64 * 4], ib[64 * 4];
        DlSampleDst da = { fa, ha, NULL, ta, wa, ea, ka, ia, la, 64 }, db = { fb, hb, NULL, tb, wb, eb, kb, ib, lb, 64 };
        DlSampleInfo xa, xb;
        if (dl_read_sample(&a, rd, n, &da, &xa, err, sizeof err) || dl_read_sample(&b, rd, n, &db, &xb, err, sizeof err)) break;
        size_t t = (size_t)xa.n_tokens;
        same += !memcmp(fa, fb, sizeof fa) && !memcmp(ha, hb, sizeof ha) && !memcmp(ta, tb, sizeof(float) * 54) &&
                !memcmp(ea, eb, sizeof(float) * 5) && xa.n_tokens == xb.n_tokens && !memcmp(ka, kb, t * 4) &&
                !memcmp(la, lb, t * 16) && !memcmp(ia, ib, t * 16);
    }
    CHECK(same == s.n, "%d of %lld samples identical through both paths", same, (long long)s.n);
    dl_reader_free(rd);
    dl_shard_close(&a);
    dl_shard_close(&b);
}

// One reader, one DlShard variable reopened on another file: the reader's
// chunk cache must not hand back the first file's chunk.
static void test_reader_cache_follows_the_shard(void) {
    DlWriteSpec a = dlw_defaults(), b = dlw_defaults();
    a.chunk_samples = b.chunk_samples = 4;   // chunks of several samples go through the cache
    a.n = 4;
    b.shard_id = 5;
    const char *pa = tmp_path("cache_a.h5"), *pb = tmp_path("cache_b.h5");
    REQUIRE(write_shard(pa, &a) == 0 && write_shard(pb, &b) == 0, "write");
    DlReader *rd = dl_reader_new();
    DlShard sh;
    char err[DL_ERR_LEN];
    REQUIRE(dl_shard_open(&sh, pa, err, sizeof err) == 0, "%s", err);
    CHECK(sample_matches(&sh, rd, &a, 1, 64), "first file");
    dl_shard_close(&sh);
    REQUIRE(dl_shard_open(&sh, pb, err, sizeof err) == 0, "%s", err);
    int good = 0;
    for (int64_t n = 0; n < b.n; n++) good += sample_matches(&sh, rd, &b, n, 64);
    CHECK(good == b.n, "%d of %lld samples of the second file intact", good, (long long)b.n);
    dl_shard_close(&sh);
    dl_reader_free(rd);
}

// ---- the rules --------------------------------------------------------------------

// Overwrite one element of a dataset (coordinates in its own rank).
static int poke(const char *path, const char *dset, hid_t mtype, const hsize_t *coord, const void *value) {
    dl_hdf5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    hid_t space = H5Dget_space(d), one = 1, mspace;
    hsize_t count = (hsize_t)one;
    mspace = H5Screate_simple(1, &count, NULL);
    H5Sselect_elements(space, H5S_SELECT_SET, 1, coord);
    herr_t rc = H5Dwrite(d, mtype, mspace, space, H5P_DEFAULT, value);
    H5Sclose(mspace);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    dl_hdf5_unlock();
    return rc < 0 ? -1 : 0;
}

// A fresh valid shard at `name`, then one element changed; sample `n` must
// read as bad with a message naming the file, the dataset and the sample,
// and sample n - 1 must still read.
static void expect_bad_sample(const char *name, const char *dset, hid_t mtype, const hsize_t *coord, const void *value,
                              int64_t n, const char *words) {
    DlWriteSpec s = dlw_defaults();
    const char *path = tmp_path(name);
    REQUIRE(write_shard(path, &s) == 0 && poke(path, dset, mtype, coord, value) == 0, "%s: write", name);
    DlShard sh;
    char err[DL_ERR_LEN], want[64];
    REQUIRE(dl_shard_open(&sh, path, err, sizeof err) == 0, "%s: open: %s", name, err);
    DlReader *rd = dl_reader_new();
    float hist[64], traj[256], w[8];
    DlSampleDst dst = { .history = hist, .trajectory = traj, .weight = w };
    DlSampleInfo info;
    int rc = dl_read_sample(&sh, rd, n, &dst, &info, err, sizeof err);
    snprintf(want, sizeof want, "at sample %lld", (long long)n);
    CHECK(rc == DL_BAD_SAMPLE, "%s: sample %lld read as good", name, (long long)n);
    CHECK(strstr(err, path) && strstr(err, dset) && strstr(err, want) && strstr(err, words) && !strchr(err, '\n'),
          "%s: message '%s' lacks the file, %s, '%s' or '%s'", name, err, dset, want, words);
    char err2[DL_ERR_LEN];
    CHECK(dl_read_sample(&sh, rd, n - 1, &dst, &info, err2, sizeof err2) == DL_OK, "%s: its neighbour: %s", name, err2);
    dl_reader_free(rd);
    dl_shard_close(&sh);
}

static void test_bad_samples(void) {
    float nan = NAN, inf = INFINITY, neg = -0.5f, pos = 0.25f, small = -0.01f;
    int32_t big = 50, minus = -3;
    int8_t cmd = 9;
    DlWriteSpec s = dlw_defaults();
    int64_t n = 4, o = dlw_trace_offset(&s, n);
    while (dlw_trace_len(&s, n) < 2) o = dlw_trace_offset(&s, ++n);   // a sample with a trace
    hsize_t hist[3] = { 3, 1, 2 }, traj[4] = { 3, 2, 5, 0 }, emb[2] = { 3, 4 }, w[2] = { 3, 1 }, cmd_at[1] = { 3 };
    hsize_t tok[1] = { (hsize_t)o + 1 }, topk[2] = { (hsize_t)o + 1, 2 }, topk0[2] = { (hsize_t)o, 0 };
    expect_bad_sample("nan.h5", "/ego/history", H5T_NATIVE_FLOAT, hist, &nan, 3, "NaN");
    expect_bad_sample("inf.h5", "/teacher/trajectory", H5T_NATIVE_FLOAT, traj, &inf, 3, "Inf");
    expect_bad_sample("emb.h5", "/teacher/embedding", H5T_NATIVE_FLOAT, emb, &nan, 3, "NaN");
    expect_bad_sample("weight.h5", "/teacher/weight", H5T_NATIVE_FLOAT, w, &neg, 3, "negative weight");
    expect_bad_sample("command.h5", "/ego/command", H5T_NATIVE_INT8, cmd_at, &cmd, 3, "command 9");
    expect_bad_sample("token.h5", "/teacher/trace/tokens", H5T_NATIVE_INT32, tok, &big, n, "token id 50");
    expect_bad_sample("topk_id.h5", "/teacher/trace/topk_ids", H5T_NATIVE_INT32, topk, &minus, n, "id -3");
    expect_bad_sample("logprob.h5", "/teacher/trace/topk_logprobs", H5T_NATIVE_FLOAT, topk, &pos, n, "log-prob 0.25 > 0");
    expect_bad_sample("mass.h5", "/teacher/trace/topk_logprobs", H5T_NATIVE_FLOAT, topk0, &small, n, "sum to");
    // offsets[n + 1] below offsets[n]: sample n goes backwards, n + 1 starts early (but still reads).
    int64_t back = o - 1;
    hsize_t off_at[1] = { (hsize_t)n + 1 };
    expect_bad_sample("offsets.h5", "/teacher/trace/offsets", H5T_NATIVE_INT64, off_at, &back, n, "not non-decreasing");
    // The rounding slack: a log-prob of +5e-4 (probability 1.0005, k = 1) is allowed.
    float slack = 5e-4f;
    s.k = 1;
    const char *path = tmp_path("slack.h5");
    REQUIRE(write_shard(path, &s) == 0 && poke(path, "/teacher/trace/topk_logprobs", H5T_NATIVE_FLOAT, topk0, &slack) == 0, "write");
    DlShard sh;
    char err[DL_ERR_LEN];
    REQUIRE(dl_shard_open(&sh, path, err, sizeof err) == 0, "%s", err);
    DlReader *rd = dl_reader_new();
    DlSampleDst dst = { 0 };
    DlSampleInfo info;
    CHECK(dl_read_sample(&sh, rd, n, &dst, &info, err, sizeof err) == DL_OK, "log-prob +5e-4 is within the slack: %s", err);
    dl_reader_free(rd);
    dl_shard_close(&sh);
}

typedef void (*Mutation)(hid_t file);

static void delete_history(hid_t f) { H5Ldelete(f, "/ego/history", H5P_DEFAULT); }
static void recreate_history(hid_t f, hid_t type, int rank, const hsize_t *dims) {
    H5Ldelete(f, "/ego/history", H5P_DEFAULT);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, "/ego/history", type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
}
static void history_int64(hid_t f) { hsize_t d[3] = { 12, 4, 4 }; recreate_history(f, H5T_STD_I64LE, 3, d); }
static void history_rank2(hid_t f) { hsize_t d[2] = { 12, 16 }; recreate_history(f, H5T_IEEE_F32LE, 2, d); }
static void history_short(hid_t f) { hsize_t d[3] = { 11, 4, 4 }; recreate_history(f, H5T_IEEE_F32LE, 3, d); }
static void version_two(hid_t f) {
    int64_t v = 2;
    hid_t a = H5Aopen(f, "drivelog_version", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
}
static void no_hz(hid_t f) { H5Adelete(f, "hz"); }
static void offsets_end(hid_t f) {
    hid_t d = H5Dopen2(f, "/teacher/trace/offsets", H5P_DEFAULT), sp = H5Dget_space(d), ms;
    hsize_t at = 12, one = 1;
    int64_t v = 3;
    ms = H5Screate_simple(1, &one, NULL);
    H5Sselect_elements(sp, H5S_SELECT_SET, 1, &at);
    H5Dwrite(d, H5T_NATIVE_INT64, ms, sp, H5P_DEFAULT, &v);
    H5Sclose(ms);
    H5Sclose(sp);
    H5Dclose(d);
}

static void expect_bad_shard(const char *name, Mutation m, const char *words) {
    DlWriteSpec s = dlw_defaults();
    const char *path = tmp_path(name);
    REQUIRE(write_shard(path, &s) == 0, "%s: write", name);
    dl_hdf5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    m(f);
    H5Fclose(f);
    dl_hdf5_unlock();
    DlShard sh;
    char err[DL_ERR_LEN];
    int rc = dl_shard_open(&sh, path, err, sizeof err);
    CHECK(rc != 0, "%s: opened", name);
    CHECK(strstr(err, path) && strstr(err, words) && !strchr(err, '\n'), "%s: message '%s' lacks the file or '%s'", name, err, words);
    dl_shard_close(&sh);
}

static void test_bad_shards(void) {
    expect_bad_shard("missing.h5", delete_history, "/ego/history: missing");
    // float64 is a wider float32 (read, then narrowed); an integer is another kind.
    expect_bad_shard("dtype.h5", history_int64, "dtype int64, expected float32 (or float64)");
    expect_bad_shard("rank.h5", history_rank2, "rank 2, expected 3");
    expect_bad_shard("short.h5", history_short, "/ego/history: 11 samples, but /clip_id has 12");
    expect_bad_shard("version.h5", version_two, "drivelog_version: 2");
    expect_bad_shard("nohz.h5", no_hz, "hz: missing");
    expect_bad_shard("offsets_end.h5", offsets_end, "offsets[N] = 3");
    // A truncated file.
    DlWriteSpec s = dlw_defaults();
    const char *path = tmp_path("truncated.h5");
    REQUIRE(write_shard(path, &s) == 0 && truncate(path, 3000) == 0, "truncate");
    DlShard sh;
    char err[DL_ERR_LEN];
    CHECK(dl_shard_open(&sh, path, err, sizeof err) != 0 && strstr(err, path) && strstr(err, "truncated"), "truncated: '%s'", err);
    dl_shard_close(&sh);
}

static void test_shards_must_agree(void) {
    DlWriteSpec a = dlw_defaults(), b = dlw_defaults(), c = dlw_defaults(), d = dlw_defaults();
    b.shard_id = 1;
    b.vocab_salt = 7;
    c.shard_id = 2;
    c.K = 4;
    d.shard_id = 3;
    d.hz = 20;
    REQUIRE(!write_shard(tmp_path("agree_a.h5"), &a) && !write_shard(tmp_path("agree_b.h5"), &b) &&
            !write_shard(tmp_path("agree_c.h5"), &c) && !write_shard(tmp_path("agree_d.h5"), &d), "write");
    const char *cases[3][2] = { { "agree_b.h5", "/vocab piece 0" }, { "agree_c.h5", "samples K 4 differs" }, { "agree_d.h5", "hz 20 differs" } };
    for (int i = 0; i < 3; i++) {
        char pa[256], pb[256], err[DL_ERR_LEN];
        snprintf(pa, sizeof pa, "%s", tmp_path("agree_a.h5"));
        snprintf(pb, sizeof pb, "%s", tmp_path(cases[i][0]));
        char *patterns[2] = { pa, pb };
        DlSet *set = dl_set_open(patterns, 2, err, sizeof err);
        CHECK(!set && strstr(err, pa) && strstr(err, pb) && strstr(err, cases[i][1]), "%s: '%s'", cases[i][0], err);
        dl_set_close(set);
    }
    char pattern[256], err[DL_ERR_LEN];
    snprintf(pattern, sizeof pattern, "%s/nothing*.h5", tmpdir);
    char *patterns[1] = { pattern };
    CHECK(!dl_set_open(patterns, 1, err, sizeof err) && strstr(err, "no file matches"), "empty glob: '%s'", err);
}

// ---- the loader ----------------------------------------------------------------------

// Three shards of 10, 7 and 11 samples: 28 in all.
static const int set_sizes[3] = { 10, 7, 11 };

static void write_set(void) {
    for (int i = 0; i < 3; i++) {
        DlWriteSpec s = dlw_defaults();
        s.shard_id = i;
        s.n = set_sizes[i];
        char name[32];
        snprintf(name, sizeof name, "set_%d.h5", i);
        if (write_shard(tmp_path(name), &s)) return;
    }
}

static Loader *open_set(LoaderOptions o) {
    char pattern[256], err[DL_ERR_LEN];
    snprintf(pattern, sizeof pattern, "%s/set_*.h5", tmpdir);
    char *patterns[1] = { pattern };
    Loader *ld = loader_open(patterns, 1, &o, err, sizeof err);
    if (!ld) fprintf(stderr, "  loader_open: %s\n", err);
    return ld;
}

// A sample's identity: its global number in the set.
static int64_t global_id(const Batch *b, int i) {
    int64_t first[3] = { 0, 10, 17 };
    return first[b->shard[i]] + b->index[i];
}

static void test_rank_split(void) {
    // (R, B): S = 28 divides evenly, so each sample is read exactly once per epoch;
    // (3, 4) leaves 28 - 3 * 2 * 4 = 4 samples out, each read at most once.
    int cases[4][2] = { { 1, 4 }, { 2, 7 }, { 4, 7 }, { 3, 4 } };
    for (int c = 0; c < 4; c++) {
        int R = cases[c][0], B = cases[c][1];
        for (int epoch = 0; epoch < 2; epoch++) {
            int seen[28] = { 0 }, reads = 0, contents_ok = 1;
            for (int r = 0; r < R; r++) {
                LoaderOptions o = loader_defaults();
                o.batch_size = B; o.rank = r; o.world = R; o.seed = seed; o.workers = 2; o.prefetch = 3;
                Loader *ld = open_set(o);
                REQUIRE(ld, "open");
                REQUIRE(loader_seek(ld, (LoaderPosition){ epoch, 0 }) == 0, "seek");
                for (int64_t st = 0; st < loader_batches_per_epoch(ld); st++) {
                    const Batch *b = loader_next(ld);
                    REQUIRE(b && b->epoch == epoch && b->step == st, "batch %lld", (long long)st);
                    for (int i = 0; i < B; i++) {
                        seen[global_id(b, i)]++;
                        reads++;
                        contents_ok &= b->valid[i] && b->clip_id[i] == b->shard[i] * 1000000ll + b->index[i];
                    }
                }
                loader_close(ld);
            }
            int expect = 28 / R / B * B * R, once = 1;
            for (int i = 0; i < 28; i++) once &= seen[i] <= 1 && (expect < 28 || seen[i] == 1);
            CHECK(reads == expect && once && contents_ok, "R %d B %d epoch %d: %d reads (expected %d), each sample once: %d",
                  R, B, epoch, reads, expect, once);
        }
    }
}

// Evaluation: shard order, tail kept: over the ranks, every sample once, in
// order, the rest padding.
static void test_eval_order_keeps_the_tail(void) {
    int R = 3, B = 4, seen[28] = { 0 }, in_order = 1, padding = 0, valid_flags = 1;
    for (int r = 0; r < R; r++) {
        LoaderOptions o = loader_defaults();
        o.batch_size = B; o.rank = r; o.world = R; o.shuffle = 0; o.keep_tail = 1;
        Loader *ld = open_set(o);
        REQUIRE(ld, "open");
        CHECK(loader_batches_per_epoch(ld) == 3, "ceil(ceil(28 / 3) / 4) = 3 batches, got %lld", (long long)loader_batches_per_epoch(ld));
        int64_t expect = r;
        for (int64_t st = 0; st < loader_batches_per_epoch(ld); st++) {
            const Batch *b = loader_next(ld);
            REQUIRE(b, "batch");
            padding += b->n_padding;
            for (int i = 0; i < B; i++) {
                if (b->shard[i] < 0) { valid_flags &= !b->valid[i] && b->weight[i * 3] == 0; continue; }
                int64_t g = global_id(b, i);
                seen[g]++;
                in_order &= g == expect && b->valid[i];
                expect += R;
            }
        }
        CHECK(loader_bad_samples(ld) == 0, "padding counted as bad");
        loader_close(ld);
    }
    int once = 1;
    for (int i = 0; i < 28; i++) once &= seen[i] == 1;
    CHECK(once && in_order && valid_flags && padding == 3 * 3 * 4 - 28, "once %d, in order %d, padding %d", once, in_order, padding);
}

// One loader through 2.5 epochs; another stopped after 9 batches, its
// position saved, closed; a third resumed from it: the same batches follow.
static void test_resume_gives_the_same_batches(void) {
    LoaderOptions o = loader_defaults();
    o.batch_size = 3; o.seed = seed; o.rank = 1; o.world = 2; o.workers = 2; o.prefetch = 4;
    Loader *ld = open_set(o);
    REQUIRE(ld, "open");
    int64_t nb = loader_batches_per_epoch(ld), total = nb * 5 / 2;
    REQUIRE(nb == 4, "28 samples, 2 ranks, B 3: 4 batches per epoch, got %lld", (long long)nb);
    int64_t ids[64];
    uint64_t sums[64];
    for (int64_t g = 0; g < total; g++) {
        const Batch *b = loader_next(ld);
        REQUIRE(b, "batch %lld", (long long)g);
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < loader_batch_bytes(ld); i++) h = (h ^ ((uint8_t *)b->frames)[i]) * 1099511628211ull;
        sums[g] = h;
        ids[g] = global_id(b, 0) * 10000 + global_id(b, 1) * 100 + global_id(b, 2);
        CHECK(loader_sample_at(ld, b->epoch, b->step, 2) == global_id(b, 2), "loader_sample_at");
    }
    loader_close(ld);
    ld = open_set(o);
    REQUIRE(ld, "open");
    for (int g = 0; g < 9; g++) REQUIRE(loader_next(ld), "batch");
    LoaderPosition pos = loader_tell(ld);
    CHECK(pos.epoch == 2 && pos.step == 1, "position after 9 batches of 4 per epoch: (%lld, %lld)", (long long)pos.epoch, (long long)pos.step);
    loader_close(ld);
    o.workers = 1;   // a different worker count must not matter either
    ld = open_set(o);
    REQUIRE(ld && loader_seek(ld, pos) == 0, "seek");
    int same = 0;
    for (int64_t g = 9; g < total; g++) {
        const Batch *b = loader_next(ld);
        REQUIRE(b, "batch");
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < loader_batch_bytes(ld); i++) h = (h ^ ((uint8_t *)b->frames)[i]) * 1099511628211ull;
        same += h == sums[g] && global_id(b, 0) * 10000 + global_id(b, 1) * 100 + global_id(b, 2) == ids[g];
    }
    CHECK(same == total - 9, "%d of %lld resumed batches identical", same, (long long)(total - 9));
    CHECK(ids[0] != ids[nb] || ids[1] != ids[nb + 1], "epochs 0 and 1 drew the same order");
    loader_close(ld);
}

static void test_one_and_two_workers_give_identical_batches(void) {
    LoaderOptions o1 = loader_defaults(), o2;
    o1.batch_size = 5; o1.seed = seed + 1; o1.workers = 1; o1.prefetch = 2; o1.max_trace_tokens = 4;
    o2 = o1;
    o2.workers = 2; o2.prefetch = 6;
    Loader *a = open_set(o1), *b = open_set(o2);
    REQUIRE(a && b, "open");
    int same = 0, n = 12;
    for (int i = 0; i < n; i++) {
        const Batch *x = loader_next(a), *y = loader_next(b);
        if (x && y && loader_batch_bytes(a) == loader_batch_bytes(b))
            same += !memcmp(x->frames, y->frames, loader_batch_bytes(a));
    }
    CHECK(same == n, "%d of %d batches byte-identical", same, n);
    CHECK(loader_truncated_traces(a) > 0 && loader_truncated_traces(a) == loader_truncated_traces(b), "truncated %lld",
          (long long)loader_truncated_traces(a));
    loader_close(a);
    loader_close(b);
}

// A training step takes its micro-batches together (loader_next_many): the
// same batches as one at a time, all valid at once, the position after the
// last; more than the ring holds is an error.
static void test_next_many_is_next_in_a_row(void) {
    LoaderOptions o = loader_defaults();
    o.batch_size = 3; o.seed = seed + 2; o.workers = 2; o.prefetch = 4; o.max_trace_tokens = 4;
    Loader *one = open_set(o), *many = open_set(o);
    REQUIRE(one && many, "open");
    int same = 0, n = 0;
    for (int step = 0; step < 4; step++) {
        const Batch *held[3];
        REQUIRE(loader_next_many(many, 3, held) == 0, "next_many: %s", loader_error(many));
        for (int m = 0; m < 3; m++, n++) {
            const Batch *b = loader_next(one);
            REQUIRE(b, "next");
            same += !memcmp(b->frames, held[m]->frames, loader_batch_bytes(one)) && b->step == held[m]->step;
        }
        LoaderPosition p1 = loader_tell(one), p3 = loader_tell(many);
        CHECK(p1.epoch == p3.epoch && p1.step == p3.step, "position after step %d", step);
    }
    CHECK(same == n, "%d of %d batches identical", same, n);
    const Batch *too_many[5];
    CHECK(loader_next_many(many, 5, too_many) != 0 && strstr(loader_error(many), "5 batches asked at once, the ring holds 4"),
          "5 batches from a ring of 4: %s", loader_error(many));
    loader_close(one);
    loader_close(many);
}

static void test_batch_fields(void) {
    LoaderOptions o = loader_defaults();
    o.batch_size = 4; o.max_trace_tokens = 5; o.seed = seed;
    Loader *ld = open_set(o);
    REQUIRE(ld, "open");
    const Batch *b = loader_next(ld);
    REQUIRE(b, "batch");
    DlWriteSpec s = dlw_defaults();
    CHECK(b->B == 4 && b->cams == 2 && b->F == 2 && b->H == 8 && b->W == 12 && b->Th == 4 && b->T == 6 && b->K == 3 &&
          b->D == 5 && b->L == 5 && b->k == 4, "shapes");
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        s.shard_id = b->shard[i];
        int64_t n = b->index[i], len = dlw_trace_len(&s, n);
        int kept = len < 5 ? (int)len : 5;
        ok &= b->trace_len[i] == kept;
        for (int t = 0; t < 5; t++) {
            ok &= b->trace_mask[i * 5 + t] == (t < kept);
            ok &= b->trace_tokens[i * 5 + t] == (t < kept ? dlw_token(&s, n, t) : 0);
            ok &= b->topk_logprobs[(i * 5 + t) * 4 + 1] == (t < kept ? dlw_topk_logprob(1) : 0.0f);
        }
        float wsum = 0;
        for (int j = 0; j < 3; j++) wsum += b->weight[i * 3 + j];
        ok &= fabsf(wsum - 1) < 1e-6f && b->has_future[i] && b->command[i] == n % 4 && b->valid[i];
        ok &= b->history[i * 16 + 5] == dlw_value(&s, DL_HISTORY, n, 5) && b->embedding[i * 5 + 4] == dlw_value(&s, DL_EMBEDDING, n, 4);
        ok &= b->frames[(size_t)i * 2 * 2 * 8 * 12 * 3 + 2 * 8 * 12 * 3 + 7] == dlw_pixel(&s, n, 1, 0, 0, 2, 1);
        ok &= fabsf(b->temperature[i] - 0.7f) < 1e-6f;
    }
    CHECK(ok, "batch fields match the shards");
    loader_close(ld);
}

// A NaN in one sample: skip zeroes and counts it; error stops with its line.
static void test_skip_and_error(void) {
    DlWriteSpec s = dlw_defaults();
    s.n = 8;
    const char *path = tmp_path("skip.h5");
    float nan = NAN;
    hsize_t at[3] = { 5, 0, 0 };
    REQUIRE(write_shard(path, &s) == 0 && poke(path, "/ego/history", H5T_NATIVE_FLOAT, at, &nan) == 0, "write");
    char p[256], err[DL_ERR_LEN];
    snprintf(p, sizeof p, "%s", path);
    char *patterns[1] = { p };
    LoaderOptions o = loader_defaults();
    o.batch_size = 4; o.seed = seed; o.on_bad_sample = DL_ON_BAD_SKIP;
    Loader *ld = loader_open(patterns, 1, &o, err, sizeof err);
    REQUIRE(ld, "%s", err);
    int invalid = 0, zero_weight = 0, n_bad = 0;
    for (int i = 0; i < 2; i++) {
        const Batch *b = loader_next(ld);
        REQUIRE(b, "batch");
        n_bad += b->n_bad;
        for (int j = 0; j < 4; j++)
            if (!b->valid[j]) {
                invalid++;
                zero_weight += b->weight[j * 3] == 0 && b->trace_mask[j * 64] == 0 && b->index[j] == 5;
            }
    }
    CHECK(invalid == 1 && zero_weight == 1 && n_bad == 1 && loader_bad_samples(ld) == 1, "skip: %d invalid, %lld counted",
          invalid, (long long)loader_bad_samples(ld));
    loader_close(ld);
    o.on_bad_sample = DL_ON_BAD_ERROR;
    ld = loader_open(patterns, 1, &o, err, sizeof err);
    REQUIRE(ld, "%s", err);
    const Batch *b1 = loader_next(ld), *b2 = b1 ? loader_next(ld) : NULL;
    CHECK(!b1 || !b2, "error: both batches returned");
    CHECK(strstr(loader_error(ld), path) && strstr(loader_error(ld), "/ego/history: NaN") && strstr(loader_error(ld), "at sample 5"),
          "error: '%s'", loader_error(ld));
    CHECK(loader_next(ld) == NULL, "error is sticky");
    loader_close(ld);
}

// ---- the wall's listing -------------------------------------------------------

typedef struct Heard { int n; char lines[4][DL_ERR_LEN]; } Heard;
static void hear(const char *line, void *ctx) {
    Heard *h = ctx;
    if (h->n < 4) snprintf(h->lines[h->n], DL_ERR_LEN, "%s", line);
    h->n++;
}

// Children that list two problems, then crash, stop on the second, or stop on another.
static int two_then_crash(void *arg, char *err, size_t errlen) {
    (void)arg; (void)err; (void)errlen;
    dl_wall_problem("first problem");
    dl_wall_at("/camera/front");
    dl_wall_problem("second problem");
    raise(SIGSEGV);
    return 0;
}
static int two_then_stop(void *arg, char *err, size_t errlen) {
    (void)arg;
    dl_wall_problem("first problem");
    dl_wall_problem("second problem");
    snprintf(err, errlen, "second problem");
    return -1;
}
static int one_then_another(void *arg, char *err, size_t errlen) {
    (void)arg;
    dl_wall_problem("first problem");
    snprintf(err, errlen, "another line");
    return -1;
}

// Every problem a wall's child lists reaches the parent's listener as it
// comes, and so does the line that ends it, once: how the child ended
// (validate prints the problems found before a crash, then the crash), or
// its own error line when that is not its last problem again.
static void test_wall_hands_over_every_problem(void) {
    char err[DL_ERR_LEN];
    Heard h = { 0 };
    int rc = dl_wall_run_listening("x.h5", two_then_crash, NULL, NULL, hear, &h, err, sizeof err);
    CHECK(rc == -1 && h.n == 3 && !strcmp(h.lines[0], "first problem") && !strcmp(h.lines[1], "second problem") &&
          strstr(h.lines[2], "x.h5: libhdf5 crashed reading /camera/front (SIGSEGV)") && !strcmp(err, h.lines[2]),
          "crash: rc %d, %d lines, the last '%s'", rc, h.n, h.lines[2]);
    memset(&h, 0, sizeof h);
    rc = dl_wall_run_listening("x.h5", two_then_stop, NULL, NULL, hear, &h, err, sizeof err);
    CHECK(rc == -1 && h.n == 2 && !strcmp(h.lines[1], "second problem") && !strcmp(err, "second problem"),
          "stop on the last problem: rc %d, %d lines", rc, h.n);
    memset(&h, 0, sizeof h);
    rc = dl_wall_run_listening("x.h5", one_then_another, NULL, NULL, hear, &h, err, sizeof err);
    CHECK(rc == -1 && h.n == 2 && !strcmp(h.lines[1], "another line"), "stop on another line: rc %d, %d lines", rc, h.n);
    // Without a listener, the problems stay in the child and one line comes back.
    rc = dl_wall_run("x.h5", two_then_crash, NULL, NULL, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "crashed reading /camera/front"), "no listener: '%s'", err);
}

static int allocs;
static void *count_alloc(size_t bytes, void *ctx) { (*(int *)ctx)++; return malloc(bytes); }
static void count_release(void *p, void *ctx) { (*(int *)ctx)--; free(p); }

static void test_alloc_hook_and_options(void) {
    LoaderOptions o = loader_defaults();
    o.batch_size = 2; o.prefetch = 3; o.alloc = count_alloc; o.release = count_release; o.alloc_ctx = &allocs;
    Loader *ld = open_set(o);
    REQUIRE(ld, "open");
    CHECK(allocs == 3, "%d batch buffers from the hook, expected 3", allocs);
    CHECK(loader_next(ld) != NULL, "batch");
    loader_close(ld);
    CHECK(allocs == 0, "%d buffers not given back", allocs);
    char err[DL_ERR_LEN], pattern[256];
    snprintf(pattern, sizeof pattern, "%s/set_*.h5", tmpdir);
    char *patterns[1] = { pattern };
    o = loader_defaults();
    o.batch_size = 20; o.world = 2;
    CHECK(!loader_open(patterns, 1, &o, err, sizeof err) && strstr(err, "no whole batch"), "too few samples: '%s'", err);
    o = loader_defaults();
    o.rank = 3; o.world = 2;
    CHECK(!loader_open(patterns, 1, &o, err, sizeof err) && strstr(err, "rank"), "bad rank: '%s'", err);
}

int main(void) {
    seed = test_seed("test_drivelog");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/distil_test_drivelog_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    RUN(test_round_trip_zstd_one_sample_chunks);
    RUN(test_round_trip_contiguous);
    RUN(test_round_trip_deflate_shuffle_multi_sample_chunks);
    RUN(test_round_trip_float16_split_chunks_fixed_strings);
    RUN(test_round_trip_user_block);
    RUN(test_raw_path_matches_hdf5);
    RUN(test_reader_cache_follows_the_shard);
    RUN(test_bad_samples);
    RUN(test_bad_shards);
    RUN(test_shards_must_agree);
    write_set();
    RUN(test_rank_split);
    RUN(test_eval_order_keeps_the_tail);
    RUN(test_resume_gives_the_same_batches);
    RUN(test_one_and_two_workers_give_identical_batches);
    RUN(test_next_many_is_next_in_a_row);
    RUN(test_batch_fields);
    RUN(test_skip_and_error);
    RUN(test_alloc_hook_and_options);
    RUN(test_wall_hands_over_every_problem);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
