// onnx_student.h: the student as an ONNX graph (opset 17), for `distil
// export --onnx` (docs/export.md).
#pragma once
#include <stddef.h>
#include "autograd/graph.h"         // defines: Graph
#include "train/model/model.h"      // defines: ModelConfig

// The ONNX graph of the student with g's weights (g from bundle_student,
// any batch size; cfg.feat_dim must be 0). docs/export.md lists its inputs
// and outputs; it computes exactly what docs/model.md specifies.
int onnx_export_student(const char *path, const Graph *g, const ModelConfig *cfg, int opset, char *err, size_t errlen);
