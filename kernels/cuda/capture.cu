// capture.cu: CUDA Graphs of work queued on the compute stream (see
// kernels/backend.h's backend_capture_*): stream capture records every
// kernel, copy and cuBLAS call queued between begin and end, with its
// arguments as they are then, into a graph that is instantiated once and
// replayed with one cudaGraphLaunch.
//
// Capture is global (cudaStreamCaptureModeGlobal): any call that would
// synchronise (a download, cudaMalloc, a stream sync) made by any thread
// while it runs invalidates the capture, so the captured work must be the
// device work alone, its scratch already allocated (a first, eager run of
// the same work grows every workspace). Work of the other streams joins
// the graph when it waits on an event recorded inside the capture, and
// must be joined back (the compute stream waiting on its last event)
// before the end.
#include <cstdio>
#include <cuda_runtime.h>
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream, cuda_workspace_generation
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK

struct CudaCapture {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    size_t nodes;
    long launches;
    unsigned long workspace_generation;   // cuda_workspace's, when captured
};

extern "C" void cuda_capture_begin(void) {
    CUDA_CHECK(cudaStreamBeginCapture(cuda_compute_stream(), cudaStreamCaptureModeGlobal));
}

// NULL (with the runtime's reason on stderr) when the capture was
// invalidated or cannot be instantiated.
extern "C" CudaCapture *cuda_capture_end(void) {
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(cuda_compute_stream(), &graph);
    if (e != cudaSuccess || !graph) {
        cudaGetLastError();
        fprintf(stderr, "distil: error: CUDA: the step could not be captured into a CUDA Graph: %s\n", cudaGetErrorString(e));
        return nullptr;
    }
    CudaCapture *c = new CudaCapture();
    c->graph = graph;
    c->workspace_generation = cuda_workspace_generation();
    CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &c->nodes));
    e = cudaGraphInstantiate(&c->exec, graph, 0);
    if (e != cudaSuccess) {
        cudaGetLastError();
        fprintf(stderr, "distil: error: CUDA: the captured step could not be instantiated: %s\n", cudaGetErrorString(e));
        CUDA_CHECK(cudaGraphDestroy(graph));
        delete c;
        return nullptr;
    }
    return c;
}

extern "C" void cuda_capture_launch(CudaCapture *c) {
    CUDA_CHECK(cudaGraphLaunch(c->exec, cuda_compute_stream()));
    c->launches++;
}

extern "C" long cuda_capture_launches(const CudaCapture *c) { return c->launches; }

// The scratch workspace is the only device memory an op may reallocate
// (it grows, never shrinks): a graph captured before it grew would read
// the freed buffer.
extern "C" int cuda_capture_current(const CudaCapture *c) {
    return c->workspace_generation == cuda_workspace_generation();
}

extern "C" size_t cuda_capture_nodes(const CudaCapture *c) { return c->nodes; }

extern "C" void cuda_capture_free(CudaCapture *c) {
    if (!c) return;
    CUDA_CHECK(cudaGraphExecDestroy(c->exec));
    CUDA_CHECK(cudaGraphDestroy(c->graph));
    delete c;
}
