// cublasLt.h: the simulator's stand-in (see kernels/cuda/sim/cuda_sim.h).
#pragma once
#include "kernels/cuda/sim/cuda_sim.h"
