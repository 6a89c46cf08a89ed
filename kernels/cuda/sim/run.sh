#!/usr/bin/env bash
# run.sh: build kernels/cuda/*.cu for the CPU simulator (cuda_sim.h) and run
# tests/test_gpu_parity and tests/test_gpu_train against it: the CUDA
# kernels' logic (indexing, reductions, gradient accumulation, cuBLAS
# argument order) and the trainer's device wiring (inputs staged through the
# host mirrors, outputs read back, AdamW on the device) checked on a machine
# without a GPU. Its last line adds up both programs' TESTS lines. It says nothing about speed, and real-GPU effects
# (warp scheduling, the memory model, FMA contraction, fast-math
# intrinsics) are not modelled: a real GPU run of test_gpu_parity is still
# the test that counts.
#
#   kernels/cuda/sim/run.sh                   AddressSanitizer + UBSan
#   SIM_SAN=thread kernels/cuda/sim/run.sh    ThreadSanitizer: races between the threads of a block
#   kernels/cuda/sim/run.sh lab               instead, the kernel lab's variants (kernels/cuda/lab,
#                                             --check: each against its reference, small shapes)
#   kernels/cuda/sim/run.sh build             only build: the two test programs and ./distil ($OUT/distil)
#   kernels/cuda/sim/run.sh plant F.cu SUBST  only build $OUT/distil-planted: ./distil with kernels/cuda/F.cu
#                                             rewritten by the perl substitution SUBST, a wrong kernel
#                                             that tests/test_selftest_sim.py must see refused
set -euo pipefail
shopt -s nullglob   # a folder without .cu files (lab/) adds nothing
MODE=${1:-test}
cd "$(dirname "$0")/../../.."
SAN=${SIM_SAN:-address,undefined}
OUT=build/cuda-sim-${SAN//,/-}
mkdir -p "$OUT/src/kernels/cuda" "$OUT/obj"
FLAGS="-O1 -g -fsanitize=$SAN -fno-omit-frame-pointer -DDISTIL_CUDA -D_GNU_SOURCE"
CXX="g++ -std=c++20 $FLAGS -I$OUT/src -Ikernels/cuda/sim/include -I. -pthread"
# The trainer's libraries, found as the Makefile finds them.
PKGS="hdf5 yaml-0.1 libzstd zlib ompi jansson"
CC="gcc -std=c11 $FLAGS -fopenmp -I. $(pkg-config --cflags $PKGS openblas)"
# The trainer (data/, train/) without DISTIL_CUDA: its only CUDA use is
# NCCL, for all-reduces across ranks, which is not simulated, and these
# tests run one process.
TRAIN_CC="${CC/-DDISTIL_CUDA /}"

# The sources, rewritten where C++ cannot read CUDA: kernel<<<cfg>>>(args)
# becomes sim::Launch(cfg).run(kernel, args), `extern __shared__ T x[];`
# a pointer to the block's dynamic shared memory, and `__shared__ T x[N];`
# a reference to the running block's own copy (sim::block_shared). Unchanged files keep their
# timestamps, so a second run rebuilds only what changed.
mkdir -p "$OUT/src/kernels/cuda/lab"
for f in kernels/cuda/*.cu kernels/cuda/*.cuh kernels/cuda/*.h kernels/cuda/lab/*.cu kernels/cuda/lab/*.cuh; do
  perl -0pe 's/((?:\w+::)*[A-Za-z_]\w*(?:<[^<>;()]*>)?)<<<(.*?)>>>\(/sim::Launch($2).run($1, /gs;
            s/extern __shared__ (?:(?:__align__|alignas)\(\d+\) )?(\w+) (\w+)\[\];/$1 *$2 = ($1 *)sim::dynamic_smem();/g;
            s{__shared__\s+(?:(?:__align__|alignas)\(\d+\)\s+)?([A-Za-z_][\w:]*(?:<[^;<>]*>)?)\s+([^;]+);}
             {my $t = $1; join " ", map { /^\s*(\w+)\s*(.*?)\s*$/;
               "static char $1_shared_tag; auto &$1 = *sim::block_shared<$t" . ($2 =~ s/\s//gr) . ">(&$1_shared_tag);" }
               split /,/, $2}ge' \
    "$f" > "$OUT/src/$f.new"
  if cmp -s "$OUT/src/$f.new" "$OUT/src/$f"; then rm "$OUT/src/$f.new"; else mv "$OUT/src/$f.new" "$OUT/src/$f"; fi
done

stale() {  # object, sources...: true when the object is missing or older than any source or header
  local obj=$1 dep; shift
  [ -f "$obj" ] || return 0
  for dep in "$@" kernels/cuda/sim/cuda_sim.h "$OUT"/src/kernels/cuda/*.cuh "$OUT"/src/kernels/cuda/*.h \
             autograd/*.h kernels/*.h kernels/cpu/*.h data/*.h data/*/*.h train/*/*.h tests/*.h tests/fixtures/*.bin; do
    [ "$dep" -nt "$obj" ] && return 0
  done
  return 1
}

# CUDA files: the op kernels must build; a file that needs what the
# simulator lacks (NCCL...) is left out, and the link says if it was needed.
for f in "$OUT"/src/kernels/cuda/*.cu; do
  obj="$OUT/obj/$(basename "$f").o"
  if stale "$obj" "$f"; then
    ( $CXX -x c++ -include kernels/cuda/sim/cuda_sim.h -c "$f" -o "$obj" 2>"$obj.log" ||
      { echo "cuda_sim: left out $(basename "$f") (does not build here; see $obj.log)"; rm -f "$obj"; } ) &
  fi
done
wait
for f in cuda_sim cuda_sim_blas; do
  stale "$OUT/obj/$f.o" kernels/cuda/sim/$f.cpp && $CXX -c kernels/cuda/sim/$f.cpp -o "$OUT/obj/$f.o"
done
pids=()
lib_objs=("$OUT/obj/cuda_sim.o" "$OUT/obj/cuda_sim_blas.o")
for f in "$OUT"/src/kernels/cuda/*.cu; do
  obj="$OUT/obj/$(basename "$f").o"
  [ -f "$obj" ] && lib_objs+=("$obj")
done
for f in autograd/*.c kernels/*.c kernels/cpu/*.c tests/test_gpu_parity.c tests/test_gpu_train.c data/*.c data/*/*.c train/*/*.c; do
  [ "$f" = train/cmd/main.c ] && continue
  obj="$OUT/obj/$(echo "$f" | tr / _).o"
  case $f in tests/*) ;; *) lib_objs+=("$obj") ;; esac
  cc=$CC
  case $f in data/*|train/*) cc=$TRAIN_CC ;; esac
  if stale "$obj" "$f"; then $cc -c "$f" -o "$obj" & pids+=($!); fi
done
for p in "${pids[@]}"; do wait "$p"; done   # each one, so a compile error stops the script
# An archive of today's sources only (objects of renamed or deleted files
# may linger in obj/), so only what each test reaches is linked.
rm -f "$OUT/libsim.a"
ar rcs "$OUT/libsim.a" "${lib_objs[@]}"
LIBS="$(pkg-config --libs $PKGS openblas) -lm"
for t in test_gpu_parity test_gpu_train; do
  g++ -fsanitize=$SAN -fopenmp -pthread "$OUT/obj/tests_$t.c.o" "$OUT/libsim.a" -o "$OUT/$t" $LIBS
done
if [ "$MODE" = lab ]; then
  status=0
  for f in "$OUT"/src/kernels/cuda/lab/*.cu; do
    name=$(basename "$f" .cu)
    $CXX -x c++ -include kernels/cuda/sim/cuda_sim.h -c "$f" -o "$OUT/obj/lab_$name.o"
    g++ -fsanitize=$SAN -fopenmp -pthread "$OUT/obj/lab_$name.o" "$OUT/libsim.a" -o "$OUT/lab_$name" \
        $LIBS
    "$OUT/lab_$name" --check || status=1
  done
  exit $status
fi
# ./distil itself, its commands running the CUDA kernels on the simulator
# (main.c with DISTIL_CUDA, so that --version names the CUDA backend).
stale "$OUT/obj/train_cmd_main.c.o" train/cmd/main.c && $CC -c train/cmd/main.c -o "$OUT/obj/train_cmd_main.c.o"
g++ -fsanitize=$SAN -fopenmp -pthread "$OUT/obj/train_cmd_main.c.o" "$OUT/libsim.a" -o "$OUT/distil" $LIBS
if [ "$MODE" = plant ]; then
  # One kernel file rewritten into its own folder and built; the archive
  # without the original's object, so the planted one is what links.
  file=${2:?plant: which kernels/cuda file}; subst=${3:?plant: a perl substitution}
  mkdir -p "$OUT/plant/kernels/cuda"
  perl -pe "$subst" "$OUT/src/kernels/cuda/$file" > "$OUT/plant/kernels/cuda/$file"
  if cmp -s "$OUT/src/kernels/cuda/$file" "$OUT/plant/kernels/cuda/$file"; then
    echo "cuda_sim: plant: '$subst' changes nothing in kernels/cuda/$file; update the plant" >&2
    exit 1
  fi
  $CXX -I"$OUT/src" -x c++ -include kernels/cuda/sim/cuda_sim.h -c "$OUT/plant/kernels/cuda/$file" -o "$OUT/obj/planted.o"
  cp "$OUT/libsim.a" "$OUT/libsim-planted.a"
  ar d "$OUT/libsim-planted.a" "$file.o"
  g++ -fsanitize=$SAN -fopenmp -pthread "$OUT/obj/train_cmd_main.c.o" "$OUT/obj/planted.o" "$OUT/libsim-planted.a" \
      -o "$OUT/distil-planted" $LIBS
  echo "cuda_sim: built $OUT/distil-planted (kernels/cuda/$file: $subst)"
  exit 0
fi
[ "$MODE" = build ] && exit 0
# libgomp's barriers are invisible to ThreadSanitizer, so the CPU kernels'
# OpenMP loops would drown the report in false races: one thread there.
[ "$SAN" = thread ] && export OMP_NUM_THREADS=1
passed=0; failed=0; skipped=0; status=0
for t in test_gpu_parity test_gpu_train; do
  echo "cuda_sim: running $OUT/$t"
  "$OUT/$t" | tee "$OUT/$t.log" || status=1
  read -r _ p _ f _ s _ < <(grep -E '^TESTS [0-9]+ passed' "$OUT/$t.log" | tail -n 1 || echo "TESTS 0 passed, 1 failed, 0 skipped")
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done
echo "TESTS $passed passed, $failed failed, $skipped skipped"
exit $status
