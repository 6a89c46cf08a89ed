// vocab.h: the student's vocabulary and its map from teacher token ids.
//
// vocab: teacher   the student uses the teacher's ids unchanged.
// vocab: from_logs a compact vocabulary: <unk> (student id 0), then every
//                  teacher id found in the training shards' traces and top-k
//                  lists, in increasing teacher-id order. A trace token
//                  outside it maps to <unk>; a top-k entry outside it goes to
//                  the distillation's tail bucket (student id -1).
#pragma once
#include <stdint.h>
#include "data/drivelog.h"   // defines: DlSet

typedef enum { VOCAB_MODE_TEACHER = 0, VOCAB_MODE_FROM_LOGS = 1 } VocabMode;

typedef struct Vocab {
    VocabMode mode;
    int teacher_size;       // V of the shards
    int size;               // student V
    int32_t *to_student;    // (teacher_size) student id, or -1 when absent
    int32_t *to_teacher;    // (size) teacher id, or -1 for <unk>
    char **pieces;          // (size) the token text; "<unk>" for the unknown id
    int unk;                // student id of <unk>, -1 in teacher mode
    int majority;           // student id of the most frequent trace token in the training shards
    // FNV-1a 64 of the teacher's whole /vocab (every piece, in id order), in
    // hex: the same ids mean the same tokens only under the same teacher
    // vocabulary. "" when unknown (a vocab.json of an older distil).
    char teacher_hash[17];
} Vocab;

// Build from the (opened) training set, scanning its traces (not its
// cameras). Returns 0, or -1 with err set.
int vocab_build(Vocab *v, const DlSet *train, VocabMode mode, char *err, size_t errlen);
void vocab_free(Vocab *v);

// The hash of a teacher vocabulary (Vocab.teacher_hash) of V pieces.
void vocab_teacher_hash(char *const *pieces, int64_t V, char out[17]);
// Whether shard sh holds the teacher vocabulary v was built from: the hash
// of its /vocab against v's (and every student piece against the shard's
// piece of the same teacher id, which names a difference, or stands in for
// the hash in an older vocab.json). `where` names v's file in the message.
// Returns 0, or -1 with err = "SHARD: /vocab: ...".
int vocab_check_teacher(const Vocab *v, const char *where, const DlShard *sh, char *err, size_t errlen);

// A trace token: its student id (<unk> when absent, or 0 in teacher mode for
// ids outside the table, which the reader has already rejected).
static inline int32_t vocab_token(const Vocab *v, int32_t teacher_id) {
    if (teacher_id < 0 || teacher_id >= v->teacher_size) return v->unk >= 0 ? v->unk : 0;
    int32_t s = v->to_student[teacher_id];
    return s >= 0 ? s : v->unk;
}
// A top-k entry: its student id, or -1 (the tail bucket) when absent.
static inline int32_t vocab_topk(const Vocab *v, int32_t teacher_id) {
    if (teacher_id < 0 || teacher_id >= v->teacher_size) return -1;
    return v->to_student[teacher_id];
}

// {"mode": ..., "teacher_size": ..., "size": ..., "unk": ..., "majority": ...,
//  "pieces": [...], "teacher_ids": [...]}. Returns 0, or -1 with err naming
// path and what failed (a piece that is not UTF-8, a write error).
int vocab_write_json(const Vocab *v, const char *path, char *err, size_t errlen);
// Read what vocab_write_json wrote (a checkpoint's or an export's vocab.json)
// and rebuild the teacher-to-student map. A file without "majority" (older
// runs) gets majority -1: the caller picks one. Returns 0, or -1 with err
// saying what is wrong (the caller names the file).
int vocab_read_json(Vocab *v, const char *path, char *err, size_t errlen);
