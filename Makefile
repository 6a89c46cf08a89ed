# distil: teacher-to-student distillation for driving models, in C11 and CUDA.
#
#   make              build ./distil and the test programs
#   make test         install missing packages, build, run every CPU test
#   make test SAN=1   the same under AddressSanitizer + UBSan (in build/san)
#   make test-gpu     the CUDA parity suite (skipped, and counted so, without a GPU)
#   make bench        benchmarks, each printing ratios against a peer measured in the same run
#   make demo         synthesise the demo fleet, train recipes/demo.yaml on the CPU
#   make cuda-check   compile all CUDA code for sm_90 and portable PTX, warnings as errors
#   make gpu-carry    .carry/gpu-check.tar.xz: the CUDA build and its libraries, for a GPU machine
#   make gpu-check    on a GPU machine: self-test, GPU tests, demo, PyTorch, MFU, all-reduce (< 8 min)
#   make fuzz         build the libFuzzer harnesses (clang, ASan + UBSan), make their seeds with
#                     distil, replay the regression files; FUZZ_SECONDS=N runs each harness N s
#   make deps         install the Debian packages distil needs (or print the command)
#   make deps-test    the same plus what the tests use (Chromium, Python packages in build/pydeps)
#
# Options: CUDA=auto|0|1 (auto: build the CUDA backend when nvcc is found),
# SAN=1, ARCH=-march=native (off by default so a binary runs on any x86-64),
# V=1 (print every command line).

CUDA ?= auto
SAN ?= 0
ARCH ?=
# Debian's python, which has python3-h5py/numpy/zstandard (a pyenv python on PATH may not).
PYTHON ?= /usr/bin/python3

# ---- CUDA: found, forced, or off -------------------------------------------
NVCC ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc))
ifeq ($(CUDA),auto)
  # The sanitizers and the CUDA runtime fight over the address space (ASan's
  # shadow gap), so SAN builds are CPU-only unless CUDA=1 is asked for.
  ifeq ($(SAN),1)
    USE_CUDA := 0
  else
    USE_CUDA := $(if $(NVCC),1,0)
  endif
else
  USE_CUDA := $(CUDA)
endif
ifeq ($(USE_CUDA),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 but nvcc was not found; install the CUDA toolkit or put nvcc on PATH)
  endif
  CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
endif

# ---- where things go -----------------------------------------------------
# One folder per configuration, so objects built with other flags never mix.
ifeq ($(SAN),1)
  BUILD := build/san$(if $(filter 1,$(USE_CUDA)),-cuda,)
else
  BUILD := build/$(if $(filter 1,$(USE_CUDA)),cuda,cpu)
endif

# ---- flags -----------------------------------------------------------------
CC := gcc
# HDF5 (drive logs), libyaml (recipes), zstd and zlib (chunk codecs), Open
# MPI (launch, CPU all-reduce), jansson (every JSON file: safetensors
# headers, config.json, vocab.json, eval.json, metrics.jsonl).
PKGS := hdf5 yaml-0.1 libzstd zlib ompi jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# OpenBLAS: the OpenMP build when installed (scripts/deps.sh installs it), so
# its threads are the kernels' own OpenMP pool. The pthread build next to
# OpenMP loops keeps two pools spinning against each other on the same cores.
# The rpath picks it over the libopenblas.so.0 the alternatives system points at.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
OPENBLAS_OMP := /usr/lib/$(MULTIARCH)/openblas-openmp
ifneq ($(wildcard $(OPENBLAS_OMP)/libopenblas.so),)
  BLAS_CFLAGS := -I/usr/include/$(MULTIARCH)/openblas-openmp
  BLAS_LIBS := -L$(OPENBLAS_OMP) -lopenblas -Wl,-rpath,$(OPENBLAS_OMP)
else
  BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
  BLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null)
endif

# -I. so includes read "autograd/graph.h"; -fopenmp for the CPU kernels'
# parallel loops; _GNU_SOURCE for clock_gettime, pthread affinity, strdup.
CFLAGS := -std=c11 -O3 -g -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -fopenmp \
          -D_GNU_SOURCE -I. $(PKG_CFLAGS) $(BLAS_CFLAGS) $(ARCH)
LDLIBS := $(PKG_LIBS) $(BLAS_LIBS) -lm -lpthread
# A GNU build ID in every program: the self-test's result cache keys on it
# (train/selftest/cache.c), so a rebuilt binary checks its GPU again.
LDFLAGS += -Wl,--build-id=sha1

