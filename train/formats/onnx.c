// onnx.c: the ONNX graph builder (see onnx.h), on the protobuf encoder of protobuf.c.
#include "train/formats/onnx.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ONNX IR version 8 is the one of opset 17 and 18 (onnx 1.12-1.13); readers
// accept it for any opset at or above 17.
#define ONNX_IR_VERSION 8

// ---- field numbers (onnx/onnx.proto) ------------------------------------------------

enum { MODEL_IR_VERSION = 1, MODEL_PRODUCER_NAME = 2, MODEL_PRODUCER_VERSION = 3, MODEL_DOC = 6, MODEL_GRAPH = 7,
       MODEL_OPSET_IMPORT = 8 };
enum { OPSET_DOMAIN = 1, OPSET_VERSION = 2 };
enum { GRAPH_NODE = 1, GRAPH_NAME = 2, GRAPH_INITIALIZER = 5, GRAPH_INPUT = 11, GRAPH_OUTPUT = 12 };
enum { NODE_INPUT = 1, NODE_OUTPUT = 2, NODE_NAME = 3, NODE_OP_TYPE = 4, NODE_ATTRIBUTE = 5 };
enum { ATTR_NAME = 1, ATTR_F = 2, ATTR_I = 3, ATTR_INTS = 8, ATTR_TYPE = 20 };
enum { TENSOR_DIMS = 1, TENSOR_DATA_TYPE = 2, TENSOR_NAME = 8, TENSOR_RAW_DATA = 9 };
enum { VALUE_NAME = 1, VALUE_TYPE = 2, VALUE_DOC = 3 };
enum { TYPE_TENSOR = 1 };                   // TypeProto.tensor_type
enum { TTYPE_ELEM = 1, TTYPE_SHAPE = 2 };   // TypeProto.Tensor
enum { SHAPE_DIM = 1 };                     // TensorShapeProto
enum { DIM_VALUE = 1, DIM_PARAM = 2 };      // TensorShapeProto.Dimension

// ---- the graph builder ----------------------------------------------------------------

void onnx_graph_free(OnnxGraph *g) {
    pb_free(&g->body);
    for (int i = 0; i < g->n_names; i++) free(g->names[i]);
    free(g->names);
    memset(g, 0, sizeof *g);
}

// A fresh value name "<stem>_<n>", owned by g. An allocation failure marks
// the body out of memory (reported when the model is written) and returns
// a static name so building can go on.
static const char *new_name(OnnxGraph *g, const char *stem) {
    char buf[96];
    snprintf(buf, sizeof buf, "%s_%d", stem, g->n_names);
    if (g->n_names == g->cap_names) {
        int cap = g->cap_names ? 2 * g->cap_names : 256;
        char **n = realloc(g->names, (size_t)cap * sizeof *n);
        if (!n) { g->body.oom = 1; return "oom"; }
        g->names = n;
        g->cap_names = cap;
    }
    char *s = malloc(strlen(buf) + 1);
    if (!s) { g->body.oom = 1; return "oom"; }
    strcpy(s, buf);
    g->names[g->n_names++] = s;
    return s;
}

static void add_node(OnnxGraph *g, const char *op_type, const char *const *inputs, int n_inputs, const char *output,
                     const OnnxAttr *attrs, int n_attrs) {
    PbBuf node = { 0 };
    for (int i = 0; i < n_inputs; i++) pb_string(&node, NODE_INPUT, inputs[i]);
    pb_string(&node, NODE_OUTPUT, output);
    char name[96];
    snprintf(name, sizeof name, "%s_node_%d", op_type, g->n_nodes++);
    pb_string(&node, NODE_NAME, name);
    pb_string(&node, NODE_OP_TYPE, op_type);
    for (int i = 0; i < n_attrs; i++) {
        const OnnxAttr *a = &attrs[i];
        PbBuf attr = { 0 };
        pb_string(&attr, ATTR_NAME, a->name);
        if (a->type == ONNX_ATTR_FLOAT) pb_fixed32(&attr, ATTR_F, a->f);
        else if (a->type == ONNX_ATTR_INT) pb_int(&attr, ATTR_I, a->i);
        else
            for (int j = 0; j < a->n_ints; j++) pb_int(&attr, ATTR_INTS, a->ints[j]);
        pb_int(&attr, ATTR_TYPE, a->type);
        pb_message(&node, NODE_ATTRIBUTE, &attr);
        pb_free(&attr);
    }
    pb_message(&g->body, GRAPH_NODE, &node);
    pb_free(&node);
}

const char *onnx_node(OnnxGraph *g, const char *op_type, const char *const *inputs, int n_inputs,
                      const OnnxAttr *attrs, int n_attrs) {
    const char *out = new_name(g, op_type);
    add_node(g, op_type, inputs, n_inputs, out, attrs, n_attrs);
    return out;
}

const char *onnx_op1(OnnxGraph *g, const char *op_type, const char *a) { return onnx_node(g, op_type, &a, 1, NULL, 0); }

const char *onnx_op2(OnnxGraph *g, const char *op_type, const char *a, const char *b) {
    const char *in[2] = { a, b };
    return onnx_node(g, op_type, in, 2, NULL, 0);
}

void onnx_identity(OnnxGraph *g, const char *value, const char *name) { add_node(g, "Identity", &value, 1, name, NULL, 0); }

