// backend.h: memory on a device. The CPU backend is plain aligned host
// memory; the CUDA backend (kernels/cuda/backend_cuda.cu) is cudaMalloc'ed
// device memory. Compiled without CUDA, the CUDA entry points report that no
// GPU backend is available.
#pragma once
#include <stddef.h>
#include "autograd/tensor.h"   // defines: Device

// Number of usable CUDA devices (0 when built without CUDA or with no GPU).
int backend_cuda_device_count(void);
// Why CUDA is unavailable, for error messages ("built without CUDA", the
// runtime's own reason...).
const char *backend_cuda_unavailable_reason(void);

// Whether device d's fp32 matrix products may use TF32 tensor cores
// (train.allow_tf32; ~1e-3 relative error per product). A no-op on the CPU.
void backend_set_allow_tf32(Device d, int allow);

// The GPU this process uses (the current device: the one
// CUDA_VISIBLE_DEVICES puts first, or a rank's own under mpirun), as
// `distil selftest` reports it and its result cache keys it.
typedef struct CudaDeviceInfo {
    char name[256];            // "NVIDIA H100 80GB HBM3"
    char uuid[48];             // "GPU-8a1b...", as nvidia-smi -L writes it
    size_t total_bytes;        // device memory
    int cc_major, cc_minor;    // compute capability
    int driver, runtime;       // CUDA versions, 13000 = 13.0
} CudaDeviceInfo;
// Fills *info; 0, or -1 when there is no usable device (built without CUDA,
// no GPU, a driver older than the runtime...).
int backend_cuda_device_info(CudaDeviceInfo *info);

// Zero-filled allocation, 64-byte aligned. Returns NULL on failure.
void *backend_alloc(Device d, size_t bytes);
void backend_free(Device d, void *p);
void backend_zero(Device d, void *p, size_t bytes);
// Every byte of p[0, bytes) set to `byte` (0xff: NaNs in fp32, a test's poison).
void backend_memset(Device d, void *p, int byte, size_t bytes);
void backend_to_host(Device d, void *host_dst, const void *src, size_t bytes);
void backend_from_host(Device d, void *dst, const void *host_src, size_t bytes);
// Wait for queued device work (no-op on the CPU).
void backend_sync(Device d);

// Zero-filled host memory, 64-byte aligned, for staging transfers to device
// d: page-locked (*pinned = 1) when d's runtime can give it, so copies from
// it run at full bus speed without a bounce buffer; else plain (*pinned = 0).
// NULL on failure. Free with backend_host_free and the same pinned flag.
void *backend_host_alloc(Device d, size_t bytes, int *pinned);
void backend_host_free(void *p, int pinned);
// Host -> device copy of staged inputs: on the copy stream, after the device
// work already queued, before any queued after; returns once host_src has
// been read. A plain copy on the CPU.
void backend_upload(Device d, void *dst, const void *host_src, size_t bytes);

// backend_upload without the host's wait: it returns at once, so it may be
// captured, and the host must leave host_src alone until the device work
// queued after it has run (the step's one download waits for that).
void backend_upload_queued(Device d, void *dst, const void *host_src, size_t bytes);
// Device to device, in order with the device work queued before and after
// (on CUDA, the compute stream: capturable). memmove on the CPU.
void backend_copy(Device d, void *dst, const void *src, size_t bytes);

// CUDA Graphs (kernels/cuda/capture.cu). Between backend_capture_begin and
// backend_capture_end, the device work queued on d is recorded, not run;
// backend_capture_launch replays it. Only what runs on the device may be
// queued meanwhile: no download, allocation or wait for the device. NULL
// from end (its reason on stderr) on the CPU, or when the runtime refuses.
typedef struct CudaCapture BackendCapture;
void backend_capture_begin(Device d);
BackendCapture *backend_capture_end(Device d);
void backend_capture_launch(BackendCapture *c);
// Nodes (kernels, copies...) the capture recorded, and how many times it
// was replayed (cudaGraphLaunch calls).
size_t backend_capture_nodes(const BackendCapture *c);
long backend_capture_launches(const BackendCapture *c);
// Whether the device memory the capture recorded is still in use: 0 once an
// op has since regrown its scratch workspace (a larger eval batch...), after
// which the capture must be made again.
int backend_capture_current(const BackendCapture *c);
void backend_capture_free(BackendCapture *c);

#ifdef DISTIL_CUDA
// Implemented in kernels/cuda/context.cu.
void cuda_set_allow_tf32(int allow);
// Implemented in kernels/cuda/backend_cuda.cu and kernels/cuda/capture.cu.
void cuda_capture_begin(void);
struct CudaCapture *cuda_capture_end(void);
void cuda_capture_launch(struct CudaCapture *c);
size_t cuda_capture_nodes(const struct CudaCapture *c);
long cuda_capture_launches(const struct CudaCapture *c);
int cuda_capture_current(const struct CudaCapture *c);
void cuda_capture_free(struct CudaCapture *c);
int cuda_device_count(const char **why);
int cuda_device_info(CudaDeviceInfo *info);   // kernels/cuda/device_info.cu
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
void cuda_zero(void *p, size_t bytes);
void cuda_memset(void *p, int byte, size_t bytes);
void cuda_to_host(void *host_dst, const void *src, size_t bytes);
void cuda_from_host(void *dst, const void *host_src, size_t bytes);
void cuda_sync(void);
void *cuda_host_alloc(size_t bytes);
void cuda_host_free(void *p);
void cuda_upload(void *dst, const void *host_src, size_t bytes);
void cuda_upload_queued(void *dst, const void *host_src, size_t bytes);
void cuda_copy(void *dst, const void *src, size_t bytes);
#endif
