// profile.h: where a step's time goes, op by op (DISTIL_PROFILE=1).
//
// With the variable set, graph_forward and graph_backward time every node
// (and every output recomputed in backward) and add the seconds to its op's
// row; at exit the table goes to stderr, the largest first. On a device each
// node is synchronised first, so the figures are the kernels' own but the
// run is slower than without the profile. Off by default; costs one branch
// per node then.
#pragma once
#include "autograd/tensor.h"   // defines: Device

enum { PROF_FORWARD, PROF_BACKWARD, PROF_RECOMPUTE, PROF_N_PHASES };

// 1 when DISTIL_PROFILE is set to anything but "0" (read once).
int prof_enabled(void);
// The time now, in seconds, after the device's queued work has finished.
double prof_now(Device d);
// Adds s seconds to op's row in phase.
void prof_add(int op, int phase, double s);
