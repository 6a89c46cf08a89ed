// cuda_sim.cpp: the simulator's runtime (see cuda_sim.h).
#include "kernels/cuda/sim/cuda_sim.h"
#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

namespace {

// ---- configuration (environment, read once) ------------------------------------------
struct Config {
    bool async = true;
    unsigned max_delay_us = 300;
    uint64_t seed = 0;
    std::string drop_file, drop_text;   // CUDA_SIM_DROP_WAIT=FILE:TEXT
};

const Config &config() {
    static const Config c = [] {
        Config k;
        const char *mode = getenv("CUDA_SIM_MODE");
        if (mode && strcmp(mode, "sync") == 0) k.async = false;
        else if (mode && strcmp(mode, "async") != 0) {
            fprintf(stderr, "cuda_sim: CUDA_SIM_MODE=%s: expected async or sync\n", mode);
            exit(2);
        }
        if (const char *d = getenv("CUDA_SIM_MAX_DELAY_US")) k.max_delay_us = (unsigned)strtoul(d, nullptr, 10);
        const char *s = getenv("CUDA_SIM_SEED");
        k.seed = s ? strtoull(s, nullptr, 10) : (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
        if (const char *w = getenv("CUDA_SIM_DROP_WAIT")) {
            const char *colon = strchr(w, ':');
            if (!colon) { fprintf(stderr, "cuda_sim: CUDA_SIM_DROP_WAIT=%s: expected FILE:TEXT\n", w); exit(2); }
            k.drop_file.assign(w, colon);
            k.drop_text = colon + 1;
        }
        if (k.async)
            fprintf(stderr, "cuda_sim: asynchronous streams, random delays up to %u us, seed %llu (CUDA_SIM_SEED)\n",
                    k.max_delay_us, (unsigned long long)k.seed);
        return k;
    }();
    return c;
}

thread_local cudaError_t last_error = cudaSuccess;   // sticky until cudaGetLastError, per host thread

cudaError_t fail(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
cudaError_t fail(cudaError_t e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda_sim: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    last_error = e;
    return e;
}

[[noreturn]] void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda_sim: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

// ---- the running block ---------------------------------------------------------------
// Every thread of a block points at its Block; lane slots carry shuffles.
struct Block {
    std::barrier<> *barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warp_barrier;   // one per warp
    std::unique_ptr<std::atomic<int>[]> warp_alive;               // lanes not yet exited, per warp
    std::vector<uint64_t> lane_slot;                              // one per thread
    std::vector<unsigned char> smem;                              // dynamic shared memory
    std::mutex shared_mu;
    std::unordered_map<const void *, std::vector<unsigned char>> shared;   // static __shared__, by tag
    unsigned int nthreads;
};
thread_local Block *block_state;
thread_local unsigned int block_tid;

// Marks that something finished (for the deadlock watchdog, wait_or_die).
void progress(void);

unsigned int warp_size_of(const Block *b, unsigned int warp) {
    unsigned int first = warp * 32;
    return std::min(32u, b->nthreads - first);
}

}  // namespace

void __syncthreads(void) { block_state->barrier->arrive_and_wait(); }

void __syncwarp(unsigned int mask) {
    Block *b = block_state;
    unsigned int w = block_tid / 32;
    if (mask != 0xffffffffu || warp_size_of(b, w) != 32) die("__syncwarp with mask %#x in a warp of %u threads", mask, warp_size_of(b, w));
    b->warp_barrier[w]->arrive_and_wait();
}

namespace sim {

int lane_id(void) { return (int)(block_tid & 31); }

uint64_t warp_exchange(unsigned int mask, uint64_t bits, int src_lane, const char *what) {
    Block *b = block_state;
    unsigned int w = block_tid / 32;
    if (mask != 0xffffffffu || warp_size_of(b, w) != 32 || src_lane < 0 || src_lane > 31)
        die("%s with mask %#x from lane %d in a warp of %u threads (whole warps and the full mask only)", what, mask,
            src_lane, warp_size_of(b, w));
    b->lane_slot[block_tid] = bits;
    b->warp_barrier[w]->arrive_and_wait();
    // Every live lane has written its slot; one that exited instead has
    // left the warp short, which the full mask promised it was not.
    if (b->warp_alive[w].load() != 32) die("%s with the full mask after a lane of warp %u exited", what, w);
    uint64_t r = b->lane_slot[w * 32 + (unsigned int)src_lane];
    b->warp_barrier[w]->arrive_and_wait();
    return r;
}

void check_aligned(const void *p, size_t bytes, const char *file, int line) {
    if ((uintptr_t)p % bytes) die("%s:%d: a %zu-byte access at %p is misaligned", file, line, bytes, p);
}

void *dynamic_smem(void) { return block_state->smem.data(); }

void *block_shared_bytes(const void *tag, size_t bytes) {
    Block *b = block_state;
    std::lock_guard<std::mutex> lock(b->shared_mu);
    auto it = b->shared.find(tag);
    if (it == b->shared.end()) it = b->shared.emplace(tag, std::vector<unsigned char>(bytes + 64, 0xff)).first;
    // 64-byte aligned inside the vector, so 128-bit accesses are aligned.
    uintptr_t p = (uintptr_t)it->second.data();
    return (void *)((p + 63) & ~(uintptr_t)63);
}

}  // namespace sim

namespace {

// ---- block thread pools ----------------------------------------------------------------
// Worker threads reused from block to block (creating 256 threads per block
// would dominate the run time). One pool per thread that runs grids (each
// stream's thread, or the host thread in sync mode), so grids of different
// streams run at the same time. Block after block: the launcher publishes a
// job and a generation; workers [0, active) run it, and the launcher waits
// until all of them are done.
struct Pool {
    std::vector<std::thread> workers;
    std::mutex mu;
    std::condition_variable start, done_cv;
    unsigned long long generation = 0;
    unsigned int active = 0, done = 0;
    const std::function<void(unsigned int)> *job = nullptr;

    void worker(unsigned int id) {
        unsigned long long seen = 0;
        for (;;) {
            const std::function<void(unsigned int)> *j;
            {
                std::unique_lock<std::mutex> lock(mu);
                start.wait(lock, [&] { return generation != seen; });
                seen = generation;
                if (id >= active) continue;
                j = job;
            }
            (*j)(id);
            std::lock_guard<std::mutex> lock(mu);
            if (++done == active) done_cv.notify_one();
        }
    }

    void run(unsigned int threads, const std::function<void(unsigned int)> &fn) {
        while (workers.size() < threads) {
            workers.emplace_back(&Pool::worker, this, (unsigned int)workers.size());
            workers.back().detach();   // they live until the process exits
        }
        std::unique_lock<std::mutex> lock(mu);
        job = &fn;
        active = threads;
        done = 0;
        generation++;
        start.notify_all();
        done_cv.wait(lock, [&] { return done == active; });
    }
};

// Never destroyed: its workers wait on its condition variables until exit.
thread_local Pool *pool;

// ---- memory registry ---------------------------------------------------------------------
// Device allocations and page-locked host allocations, so that copies can
// check their pointers' kinds and know which host memory is pinned.
struct Registry {
    std::mutex mu;
    std::map<uintptr_t, size_t> device, pinned;
};
Registry &registry() {
    static Registry *r = new Registry;
    return *r;
}

bool in_ranges(const std::map<uintptr_t, size_t> &m, const void *p, size_t bytes) {
    uintptr_t a = (uintptr_t)p;
    auto it = m.upper_bound(a);
    if (it == m.begin()) return false;
    --it;
    return a >= it->first && a + bytes <= it->first + it->second;
}
bool is_device(const void *p, size_t bytes) {
    std::lock_guard<std::mutex> lock(registry().mu);
    return in_ranges(registry().device, p, bytes);
}
bool is_pinned(const void *p, size_t bytes) {
    std::lock_guard<std::mutex> lock(registry().mu);
    return in_ranges(registry().pinned, p, bytes);
}

}  // namespace

// ---- streams, events, graphs -------------------------------------------------------------
struct SimGraph {
    std::vector<std::function<void()>> nodes;
    std::vector<std::string> what;          // per node: "kernel launch", "copy"...
    std::vector<SimStream *> streams;       // the streams that joined the capture
};
struct SimGraphExec { std::vector<std::function<void()>> nodes; };

struct SimStream {
    unsigned int id;
    std::mutex mu;
    std::condition_variable work_cv, idle_cv;
    std::deque<std::function<void()>> queue;
    bool running = false;                  // an item is executing
    std::mt19937_64 rng;
    std::thread worker;
    // Stream capture (under capture_mu): the graph this stream records into.
    SimGraph *capturing = nullptr;
    SimStream *capture_origin = nullptr;
    size_t captured = 0, joined = 0;       // items this stream recorded; those joined back to the origin

    void loop() {
        for (;;) {
            std::function<void()> item;
            {
                std::unique_lock<std::mutex> lock(mu);
                work_cv.wait(lock, [&] { return !queue.empty(); });
                item = std::move(queue.front());
                queue.pop_front();
                running = true;
            }
            delay();
            item();
            progress();
            std::lock_guard<std::mutex> lock(mu);
            running = false;
            if (queue.empty()) idle_cv.notify_all();
        }
    }

    // About one item in three waits a random while first, up to the bound:
    // enough for work on other streams to overtake it, or not.
    void delay() {
        unsigned max = config().max_delay_us;
        if (!max) return;
        uint64_t r = rng();
        if (r % 3 != 0) return;
        std::this_thread::sleep_for(std::chrono::microseconds((r >> 8) % (max + 1)));
    }

    void synchronize() {
        std::unique_lock<std::mutex> lock(mu);
        idle_cv.wait(lock, [&] { return queue.empty() && !running; });
    }

    bool idle() {
        std::lock_guard<std::mutex> lock(mu);
        return queue.empty() && !running;
    }
};

struct SimEvent {
    unsigned int flags;
    std::mutex mu;
    std::condition_variable cv;
    uint64_t recorded = 0, completed = 0;   // generations: records queued, records run
    double completed_at_ms = 0;             // host clock when the last record ran
    // Recorded inside a stream capture: its stream and how many items it
    // had recorded then (what a wait on it joins).
    SimGraph *captured_in = nullptr;
    SimStream *captured_stream = nullptr;
    size_t captured_count = 0;
};

namespace {

std::mutex capture_mu;                     // every stream's capture state
int active_captures = 0;
std::mutex streams_mu;
std::vector<SimStream *> all_streams;

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The host clock of the last block or queue item that finished anywhere.
std::atomic<double> last_progress_ms{ 0 };
void progress(void) { last_progress_ms.store(now_ms()); }

// The watchdog of every wait inside the simulator: a wait during which no
// stream finishes anything for 5 minutes is an ordering deadlock (a stream
// waiting on work queued behind it). Slowness alone (a loaded machine)
// keeps finishing blocks, so it is not mistaken for one.
template <class Pred> void wait_or_die(std::condition_variable &cv, std::unique_lock<std::mutex> &lock, Pred pred,
                                       const char *what) {
    progress();
    while (!cv.wait_for(lock, std::chrono::seconds(5), pred))
        if (now_ms() - last_progress_ms.load() > 300e3) die("%s: nothing has run for 300 s (a deadlock?)", what);
}

bool capture_active(void) {
    std::lock_guard<std::mutex> lock(capture_mu);
    return active_captures > 0;
}

// A call that would synchronise with the device, made while a capture is
// active: CUDA invalidates the capture and fails the call.
bool refuse_during_capture(const char *call) {
    if (!capture_active()) return false;
    fail(cudaErrorStreamCaptureUnsupported, "%s while a stream capture is active (it would synchronise)", call);
    return true;
}

bool check_stream(cudaStream_t s, const char *call) {
    if (s) return true;
    fail(cudaErrorInvalidResourceHandle, "%s on the legacy default stream (stream 0): name a non-blocking stream", call);
    return false;
}

}  // namespace

namespace sim {

void enqueue(cudaStream_t s, std::function<void()> fn, const char *what) {
    {
        std::lock_guard<std::mutex> lock(capture_mu);
        if (s->capturing) {
            s->capturing->nodes.push_back(std::move(fn));
            s->capturing->what.push_back(what);
            s->captured++;
            return;
        }
    }
    if (!config().async) { fn(); return; }
    std::lock_guard<std::mutex> lock(s->mu);
    s->queue.push_back(std::move(fn));
    s->work_cv.notify_one();
}

namespace {
std::mutex smem_attr_mu;
std::map<const void *, int> smem_attr;   // cudaFuncAttributeMaxDynamicSharedMemorySize per kernel
}

void set_max_dynamic_smem(const void *kernel, int bytes) {
    std::lock_guard<std::mutex> lock(smem_attr_mu);
    smem_attr[kernel] = bytes;
}

bool check_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t s, const void *kernel) {
    if (!check_stream(s, "kernel launch")) return false;
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
        fail(cudaErrorInvalidConfiguration, "launch: bad block shape (%u, %u, %u)", block.x, block.y, block.z);
        return false;
    }
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
        fail(cudaErrorInvalidConfiguration, "launch: bad grid shape (%u, %u, %u)", grid.x, grid.y, grid.z);
        return false;
    }
    size_t limit = 48 * 1024;   // the default, above which cudaFuncSetAttribute must raise it
    {
        std::lock_guard<std::mutex> lock(smem_attr_mu);
        auto it = smem_attr.find(kernel);
        if (it != smem_attr.end()) limit = std::min<size_t>((size_t)it->second, 227 * 1024);
    }
    if (smem > limit) {
        fail(cudaErrorInvalidValue, "launch: %zu bytes of dynamic shared memory (limit %zu)", smem, limit);
        return false;
    }
    return true;
}

