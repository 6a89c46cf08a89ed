// onnx.h: writing ONNX models without the ONNX library: a graph builder on
// the project's protobuf encoder (protobuf.h) for the messages ONNX needs (ModelProto, GraphProto, NodeProto,
// TensorProto, ValueInfoProto, AttributeProto). Field numbers follow
// onnx/onnx.proto. The student's graph (onnx_student.c) is built with it.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "train/formats/protobuf.h"   // defines: PbBuf, pb_*

// ---- ONNX ------------------------------------------------------------------------

// TensorProto.DataType values.
enum { ONNX_FLOAT = 1, ONNX_UINT8 = 2, ONNX_INT32 = 6, ONNX_INT64 = 7, ONNX_BOOL = 9, ONNX_FLOAT16 = 10 };
// AttributeProto.AttributeType values used here.
enum { ONNX_ATTR_FLOAT = 1, ONNX_ATTR_INT = 2, ONNX_ATTR_INTS = 7 };

typedef struct OnnxAttr {
    const char *name;
    int type;                 // ONNX_ATTR_*
    float f;
    int64_t i;
    const int64_t *ints;      // ONNX_ATTR_INTS: n_ints values
    int n_ints;
} OnnxAttr;

#define ONNX_MAX_DIMS 8

// A graph under construction. Nodes must be added in topological order
// (ONNX requires it; every builder call here can only use existing names).
typedef struct OnnxGraph {
    PbBuf body;               // the GraphProto's fields, in the order added
    char **names;             // generated value names, owned
    int n_names, cap_names;
    int n_nodes;
} OnnxGraph;

void onnx_graph_free(OnnxGraph *g);

// A node with one output, named "<op_type>_<n>" and returned (owned by g).
const char *onnx_node(OnnxGraph *g, const char *op_type, const char *const *inputs, int n_inputs,
                      const OnnxAttr *attrs, int n_attrs);
// Shorthands for the common arities.
const char *onnx_op1(OnnxGraph *g, const char *op_type, const char *a);
const char *onnx_op2(OnnxGraph *g, const char *op_type, const char *a, const char *b);

// Initializers (the weights and constants): name, shape, little-endian raw data.
void onnx_initializer(OnnxGraph *g, const char *name, int elem_type, int ndim, const int64_t *dims, const void *data,
                      size_t nbytes);
// Constants under a generated name, returned: a float scalar (0-d), an
// int64 vector, a float vector.
const char *onnx_const_f32(OnnxGraph *g, float v);
const char *onnx_const_i64s(OnnxGraph *g, const int64_t *v, int n);
const char *onnx_const_f32s(OnnxGraph *g, const float *v, int n);

// Graph inputs and outputs. A dim < 0 is symbolic, named dim_params[i]
// (e.g. "batch"); dim_params may be NULL when every dim is fixed.
void onnx_input(OnnxGraph *g, const char *name, int elem_type, int ndim, const int64_t *dims,
                const char *const *dim_params, const char *doc);
void onnx_output(OnnxGraph *g, const char *name, int elem_type, int ndim, const int64_t *dims,
                 const char *const *dim_params, const char *doc);
// Rename a value: an Identity node from `value` to `name` (graph outputs
// get their documented names this way).
void onnx_identity(OnnxGraph *g, const char *value, const char *name);

// Wrap the graph in a ModelProto (IR version 8, the default domain at
// `opset`) and write it to path atomically (temporary file, fsync, rename).
// Returns 0, or -1 with err set.
int onnx_write_model(OnnxGraph *g, const char *graph_name, int opset, const char *doc, const char *path,
                     char *err, size_t errlen);
