/* comm.h — communication between the processes (ranks) of one data-parallel
 * run.
 *
 * A run started with `mpirun -np N pipeline run X.yaml` (or Slurm's `srun`)
 * has N ranks. Each rank holds the whole model, reads its own shard of each
 * batch, and the gradients are summed across ranks before every optimizer
 * step, so that all ranks keep identical parameters. Rank 0 alone writes the
 * run directory (checkpoints, logs, metrics, reports).
 *
 * Backends:
 *   none  one process (the default; every call is a cheap no-op or copy)
 *   mpi   Open MPI or any MPI-3 library; host (CPU) buffers
 *   nccl  NVIDIA NCCL for device (GPU) buffers, bootstrapped over MPI
 * The MPI and NCCL backends live in libpathseg-mpi.so / libpathseg-nccl.so,
 * which are loaded only when a run asks for them (or `auto` finds an MPI
 * launcher's environment), so a single-process run never maps libmpi.
 *
 * All calls are collective: every rank must make the same calls in the same
 * order with the same sizes. Reductions sum; the caller divides. */
#pragma once

#include <glib.h>
#include <pathseg/plugin.h>
#include <stddef.h>

G_BEGIN_DECLS

typedef struct ps_comm ps_comm;

/* `backend`: "none", "mpi", "nccl" or "auto" (mpi when the process was
 * started by mpirun/srun with more than one task, else none; the environment
 * variable PATHSEG_COMM overrides "auto"). */
ps_comm *ps_comm_new(const char *backend, GError **error);
/* Finalizes MPI when this comm initialised it. */
void ps_comm_free(ps_comm *comm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_comm, ps_comm_free)

int ps_comm_rank(const ps_comm *comm);
int ps_comm_size(const ps_comm *comm);
const char *ps_comm_backend(const ps_comm *comm); /* "none", "mpi", "nccl" */

/* In-place sums across ranks. buf: (n) */
gboolean ps_comm_allreduce_f32(ps_comm *comm, float *buf, size_t n, GError **error);
gboolean ps_comm_allreduce_f64(ps_comm *comm, double *buf, size_t n, GError **error);
/* In-place maximum (e.g. agreeing on a stop request). buf: (n) */
gboolean ps_comm_allreduce_max_i64(ps_comm *comm, int64_t *buf, size_t n, GError **error);
/* send: (n) -> recv: (size, n), rank r's values at recv[r * n]. */
gboolean ps_comm_allgather_f64(ps_comm *comm, const double *send, double *recv, size_t n,
                               GError **error);
/* Copies `bytes` bytes of `buf` from rank `root` to every rank. */
gboolean ps_comm_broadcast(ps_comm *comm, void *buf, size_t bytes, int root, GError **error);
gboolean ps_comm_barrier(ps_comm *comm, GError **error);

/* A non-blocking in-place sum of buf (n floats), for overlapping gradient
 * reduction with the rest of the backward pass. The buffer must stay valid
 * and untouched until ps_comm_wait returns. With the none backend the
 * request completes at once. */
typedef struct ps_comm_request ps_comm_request;
ps_comm_request *ps_comm_iallreduce_f32(ps_comm *comm, float *buf, size_t n, GError **error);
/* Lets the backend make progress on outstanding requests (cheap). */
void ps_comm_progress(ps_comm *comm);
/* Waits for and frees the request. */
gboolean ps_comm_wait(ps_comm_request *request, GError **error);

/* Ends every rank with exit status `code` (MPI_Abort): called when this rank
 * failed, since the others would otherwise wait for it forever. With one
 * rank it returns and the caller exits as usual. */
void ps_comm_abort(ps_comm *comm, int code);

/* The comm of a context (every ps_context has one; a single-process context
 * has the none backend). Components and stages reach it from their
 * ps_context or through ps_run_comm(). */
ps_comm *ps_context_comm(const ps_context *ctx);

/* Bytes a rank has sent through reductions, gathers and broadcasts so far
 * (for the communication-volume column of the scaling benchmark). */
uint64_t ps_comm_bytes_sent(const ps_comm *comm);

G_END_DECLS