void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
    unsigned int threads = block.x * block.y * block.z;
    unsigned int nwarps = (threads + 31) / 32;
    if (!pool) pool = new Pool;
    for (unsigned int bz = 0; bz < grid.z; bz++)
        for (unsigned int by = 0; by < grid.y; by++)
            for (unsigned int bx = 0; bx < grid.x; bx++) {
                std::barrier<> barrier((std::ptrdiff_t)threads);
                Block b;
                b.barrier = &barrier;
                b.nthreads = threads;
                b.warp_alive.reset(new std::atomic<int>[nwarps]);
                for (unsigned int w = 0; w < nwarps; w++) {
                    unsigned int n = warp_size_of(&b, w);
                    b.warp_barrier.emplace_back(new std::barrier<>((std::ptrdiff_t)n));
                    b.warp_alive[w].store((int)n);
                }
                b.lane_slot.assign(threads, 0);
                b.smem.assign(smem ? smem : 1, 0xff);
                std::function<void(unsigned int)> fn = [&](unsigned int t) {
                    block_state = &b;
                    block_tid = t;
                    blockDim = block;
                    gridDim = grid;
                    blockIdx = uint3{ bx, by, bz };
                    threadIdx = uint3{ t % block.x, (t / block.x) % block.y, t / (block.x * block.y) };
                    body();
                    // An exited thread no longer holds __syncthreads or its warp up.
                    b.warp_alive[t / 32].fetch_sub(1);
                    b.warp_barrier[t / 32]->arrive_and_drop();
                    barrier.arrive_and_drop();
                };
                pool->run(threads, fn);
                progress();
            }
}

}  // namespace sim

