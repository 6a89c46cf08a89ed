// tfevents.c: TensorBoard event files (see tfevents.h).
#include "train/formats/tfevents.h"
#include <errno.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include "train/formats/fsutil.h"     // defines: fs_mkdir_p
#include "train/formats/protobuf.h"   // defines: PbBuf, pb_*

// event.proto's field numbers.
enum { EVENT_WALL_TIME = 1, EVENT_STEP = 2, EVENT_FILE_VERSION = 3, EVENT_SUMMARY = 5, EVENT_SESSION_LOG = 6 };
enum { SUMMARY_VALUE = 1 };
enum { VALUE_TAG = 1, VALUE_SIMPLE = 2 };
enum { SESSION_LOG_STATUS = 1, SESSION_LOG_START = 1 };

// Reflected CRC-32C, polynomial 0x1EDC6F41 (reversed 0x82F63B78), bit by
// bit: a step's events are a few hundred bytes, so no table is kept.
uint32_t tb_crc32c(const void *data, size_t n) {
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return crc ^ 0xFFFFFFFFu;
}

uint32_t tb_masked_crc(const void *data, size_t n) {
    uint32_t crc = tb_crc32c(data, n);
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static double wall_time(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + 1e-6 * tv.tv_usec;
}

static void le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// One TFRecord around an encoded Event.
static int write_record(TbWriter *w, const PbBuf *event) {
    if (!w->f || event->oom) return -1;
    uint8_t head[12], tail[4];
    uint64_t len = event->len;
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)(len >> (8 * i));
    le32(head + 8, tb_masked_crc(head, 8));
    le32(tail, tb_masked_crc(event->data, event->len));
    int ok = fwrite(head, 1, 12, w->f) == 12 && fwrite(event->data, 1, event->len, w->f) == event->len &&
             fwrite(tail, 1, 4, w->f) == 4;
    return ok ? 0 : -1;
}

int tb_open(TbWriter *w, const char *dir, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    if (fs_mkdir_p(dir)) { snprintf(err, errlen, "%s: cannot create the folder: %s", dir, strerror(errno)); return -1; }
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    double now = wall_time();
    snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%lld.%s.%d", dir, (long long)now, host, (int)getpid());
    if (!(w->f = fopen(w->path, "wb"))) {
        snprintf(err, errlen, "%s: cannot create: %s", w->path, strerror(errno));
        return -1;
    }
    PbBuf ev = { 0 };
    pb_double(&ev, EVENT_WALL_TIME, now);
    pb_string(&ev, EVENT_FILE_VERSION, "brain.Event:2");
    int rc = write_record(w, &ev);
    pb_free(&ev);
    if (rc || fflush(w->f)) {
        snprintf(err, errlen, "%s: cannot write: %s", w->path, strerror(errno));
        tb_close(w);
        return -1;
    }
    return 0;
}

int tb_scalar(TbWriter *w, const char *tag, int64_t step, double value) {
    PbBuf val = { 0 }, summary = { 0 }, ev = { 0 };
    pb_string(&val, VALUE_TAG, tag);
    pb_fixed32(&val, VALUE_SIMPLE, (float)value);
    pb_message(&summary, SUMMARY_VALUE, &val);
    pb_double(&ev, EVENT_WALL_TIME, wall_time());
    pb_int(&ev, EVENT_STEP, step);
    pb_message(&ev, EVENT_SUMMARY, &summary);
    int rc = write_record(w, &ev);
    pb_free(&val);
    pb_free(&summary);
    pb_free(&ev);
    return rc;
}

int tb_restart(TbWriter *w, int64_t step) {
    PbBuf log = { 0 }, ev = { 0 };
    pb_int(&log, SESSION_LOG_STATUS, SESSION_LOG_START);
    pb_double(&ev, EVENT_WALL_TIME, wall_time());
    pb_int(&ev, EVENT_STEP, step);
    pb_message(&ev, EVENT_SESSION_LOG, &log);
    int rc = write_record(w, &ev);
    pb_free(&log);
    pb_free(&ev);
    return rc;
}

int tb_flush(TbWriter *w) { return w->f && fflush(w->f) == 0 ? 0 : -1; }

void tb_close(TbWriter *w) {
    if (w->f) fclose(w->f);
    w->f = NULL;
}
