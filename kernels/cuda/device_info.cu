// device_info.cu: what the runtime says about the GPU this process uses
// (see kernels/backend.h, backend_cuda_device_info).
#include <cstdio>
#include <cstring>
#include <cuda_runtime.h>
extern "C" {
#include "kernels/backend.h"   // defines: CudaDeviceInfo (a C header)
}

// The UUID as nvidia-smi prints it: "GPU-" and 16 bytes in 8-4-4-4-12 hex groups.
static void format_uuid(const unsigned char *b, char *out, size_t n) {
    size_t at = (size_t)snprintf(out, n, "GPU-");
    for (int i = 0; i < 16 && at + 3 < n; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[at++] = '-';
        at += (size_t)snprintf(out + at, n - at, "%02x", b[i]);
    }
}

extern "C" int cuda_device_info(CudaDeviceInfo *info) {
    memset(info, 0, sizeof *info);
    int dev = 0;
    cudaDeviceProp p;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
        cudaGetLastError();   // not sticky: the caller reports that there is no device
        return -1;
    }
    snprintf(info->name, sizeof info->name, "%s", p.name);
    format_uuid(reinterpret_cast<const unsigned char *>(p.uuid.bytes), info->uuid, sizeof info->uuid);
    info->total_bytes = p.totalGlobalMem;
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    if (cudaDriverGetVersion(&info->driver) != cudaSuccess) info->driver = 0;
    if (cudaRuntimeGetVersion(&info->runtime) != cudaSuccess) info->runtime = 0;
    cudaGetLastError();
    return 0;
}