// ---- runtime ---------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidValue, "cudaSetDevice(%d): one device", device); }
cudaError_t cudaGetDevice(int *device) { *device = 0; return cudaSuccess; }
cudaError_t cudaGetLastError(void) { cudaError_t e = last_error; last_error = cudaSuccess; return e; }
cudaError_t cudaPeekAtLastError(void) { return last_error; }
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnmatched: return "capture was not initiated in this stream";
    case cudaErrorStreamCaptureUnjoined: return "capturing stream has unjoined work";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    default: return "unknown error";
    }
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    (void)device;
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 4; return cudaSuccess;   // few, so grid-stride loops loop
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 * 1024; return cudaSuccess;
    }
    return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute(%d): not simulated", (int)attr);
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    if (device != 0) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties: one device");
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA simulator (CPU)");
    for (int i = 0; i < 16; i++) p->uuid.bytes[i] = (char)(0x51 + i);
    p->totalGlobalMem = (size_t)16 << 30;
    p->major = 9;
    p->minor = 0;
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *version) { *version = 13000; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *version) { *version = 13000; return cudaSuccess; }

cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (refuse_during_capture("cudaMalloc")) return last_error;
    *p = aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);   // cudaMalloc's alignment
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes);   // garbage, as fresh device memory is
    std::lock_guard<std::mutex> lock(registry().mu);
    registry().device[(uintptr_t)*p] = bytes ? bytes : 1;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    if (refuse_during_capture("cudaFree")) return last_error;
    cudaDeviceSynchronize();   // as CUDA's: no queued work may still use it
    {
        std::lock_guard<std::mutex> lock(registry().mu);
        if (!registry().device.erase((uintptr_t)p)) return fail(cudaErrorInvalidValue, "cudaFree(%p): not a device allocation", p);
    }
    free(p);
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int) {
    *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes);   // garbage, as fresh pinned memory may be
    std::lock_guard<std::mutex> lock(registry().mu);
    registry().pinned[(uintptr_t)*p] = bytes ? bytes : 1;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    cudaDeviceSynchronize();
    {
        std::lock_guard<std::mutex> lock(registry().mu);
        if (!registry().pinned.erase((uintptr_t)p)) return fail(cudaErrorInvalidValue, "cudaFreeHost(%p): not a page-locked allocation", p);
    }
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *, int, size_t) {
    return fail(cudaErrorInvalidResourceHandle, "cudaMemset runs on the legacy default stream: use cudaMemsetAsync on a named stream");
}

