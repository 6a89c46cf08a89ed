// tfevents.h: TensorBoard event files, written without TensorFlow.
//
// A file is a sequence of TFRecords, each
//   u64 length (little-endian), u32 masked CRC-32C of those 8 bytes,
//   length bytes of data, u32 masked CRC-32C of the data,
// with masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8. Each record
// is an Event protobuf (tensorflow/core/util/event.proto): wall_time (1,
// double), step (2, int64), and one of file_version (3, string: the first
// record, "brain.Event:2"), summary (5, Summary) or session_log (6). A
// scalar is Summary.value (1) { tag (1, string), simple_value (2, float) }.
// Encoded with the project's protobuf encoder (protobuf.h).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct TbWriter {
    FILE *f;
    char path[1200];
} TbWriter;

// Create DIR (and its parents) and a new event file in it,
// events.out.tfevents.<unix seconds>.<host>.<pid>, starting with the
// file_version record. Returns 0, or -1 with err set.
int tb_open(TbWriter *w, const char *dir, char *err, size_t errlen);
// One scalar at a step (wall time: now). Returns 0, or -1 on a write error.
int tb_scalar(TbWriter *w, const char *tag, int64_t step, double value);
// A SessionLog START at `step`: TensorBoard drops the events of earlier
// files at this step and later (a resumed run rewrites them).
int tb_restart(TbWriter *w, int64_t step);
// Push what was written to the file (each step's scalars, then this).
int tb_flush(TbWriter *w);
void tb_close(TbWriter *w);

// CRC-32C (Castagnoli) of n bytes, and TFRecord's mask of it.
uint32_t tb_crc32c(const void *data, size_t n);
uint32_t tb_masked_crc(const void *data, size_t n);
