/* comm_nccl.c — the NCCL backend of comm.h (libpathseg-nccl.so).
 *
 * MPI starts the ranks and carries the control plane (the NCCL unique id,
 * barriers, broadcasts and gathers of small host data); NCCL sums the
 * gradients. Each rank uses GPU (node-local rank mod device count).
 * Reductions of device buffers go straight to NCCL; host buffers (pathseg's
 * CPU tensors) are staged through one device buffer that grows as needed,
 * so every tensor a stage hands over works, wherever it lives. */
#include <cuda_runtime.h>
#include <limits.h>
#include <mpi.h>
#include <nccl.h>
#include <pathseg/error.h>
#include <string.h>

#include "comm_backend.h"

typedef struct {
  gboolean finalize_mpi;
  ncclComm_t nccl;
  cudaStream_t stream;
  void *staging; /* device buffer for host data */
  size_t staging_bytes;
} nccl_state;

static gboolean cuda_ok(cudaError_t rc, const char *what, GError **error) {
  if (rc == cudaSuccess) return TRUE;
  g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "%s failed: %s", what, cudaGetErrorString(rc));
  return FALSE;
}

static gboolean nccl_ok(ncclResult_t rc, const char *what, GError **error) {
  if (rc == ncclSuccess) return TRUE;
  g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "%s failed: %s", what, ncclGetErrorString(rc));
  return FALSE;
}

static gboolean mpi_ok(int rc, const char *what, GError **error) {
  if (rc == MPI_SUCCESS) return TRUE;
  g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "%s failed (MPI error %d)", what, rc);
  return FALSE;
}

static int local_rank(void) {
  MPI_Comm node;
  int r = 0;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_rank(node, &r);
    MPI_Comm_free(&node);
  }
  return r;
}

static void *nccl_init(int *rank, int *size, GError **error) {
  nccl_state *s = g_new0(nccl_state, 1);
  int initialized = 0, provided = 0, devices = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    if (!mpi_ok(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", error))
      goto fail;
    s->finalize_mpi = TRUE;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  MPI_Comm_size(MPI_COMM_WORLD, size);
  if (!cuda_ok(cudaGetDeviceCount(&devices), "cudaGetDeviceCount", error)) goto fail;
  if (devices < 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "the nccl backend needs a CUDA device; none found");
    goto fail;
  }
  if (!cuda_ok(cudaSetDevice(local_rank() % devices), "cudaSetDevice", error) ||
      !cuda_ok(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate", error))
    goto fail;
  ncclUniqueId id;
  if (*rank == 0 && !nccl_ok(ncclGetUniqueId(&id), "ncclGetUniqueId", error)) goto fail;
  if (!mpi_ok(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast (NCCL id)", error) ||
      !nccl_ok(ncclCommInitRank(&s->nccl, *size, id, *rank), "ncclCommInitRank", error))
    goto fail;
  return s;
fail:
  if (s->stream) cudaStreamDestroy(s->stream);
  if (s->finalize_mpi) MPI_Finalize();
  g_free(s);
  return NULL;
}

static void nccl_finalize(void *state) {
  nccl_state *s = state;
  if (s->nccl) ncclCommDestroy(s->nccl);
  if (s->staging) cudaFree(s->staging);
  if (s->stream) cudaStreamDestroy(s->stream);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (s->finalize_mpi && !finalized) MPI_Finalize();
  g_free(s);
}

static gboolean on_device(const void *p) {
  struct cudaPointerAttributes a;
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError(); /* clear the sticky error of a plain host pointer */
    return FALSE;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

static gboolean nccl_allreduce(void *state, void *buf, size_t n, ps_comm_dtype dtype, ps_comm_reduce op,
                               GError **error) {
  nccl_state *s = state;
  ncclDataType_t t = dtype == PS_COMM_F32 ? ncclFloat32 : dtype == PS_COMM_F64 ? ncclFloat64 : ncclInt64;
  size_t bytes = n * (dtype == PS_COMM_F32 ? 4 : 8);
  void *dev = buf;
  gboolean staged = !on_device(buf);
  if (staged) {
    if (s->staging_bytes < bytes) {
      if (s->staging) cudaFree(s->staging);
      s->staging = NULL;
      s->staging_bytes = 0;
      if (!cuda_ok(cudaMalloc(&s->staging, bytes), "cudaMalloc (staging)", error)) return FALSE;
      s->staging_bytes = bytes;
    }
    dev = s->staging;
    if (!cuda_ok(cudaMemcpyAsync(dev, buf, bytes, cudaMemcpyHostToDevice, s->stream), "cudaMemcpy", error))
      return FALSE;
  }
  if (!nccl_ok(ncclAllReduce(dev, dev, n, t, op == PS_COMM_MAX ? ncclMax : ncclSum, s->nccl, s->stream),
               "ncclAllReduce", error))
    return FALSE;
  if (staged &&
      !cuda_ok(cudaMemcpyAsync(buf, dev, bytes, cudaMemcpyDeviceToHost, s->stream), "cudaMemcpy", error))
    return FALSE;
  return cuda_ok(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize", error);
}

/* Small host-side control data goes over MPI. */
static gboolean nccl_allgather(void *state, const void *send, void *recv, size_t bytes, GError **error) {
  (void)state;
  if (bytes > INT_MAX) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "allgather of %zu bytes per rank is too large", bytes);
    return FALSE;
  }
  return mpi_ok(MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD),
                "MPI_Allgather", error);
}

static gboolean nccl_broadcast(void *state, void *buf, size_t bytes, int root, GError **error) {
  nccl_state *s = state;
  if (on_device(buf))
    return nccl_ok(ncclBroadcast(buf, buf, bytes, ncclUint8, root, s->nccl, s->stream), "ncclBroadcast",
                   error) &&
           cuda_ok(cudaStreamSynchronize(s->stream), "cudaStreamSynchronize", error);
  for (size_t at = 0; at < bytes;) {
    int count = (int)MIN(bytes - at, (size_t)INT_MAX);
    if (!mpi_ok(MPI_Bcast((char *)buf + at, count, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast", error))
      return FALSE;
    at += (size_t)count;
  }
  return TRUE;
}

static gboolean nccl_barrier(void *state, GError **error) {
  (void)state;
  return mpi_ok(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", error);
}

/* NCCL runs on its stream, which already overlaps the host; the "request"
 * is the buffer whose reduction finishes at the next wait. */
typedef struct {
  float *buf;
  size_t n;
} nccl_request;

static void *nccl_iallreduce(void *state, float *buf, size_t n, GError **error) {
  (void)state;
  (void)error;
  nccl_request *r = g_new(nccl_request, 1);
  r->buf = buf;
  r->n = n;
  return r;
}

static gboolean nccl_wait(void *state, void *request, GError **error) {
  nccl_request *r = request;
  gboolean ok = nccl_allreduce(state, r->buf, r->n, PS_COMM_F32, PS_COMM_SUM, error);
  g_free(r);
  return ok;
}

static void nccl_abort(void *state, int code) {
  nccl_state *s = state;
  if (s->nccl) ncclCommAbort(s->nccl);
  MPI_Abort(MPI_COMM_WORLD, code);
}

static const ps_comm_ops ops = {
    sizeof(ps_comm_ops), "nccl",          nccl_init,       nccl_finalize, nccl_allreduce, nccl_allgather,
    nccl_broadcast,      nccl_barrier,    nccl_iallreduce, nccl_wait,     NULL,           nccl_abort,
};

__attribute__((visibility("default"))) const ps_comm_ops *ps_comm_backend_ops(void) { return &ops; }