cudaError_t cudaMemcpy(void *, const void *, size_t, cudaMemcpyKind) {
    return fail(cudaErrorInvalidResourceHandle, "cudaMemcpy runs on the legacy default stream: use cudaMemcpyAsync on a named stream");
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s) {
    if (!check_stream(s, "cudaMemsetAsync")) return last_error;
    if (bytes == 0) return cudaSuccess;
    if (!is_device(p, bytes)) return fail(cudaErrorInvalidValue, "cudaMemsetAsync(%p, %zu bytes): not device memory", p, bytes);
    sim::enqueue(s, [=] { memset(p, v, bytes); }, "memset");
    return cudaSuccess;
}

// Copies follow CUDA's rules for host memory: to and from page-locked memory
// they are asynchronous; from pageable memory the source is read before the
// call returns (into a staging copy); to pageable memory the call returns
// once the copy is done. Pageable memory cannot be captured.
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k, cudaStream_t s) {
    if (!check_stream(s, "cudaMemcpyAsync")) return last_error;
    if (bytes == 0) return cudaSuccess;
    bool dst_dev = is_device(dst, bytes), src_dev = is_device(src, bytes);
    if (k == cudaMemcpyDefault) k = dst_dev ? (src_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                            : (src_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    bool want_dst_dev = k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice;
    bool want_src_dev = k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice;
    if (dst_dev != want_dst_dev || src_dev != want_src_dev)
        return fail(cudaErrorInvalidValue, "cudaMemcpyAsync(%p <- %p, %zu bytes): the pointers are not of kind %d", dst, src, bytes, (int)k);
    bool capturing;
    {
        std::lock_guard<std::mutex> lock(capture_mu);
        capturing = s->capturing != nullptr;
    }
    if (k == cudaMemcpyHostToDevice && !is_pinned(src, bytes)) {
        if (capturing) return fail(cudaErrorStreamCaptureUnsupported, "captured cudaMemcpyAsync from pageable host memory");
        auto staged = std::make_shared<std::vector<unsigned char>>((const unsigned char *)src, (const unsigned char *)src + bytes);
        sim::enqueue(s, [=] { memcpy(dst, staged->data(), bytes); }, "copy");
        return cudaSuccess;
    }
    if (k == cudaMemcpyDeviceToHost && !is_pinned(dst, bytes)) {
        if (capturing) return fail(cudaErrorStreamCaptureUnsupported, "captured cudaMemcpyAsync to pageable host memory");
        sim::enqueue(s, [=] { memmove(dst, src, bytes); }, "copy");
        return cudaStreamSynchronize(s);
    }
    sim::enqueue(s, [=] { memmove(dst, src, bytes); }, "copy");
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *out, unsigned int flags) {
    if (!(flags & cudaStreamNonBlocking))
        return fail(cudaErrorInvalidValue, "a blocking stream: create streams with cudaStreamNonBlocking (ordering by events only)");
    SimStream *s = new SimStream;
    {
        std::lock_guard<std::mutex> lock(streams_mu);
        s->id = (unsigned int)all_streams.size() + 1;
        all_streams.push_back(s);
    }
    s->rng.seed(config().seed * 0x9E3779B97F4A7C15ull + s->id);
    if (config().async) {
        s->worker = std::thread(&SimStream::loop, s);
        s->worker.detach();   // lives until the process exits
    }
    *out = s;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!check_stream(s, "cudaStreamDestroy")) return last_error;
    s->synchronize();   // its thread stays, idle: streams are few and live as long as the process
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (!check_stream(s, "cudaStreamSynchronize")) return last_error;
    if (refuse_during_capture("cudaStreamSynchronize")) return last_error;
    s->synchronize();
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t s) {
    if (!check_stream(s, "cudaStreamQuery")) return last_error;
    if (refuse_during_capture("cudaStreamQuery")) return last_error;
    return s->idle() ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaDeviceSynchronize(void) {
    if (refuse_during_capture("cudaDeviceSynchronize")) return last_error;
    std::vector<SimStream *> streams;
    {
        std::lock_guard<std::mutex> lock(streams_mu);
        streams = all_streams;
    }
    for (SimStream *s : streams) s->synchronize();
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
    *e = new SimEvent;
    (*e)->flags = flags;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: no event");
    // CUDA lets a destroyed event's queued records finish; here it stays allocated.
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: no event");
    if (!check_stream(s, "cudaEventRecord")) return last_error;
    {
        std::lock_guard<std::mutex> lock(capture_mu);
        if (s->capturing) {   // a dependency inside the graph: capture order already honours it
            e->captured_in = s->capturing;
            e->captured_stream = s;
            e->captured_count = s->captured;
            return cudaSuccess;
        }
        e->captured_in = nullptr;
    }
    uint64_t gen;
    {
        std::lock_guard<std::mutex> lock(e->mu);
        gen = ++e->recorded;
    }
    sim::enqueue(s, [e, gen] {
        std::lock_guard<std::mutex> lock(e->mu);
        if (gen > e->completed) e->completed = gen;
        e->completed_at_ms = now_ms();
        e->cv.notify_all();
    }, "event record");
    return cudaSuccess;
}

namespace sim {

cudaError_t stream_wait_event(const char *file, int line, const char *args, cudaStream_t s, cudaEvent_t e, unsigned int) {
    if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: no event");
    if (!check_stream(s, "cudaStreamWaitEvent")) return last_error;
    const Config &c = config();
    if (!c.drop_file.empty()) {
        const char *base = strrchr(file, '/');
        base = base ? base + 1 : file;
        if (c.drop_file == base && strstr(args, c.drop_text.c_str())) {
            static std::once_flag said;
            std::call_once(said, [&] {
                fprintf(stderr, "cuda_sim: fault injection: dropping cudaStreamWaitEvent(%s) at %s:%d\n", args, base, line);
            });
            return cudaSuccess;
        }
    }
    {
        std::lock_guard<std::mutex> lock(capture_mu);
        if (e->captured_in) {
            // A wait on captured work: s joins that capture (a fork), or, being
            // in it already, now depends on the recording stream's work so far (a join).
            SimGraph *g = e->captured_in;
            if (s->capturing && s->capturing != g)
                return fail(cudaErrorStreamCaptureIsolation, "cudaStreamWaitEvent across two captures");
            if (!s->capturing) {
                s->capturing = g;
                s->capture_origin = e->captured_stream->capture_origin;
                s->captured = s->joined = 0;
                g->streams.push_back(s);
            }
            if (s == s->capture_origin && e->captured_stream != s)
                e->captured_stream->joined = std::max(e->captured_stream->joined, e->captured_count);
            return cudaSuccess;
        }
        if (s->capturing)
            return fail(cudaErrorStreamCaptureIsolation, "captured cudaStreamWaitEvent(%s) on an event recorded outside the capture (%s:%d)",
                        args, file, line);
    }
    uint64_t target;
    {
        std::lock_guard<std::mutex> lock(e->mu);
        target = e->recorded;   // the record most recently queued; none: nothing to wait for
    }
    if (target == 0) return cudaSuccess;
    std::string where = std::string("stream wait at ") + file + ":" + std::to_string(line);
    sim::enqueue(s, [e, target, where] {
        std::unique_lock<std::mutex> lock(e->mu);
        wait_or_die(e->cv, lock, [&] { return e->completed >= target; }, where.c_str());
    }, "event wait");
    return cudaSuccess;
}

}  // namespace sim

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: no event");
    if (refuse_during_capture("cudaEventSynchronize")) return last_error;
    std::unique_lock<std::mutex> lock(e->mu);
    uint64_t target = e->recorded;
    wait_or_die(e->cv, lock, [&] { return e->completed >= target; }, "cudaEventSynchronize");
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
    if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventQuery: no event");
    std::lock_guard<std::mutex> lock(e->mu);
    return e->completed >= e->recorded ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start || !end) return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: no event");
    if ((start->flags | end->flags) & cudaEventDisableTiming)
        return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime on an event created with cudaEventDisableTiming");
    if (cudaEventQuery(start) != cudaSuccess || cudaEventQuery(end) != cudaSuccess) return cudaErrorNotReady;
    *ms = (float)(end->completed_at_ms - start->completed_at_ms);
    return cudaSuccess;
}

