// backend.c: device memory dispatch (see backend.h).
#include "kernels/backend.h"
#include <stdlib.h>
#include <string.h>

int backend_cuda_device_count(void) {
#ifdef DISTIL_CUDA
    const char *why = NULL;
    return cuda_device_count(&why);
#else
    return 0;
#endif
}

const char *backend_cuda_unavailable_reason(void) {
#ifdef DISTIL_CUDA
    const char *why = NULL;
    if (cuda_device_count(&why) > 0) return NULL;
    return why ? why : "no CUDA device found";
#else
    return "this distil was built without CUDA (nvcc was not found, or CUDA=0)";
#endif
}

void backend_set_allow_tf32(Device d, int allow) {
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) cuda_set_allow_tf32(allow);
#endif
    (void)d;
    (void)allow;
}

int backend_cuda_device_info(CudaDeviceInfo *info) {
    memset(info, 0, sizeof *info);
#ifdef DISTIL_CUDA
    if (backend_cuda_device_count() > 0) return cuda_device_info(info);
#endif
    return -1;
}

void *backend_alloc(Device d, size_t bytes) {
    if (bytes == 0) bytes = 64;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) return cuda_alloc(bytes);
#endif
    if (d != DEV_CPU) return NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void backend_free(Device d, void *p) {
    if (!p) return;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) { cuda_free(p); return; }
#endif
    (void)d;
    free(p);
}

void backend_zero(Device d, void *p, size_t bytes) {
    if (!p || !bytes) return;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) { cuda_zero(p, bytes); return; }
#endif
    (void)d;
    memset(p, 0, bytes);
}

void backend_memset(Device d, void *p, int byte, size_t bytes) {
    if (!p || !bytes) return;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) { cuda_memset(p, byte, bytes); return; }
#endif
    (void)d;
    memset(p, byte, bytes);
}

void backend_to_host(Device d, void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) { cuda_to_host(host_dst, src, bytes); return; }
#endif
    (void)d;
    memcpy(host_dst, src, bytes);
}

void backend_from_host(Device d, void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) { cuda_from_host(dst, host_src, bytes); return; }
#endif
    (void)d;
    memcpy(dst, host_src, bytes);
}

void backend_sync(Device d) {
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) cuda_sync();
#endif
    (void)d;
}

void *backend_host_alloc(Device d, size_t bytes, int *pinned) {
    *pinned = 0;
    if (bytes == 0) bytes = 64;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) {
        void *p = cuda_host_alloc(bytes);
        if (p) { *pinned = 1; return p; }
        // Page-locked memory is a limited resource (ulimit -l, containers):
        // pageable memory still works, through the driver's bounce buffer.
    }
#endif
    return backend_alloc(DEV_CPU, bytes);
}

void backend_host_free(void *p, int pinned) {
    if (!p) return;
#ifdef DISTIL_CUDA
    if (pinned) { cuda_host_free(p); return; }
#endif
    (void)pinned;
    free(p);
}

void backend_upload(Device d, void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) { cuda_upload(dst, host_src, bytes); return; }
#endif
    (void)d;
    memcpy(dst, host_src, bytes);
}

void backend_upload_queued(Device d, void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) { cuda_upload_queued(dst, host_src, bytes); return; }
#endif
    (void)d;
    memcpy(dst, host_src, bytes);
}

void backend_copy(Device d, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) { cuda_copy(dst, src, bytes); return; }
#endif
    (void)d;
    memmove(dst, src, bytes);
}

void backend_capture_begin(Device d) {
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) { cuda_capture_begin(); return; }
#endif
    (void)d;
}

BackendCapture *backend_capture_end(Device d) {
#ifdef DISTIL_CUDA
    if (d == DEV_CUDA) return cuda_capture_end();
#endif
    (void)d;
    return NULL;
}

void backend_capture_launch(BackendCapture *c) {
#ifdef DISTIL_CUDA
    cuda_capture_launch(c);
#endif
    (void)c;
}

long backend_capture_launches(const BackendCapture *c) {
#ifdef DISTIL_CUDA
    return cuda_capture_launches(c);
#endif
    (void)c;
    return 0;
}

int backend_capture_current(const BackendCapture *c) {
#ifdef DISTIL_CUDA
    return cuda_capture_current(c);
#endif
    (void)c;
    return 0;
}

size_t backend_capture_nodes(const BackendCapture *c) {
#ifdef DISTIL_CUDA
    return cuda_capture_nodes(c);
#endif
    (void)c;
    return 0;
}

void backend_capture_free(BackendCapture *c) {
#ifdef DISTIL_CUDA
    if (c) cuda_capture_free(c);
#endif
    (void)c;
}