void onnx_initializer(OnnxGraph *g, const char *name, int elem_type, int ndim, const int64_t *dims, const void *data,
                      size_t nbytes) {
    PbBuf t = { 0 };
    for (int i = 0; i < ndim; i++) pb_int(&t, TENSOR_DIMS, dims[i]);
    pb_int(&t, TENSOR_DATA_TYPE, elem_type);
    pb_string(&t, TENSOR_NAME, name);
    // raw_data is little-endian by the spec; so is every machine distil runs on.
    pb_bytes(&t, TENSOR_RAW_DATA, data, nbytes);
    pb_message(&g->body, GRAPH_INITIALIZER, &t);
    pb_free(&t);
}

const char *onnx_const_f32(OnnxGraph *g, float v) {
    const char *name = new_name(g, "const");
    onnx_initializer(g, name, ONNX_FLOAT, 0, NULL, &v, sizeof v);
    return name;
}

const char *onnx_const_i64s(OnnxGraph *g, const int64_t *v, int n) {
    const char *name = new_name(g, "const");
    int64_t dim = n;
    onnx_initializer(g, name, ONNX_INT64, 1, &dim, v, (size_t)n * sizeof *v);
    return name;
}

const char *onnx_const_f32s(OnnxGraph *g, const float *v, int n) {
    const char *name = new_name(g, "const");
    int64_t dim = n;
    onnx_initializer(g, name, ONNX_FLOAT, 1, &dim, v, (size_t)n * sizeof *v);
    return name;
}

static void value_info(OnnxGraph *g, int field, const char *name, int elem_type, int ndim, const int64_t *dims,
                       const char *const *dim_params, const char *doc) {
    PbBuf shape = { 0 }, tensor = { 0 }, type = { 0 }, vi = { 0 };
    for (int i = 0; i < ndim; i++) {
        PbBuf dim = { 0 };
        if (dims[i] >= 0) pb_int(&dim, DIM_VALUE, dims[i]);
        else pb_string(&dim, DIM_PARAM, dim_params && dim_params[i] ? dim_params[i] : "dynamic");
        pb_message(&shape, SHAPE_DIM, &dim);
        pb_free(&dim);
    }
    pb_int(&tensor, TTYPE_ELEM, elem_type);
    pb_message(&tensor, TTYPE_SHAPE, &shape);
    pb_message(&type, TYPE_TENSOR, &tensor);
    pb_string(&vi, VALUE_NAME, name);
    pb_message(&vi, VALUE_TYPE, &type);
    if (doc) pb_string(&vi, VALUE_DOC, doc);
    pb_message(&g->body, field, &vi);
    pb_free(&shape); pb_free(&tensor); pb_free(&type); pb_free(&vi);
}

void onnx_input(OnnxGraph *g, const char *name, int elem_type, int ndim, const int64_t *dims,
                const char *const *dim_params, const char *doc) {
    value_info(g, GRAPH_INPUT, name, elem_type, ndim, dims, dim_params, doc);
}

void onnx_output(OnnxGraph *g, const char *name, int elem_type, int ndim, const int64_t *dims,
                 const char *const *dim_params, const char *doc) {
    value_info(g, GRAPH_OUTPUT, name, elem_type, ndim, dims, dim_params, doc);
}

// ---- the model file -------------------------------------------------------------------

int onnx_write_model(OnnxGraph *g, const char *graph_name, int opset, const char *doc, const char *path,
                     char *err, size_t errlen) {
    if (g->body.oom) { snprintf(err, errlen, "%s: out of memory building the ONNX graph", path); return -1; }
    // The ModelProto around the graph: its small fields are encoded here, the
    // graph (weights included) streams to the file without another copy.
    PbBuf head = { 0 }, tail = { 0 }, opset_msg = { 0 };
    pb_int(&head, MODEL_IR_VERSION, ONNX_IR_VERSION);
    pb_string(&head, MODEL_PRODUCER_NAME, "distil");
    pb_string(&head, MODEL_PRODUCER_VERSION, "1");
    if (doc) pb_string(&head, MODEL_DOC, doc);
    PbBuf name = { 0 };
    pb_string(&name, GRAPH_NAME, graph_name);
    pb_len_prefix(&head, MODEL_GRAPH, g->body.len + name.len);
    pb_string(&opset_msg, OPSET_DOMAIN, "");
    pb_int(&opset_msg, OPSET_VERSION, opset);
    pb_message(&tail, MODEL_OPSET_IMPORT, &opset_msg);
    int rc = -1;
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = NULL;
    if (head.oom || name.oom || tail.oom) { snprintf(err, errlen, "%s: out of memory", path); goto done; }
    if (!(f = fopen(tmp, "wb"))) { snprintf(err, errlen, "%s: cannot create %s: %s", path, tmp, strerror(errno)); goto done; }
    int ok = fwrite(head.data, 1, head.len, f) == head.len && fwrite(name.data, 1, name.len, f) == name.len &&
             fwrite(g->body.data, 1, g->body.len, f) == g->body.len && fwrite(tail.data, 1, tail.len, f) == tail.len &&
             fflush(f) == 0 && fsync(fileno(f)) == 0;
    int werr = errno;
    if (fclose(f) || !ok) { snprintf(err, errlen, "%s: writing failed: %s (disk full?)", tmp, strerror(werr)); unlink(tmp); goto done; }
    if (rename(tmp, path)) { snprintf(err, errlen, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno)); unlink(tmp); goto done; }
    rc = 0;
done:
    pb_free(&head); pb_free(&tail); pb_free(&opset_msg); pb_free(&name);
    return rc;
}