// ---- stream capture and graphs ------------------------------------------------------------
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (!check_stream(s, "cudaStreamBeginCapture")) return last_error;
    std::lock_guard<std::mutex> lock(capture_mu);
    if (s->capturing) return fail(cudaErrorIllegalState, "cudaStreamBeginCapture: the stream is capturing already");
    SimGraph *g = new SimGraph;
    s->capturing = g;
    s->capture_origin = s;
    s->captured = s->joined = 0;
    g->streams.push_back(s);
    active_captures++;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    if (!check_stream(s, "cudaStreamEndCapture")) return last_error;
    std::lock_guard<std::mutex> lock(capture_mu);
    if (!s->capturing || s->capture_origin != s)
        return fail(cudaErrorStreamCaptureUnmatched, "cudaStreamEndCapture on a stream that did not begin the capture");
    SimGraph *g = s->capturing;
    cudaError_t err = cudaSuccess;
    for (SimStream *o : g->streams) {
        if (o != s && o->captured > o->joined) {
            fprintf(stderr, "cuda_sim: stream %u's captured work was not joined back to the capturing stream\n", o->id);
            err = cudaErrorStreamCaptureUnjoined;
        }
        o->capturing = nullptr;
        o->capture_origin = nullptr;
    }
    active_captures--;
    if (err != cudaSuccess) { delete g; *graph = nullptr; last_error = err; return err; }
    *graph = g;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    if (!check_stream(s, "cudaStreamIsCapturing")) return last_error;
    std::lock_guard<std::mutex> lock(capture_mu);
    *status = s->capturing ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
    if (!graph) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate: no graph");
    *exec = new SimGraphExec{ graph->nodes };
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (!exec) return fail(cudaErrorInvalidValue, "cudaGraphLaunch: no graph");
    if (!check_stream(s, "cudaGraphLaunch")) return last_error;
    // One queue item: the graph's work in capture order, none of it
    // interleaved with the stream's other work.
    sim::enqueue(s, [exec] { for (auto &node : exec->nodes) node(); }, "graph launch");
    return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *count) {
    if (!graph) return fail(cudaErrorInvalidValue, "cudaGraphGetNodes: no graph");
    if (nodes) return fail(cudaErrorInvalidValue, "cudaGraphGetNodes: only the count is simulated");
    *count = graph->nodes.size();
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) { delete exec; return cudaSuccess; }
cudaError_t cudaGraphDestroy(cudaGraph_t graph) { delete graph; return cudaSuccess; }