ifeq ($(SAN),1)
  CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

# sm_90 machine code for the H100/H200, plus compute_80 PTX that the driver
# JIT-compiles for any newer GPU.
NVCC_GENCODE := -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
# Warnings are errors in CUDA code: it is compiled everywhere but run only on
# GPU machines, so the compiler is its first line of defence.
NVCCFLAGS := -O3 -std=c++17 -I. $(NVCC_GENCODE) -Werror all-warnings \
             -Xcompiler -Wall,-Wextra,-Wno-unused-parameter,-Werror
ifeq ($(USE_CUDA),1)
  CFLAGS += -DDISTIL_CUDA -I$(CUDA_HOME)/include
  NVCCFLAGS += -DDISTIL_CUDA
  # NCCL carries the gradient all-reduce between GPUs (kernels/cuda/nccl_comm.cu).
  LDLIBS += -L$(CUDA_HOME)/lib64 -lcudart_static -lcublas -lcublasLt -lnccl -ldl -lrt -lstdc++ \
            -Wl,-rpath,$(CUDA_HOME)/lib64
endif

# ---- sources ---------------------------------------------------------------
# Every .c under these folders is part of the library; train/cmd/main.c is
# the CLI. train/ and data/ have one level of sub-folders (docs/autograd.md
# and the README's map say what each holds).
LIB_SRC := $(wildcard autograd/*.c kernels/*.c kernels/cpu/*.c data/*.c data/*/*.c train/*/*.c)
LIB_SRC := $(filter-out train/cmd/main.c,$(LIB_SRC))
CU_SRC := $(wildcard kernels/cuda/*.cu)
# The kernel lab (kernels/cuda/lab: each kernel's variants, checked and
# timed): built with the CUDA backend, so that -Werror keeps it compiling.
LAB_SRC := $(wildcard kernels/cuda/lab/*.cu)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard tests/bench_*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(USE_CUDA),1)
  LIB_OBJ += $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
endif
TEST_BIN := $(TEST_SRC:%.c=$(BUILD)/%)
BENCH_BIN := $(BENCH_SRC:%.c=$(BUILD)/%)
LAB_BIN := $(if $(filter 1,$(USE_CUDA)),$(LAB_SRC:kernels/cuda/lab/%.cu=$(BUILD)/lab/%),)
# The fuzzing harnesses (fuzz/fuzz_*.c), also built with the compiler of this
# build into tests/test_fuzz_replay, which runs the regression files of
# tests/fuzz/ through them (make test, and make test SAN=1).
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_REPLAY_OBJ := $(FUZZ_SRC:%.c=$(BUILD)/%.o)

.PHONY: all deps deps-test deps-fuzz test test-gpu bench bench-dist demo cuda-check gpu-carry gpu-check fuzz fuzz-build clean
.DEFAULT_GOAL := all

all: $(BUILD)/distil $(TEST_BIN) $(BENCH_BIN) $(LAB_BIN)
ifneq ($(SAN),1)
	@ln -sf $(BUILD)/distil distil
endif

# Quiet rules ("CC file"); V=1 prints the full command lines.
Q := $(if $(filter 1,$(V)),,@)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC     $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC   $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

# The PyTorch fixtures are assembled into the binary (.incbin) for
# `distil selftest`; the compiler's dependency files do not see them.
$(BUILD)/train/selftest/fixtures_embedded.o: tests/fixtures/ops.bin tests/fixtures/losses.bin

$(BUILD)/libdistil.a: $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/distil: $(BUILD)/train/cmd/main.o $(BUILD)/libdistil.a
	@$(if $(Q),echo "  LINK   $@")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libdistil.a
	@$(if $(Q),echo "  LINK   $@")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/lab/%: $(BUILD)/kernels/cuda/lab/%.cu.o $(BUILD)/libdistil.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK   $@")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# Each harness's entry points renamed after it, so that one program holds them all.
$(BUILD)/fuzz/%.o: fuzz/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC     $<")
	$(Q)$(CC) $(CFLAGS) -DLLVMFuzzerTestOneInput=$*_one -DLLVMFuzzerInitialize=$*_init -MMD -MP -c $< -o $@

$(BUILD)/tests/test_fuzz_replay: $(BUILD)/tests/test_fuzz_replay.o $(FUZZ_REPLAY_OBJ) $(BUILD)/libdistil.a
	@$(if $(Q),echo "  LINK   $@")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

-include $(LAB_SRC:%.cu=$(BUILD)/%.cu.d) $(LIB_OBJ:.o=.d) $(BUILD)/train/cmd/main.d $(TEST_SRC:%.c=$(BUILD)/%.d) $(BENCH_SRC:%.c=$(BUILD)/%.d) $(FUZZ_REPLAY_OBJ:.o=.d)

# ---- running ---------------------------------------------------------------
deps:
	@bash scripts/deps.sh

deps-test:
	@bash scripts/deps.sh --test

# tests/run.sh runs every test program and script and prints "N passed, N
# failed". Under SAN=1 it runs the C test programs only: the scripts drive
# the same code end to end, and the CUDA simulator pass is sanitized itself.
test: deps-test
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/run.sh $(if $(filter 1,$(SAN)),c,all)

test-gpu: deps-test
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/run.sh gpu

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash scripts/bench.sh

# Step time at 1 and 2 ranks on one global batch and the share of the
# gradient all-reduce hidden behind backward (docs/distributed.md); CPU ranks
# over MPI, plus the bus bandwidth beside NCCL's own all_reduce on a GPU build.
bench-dist: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bash scripts/bench_dist.sh

# The demo trains on the CPU, so it builds the CPU-only binary (no nvcc wait).
demo: deps
	@$(MAKE) --no-print-directory CUDA=0 SAN=0 all
	@BUILD=build/cpu PYTHON=$(PYTHON) bash scripts/demo.sh

# CI's guard against rot: all CUDA code compiles (sm_90 and compute_80 PTX,
# warnings as errors, see NVCCFLAGS) and links into every program.
cuda-check:
	@test -n "$(NVCC)" || { echo "cuda-check: nvcc not found"; exit 1; }
	@$(MAKE) --no-print-directory CUDA=1 SAN=0 all
	@echo "cuda-check: all CUDA code compiles and links (sm_90 + compute_80, -Werror)"

# The GPU check (docs/performance.md, "The GPU check"). gpu-carry builds the
# CUDA backend here and packs it with its shared libraries for a GPU machine
# that has no compiler; gpu-check runs there and builds nothing (it uses the
# carry, or build/cuda on a machine with nvcc and a GPU).
gpu-carry:
	@bash scripts/gpu_carry.sh

gpu-check:
	@bash scripts/gpu_check.sh

# ---- fuzzing -------------------------------------------------------------------
# libFuzzer harnesses over distil's readers (fuzz/, docs/robustness.md): the
# library again, built by clang with ASan, UBSan and libFuzzer's coverage
# counters, CPU only, into build/fuzz. scripts/fuzz.sh makes the seeds with
# the CPU build of distil (a fleet, a trained checkpoint, its export, its
# recipe), replays tests/fuzz/, then runs each harness FUZZ_SECONDS seconds
# (FUZZ_HARNESSES="recipe ..." picks some) and reports executions, coverage
# and findings; it fails on a finding. No -fopenmp: the harnesses run one
# thread, the pragmas are ignored and omp_* calls go to gcc's libgomp (which
# the OpenMP OpenBLAS loads anyway), not to a second runtime.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 0
FUZZ_BUILD := build/fuzz
FUZZ_CFLAGS := -std=c11 -O1 -g -fno-omit-frame-pointer -Wno-unknown-pragmas -D_GNU_SOURCE -I. $(PKG_CFLAGS) $(BLAS_CFLAGS) \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CLANG  $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libdistil.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/fuzz/fuzz_%.o $(FUZZ_BUILD)/libdistil.a
	@$(if $(Q),echo "  LINK   $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ -o $@ $(PKG_LIBS) $(BLAS_LIBS) -lgomp -lm -lpthread

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_SRC:%.c=$(FUZZ_BUILD)/%.d)

deps-fuzz:
	@bash scripts/deps.sh --fuzz

fuzz-build: $(FUZZ_BIN)

fuzz: deps-fuzz
	@$(MAKE) --no-print-directory CUDA=0 SAN=0 all
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) DISTIL=build/cpu/distil REPLAY=build/cpu/tests/test_fuzz_replay bash scripts/fuzz.sh

clean:
	rm -rf build distil
