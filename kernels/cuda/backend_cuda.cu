// backend_cuda.cu: device memory for the CUDA backend (see kernels/backend.h).
// Every runtime call is checked; a failure names the call and exits with 1.
//
// Zeroing goes through the compute stream (context.cuh), in order with the
// kernels. Every transfer goes through the copy stream, ordered against the
// compute stream by events only (the streams are non-blocking): a copy
// waits for the compute work queued before it (which writes what a
// download reads, or may still read what an upload overwrites), and the
// compute work queued after an upload waits for the copy.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda_runtime.h>
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK

// The one CUDA call made before a CUDA tape exists: it creates no context
// beyond the runtime's own, and on a machine without a GPU it fails cleanly.
extern "C" int cuda_device_count(const char **why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();   // clear it: having no GPU is not an error here
        if (why) *why = cudaGetErrorString(e);
        return 0;
    }
    if (n == 0 && why) *why = "no CUDA device found";
    return n;
}

extern "C" void *cuda_alloc(size_t bytes) {
    void *p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) { cudaGetLastError(); return nullptr; }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_compute_stream()));
    return p;
}

// cudaFree waits for the device, so no queued kernel still uses p.
extern "C" void cuda_free(void *p) { CUDA_CHECK(cudaFree(p)); }

extern "C" void cuda_zero(void *p, size_t bytes) {
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_compute_stream()));
}

extern "C" void cuda_memset(void *p, int byte, size_t bytes) {
    CUDA_CHECK(cudaMemsetAsync(p, byte, bytes, cuda_compute_stream()));
}

namespace {

// The two events that order one kind of transfer on the copy stream between
// the compute stream's work before and after it. Part of the process's one
// CUDA context, created on first use; one pair per kind of transfer, so
// each ordering is its own (CUDA_SIM_DROP_WAIT names them).
struct CopyEvents {
    cudaEvent_t compute_done, copy_done;
    CopyEvents() {
        CUDA_CHECK(cudaEventCreateWithFlags(&compute_done, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&copy_done, cudaEventDisableTiming));
    }
};

CopyEvents &download_events() { static CopyEvents e; return e; }
CopyEvents &host_copy_events() { static CopyEvents e; return e; }
CopyEvents &upload_events() { static CopyEvents e; return e; }
CopyEvents &queued_upload_events() { static CopyEvents e; return e; }

}  // namespace

// Returns once dst holds the data: the caller reads it next.
extern "C" void cuda_to_host(void *dst, const void *src, size_t bytes) {
    CopyEvents &download = download_events();
    cudaStream_t compute = cuda_compute_stream(), copy = cuda_copy_stream();
    CUDA_CHECK(cudaEventRecord(download.compute_done, compute));
    CUDA_CHECK(cudaStreamWaitEvent(copy, download.compute_done, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, copy));
    CUDA_CHECK(cudaStreamSynchronize(copy));
}

// Returns once src has been read: the caller may reuse or free it next (an
// async copy from page-locked memory gives no such promise by itself), and
// once the data is in place, so the compute work queued next sees it.
extern "C" void cuda_from_host(void *dst, const void *src, size_t bytes) {
    CopyEvents &host_copy = host_copy_events();
    cudaStream_t compute = cuda_compute_stream(), copy = cuda_copy_stream();
    CUDA_CHECK(cudaEventRecord(host_copy.compute_done, compute));
    CUDA_CHECK(cudaStreamWaitEvent(copy, host_copy.compute_done, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy));
    CUDA_CHECK(cudaStreamSynchronize(copy));
}

extern "C" void cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

// Page-locked, so the copy engine reads it directly and copies from it can
// be asynchronous; NULL when the runtime refuses (the caller falls back to
// pageable memory).
extern "C" void *cuda_host_alloc(size_t bytes) {
    void *p = nullptr;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) { cudaGetLastError(); return nullptr; }
    memset(p, 0, bytes);
    return p;
}

extern "C" void cuda_host_free(void *p) { CUDA_CHECK(cudaFreeHost(p)); }

// The copy waits for the compute work already queued (the previous batch's
// backward may still read the inputs it overwrites), and the compute work
// queued next waits for the copy, all without blocking the host. The host
// waits only for the copy to have read src, so that the next batch may be
// written into it; with one mirror that is also when the previous step's
// compute ends, which the step's loss read has waited for anyway.
extern "C" void cuda_upload(void *dst, const void *src, size_t bytes) {
    CopyEvents &upload = upload_events();
    cudaStream_t compute = cuda_compute_stream(), copy = cuda_copy_stream();
    CUDA_CHECK(cudaEventRecord(upload.compute_done, compute));
    CUDA_CHECK(cudaStreamWaitEvent(copy, upload.compute_done, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy));
    CUDA_CHECK(cudaEventRecord(upload.copy_done, copy));
    CUDA_CHECK(cudaStreamWaitEvent(compute, upload.copy_done, 0));
    CUDA_CHECK(cudaEventSynchronize(upload.copy_done));
}

// The same ordering without the host's wait, so that a stream capture can
// record it: the copy stream joins the capture through compute_done and is
// joined back through copy_done (its own pair of events, so that a queued
// upload never shares an event with an eager one).
extern "C" void cuda_upload_queued(void *dst, const void *src, size_t bytes) {
    CopyEvents &queued = queued_upload_events();
    cudaStream_t compute = cuda_compute_stream(), copy = cuda_copy_stream();
    CUDA_CHECK(cudaEventRecord(queued.compute_done, compute));
    CUDA_CHECK(cudaStreamWaitEvent(copy, queued.compute_done, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy));
    CUDA_CHECK(cudaEventRecord(queued.copy_done, copy));
    CUDA_CHECK(cudaStreamWaitEvent(compute, queued.copy_done, 0));
}

// On the compute stream itself: in order with the kernels, no event needed.
extern "C" void cuda_copy(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_compute_stream()));
}
