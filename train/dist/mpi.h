// mpi.h: what train/dist/world.c shares with train/dist/grad_sync.c beyond
// dist.h: the job's communicator and the watchdog-timed wait. Only these two
// files include mpi.h through here; the rest of distil sees dist.h alone.
#pragma once
#include <mpi.h>
#include "train/dist/dist.h"

// A duplicate of MPI_COMM_WORLD for distil's collectives (MPI_COMM_NULL
// without a launcher).
MPI_Comm dist_comm(void);

// Wait for n requests under the watchdog, named `what` in its message. It
// polls (MPI_Testall) rather than blocking in MPI_Waitall: the yield between
// polls leaves the cores to ranks still computing when CPU ranks share a
// node, and rank 0 reads the other ranks' arrival notes meanwhile.
int dist_waitall(int n, MPI_Request *reqs, const char *what);

// Whether MPI runs MPI_THREAD_SERIALIZED (or better): then another thread
// may make MPI calls while it alone does, as GradSync's progress thread.
int dist_mpi_serialized(void);
