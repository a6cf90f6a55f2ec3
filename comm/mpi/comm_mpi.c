/* comm_mpi.c — the MPI backend of comm.h (libpathseg-mpi.so): host buffers,
 * MPI_COMM_WORLD. core/comm.c loads this module only for runs with more than
 * one rank (or PATHSEG_COMM=mpi).
 *
 * MPI counts are int: buffers larger than INT_MAX elements are reduced in
 * pieces. Threads: MPI_THREAD_FUNNELED is enough, since only the thread that
 * runs the stages calls MPI (data loaders never do). */
#include <limits.h>
#include <mpi.h>
#include <pathseg/error.h>
#include <string.h>

#include "comm_backend.h"

#define PS_ERROR_COMM PS_ERROR_FAILED

typedef struct {
  gboolean finalize; /* this module called MPI_Init */
} mpi_state;

static gboolean check(int rc, const char *what, GError **error) {
  if (rc == MPI_SUCCESS) return TRUE;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) g_strlcpy(msg, "unknown MPI error", sizeof msg);
  g_set_error(error, PS_ERROR, PS_ERROR_COMM, "%s failed: %s", what, msg);
  return FALSE;
}

static void *mpi_init(int *rank, int *size, GError **error) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  mpi_state *s = g_new0(mpi_state, 1);
  if (!initialized) {
    int provided = 0;
    if (!check(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", error)) {
      g_free(s);
      return NULL;
    }
    s->finalize = TRUE;
  }
  /* Errors come back as return codes (and become GErrors), not aborts. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  MPI_Comm_size(MPI_COMM_WORLD, size);
  return s;
}

static void mpi_finalize(void *state) {
  mpi_state *s = state;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (s->finalize && !finalized) MPI_Finalize();
  g_free(s);
}

static MPI_Datatype datatype(ps_comm_dtype t, size_t *elem) {
  switch (t) {
  case PS_COMM_F32: *elem = 4; return MPI_FLOAT;
  case PS_COMM_F64: *elem = 8; return MPI_DOUBLE;
  default: *elem = 8; return MPI_INT64_T;
  }
}

static gboolean mpi_allreduce(void *state, void *buf, size_t n, ps_comm_dtype dtype, ps_comm_reduce op,
                              GError **error) {
  (void)state;
  size_t elem = 0;
  MPI_Datatype t = datatype(dtype, &elem);
  for (size_t at = 0; at < n;) {
    int count = (int)MIN(n - at, (size_t)INT_MAX);
    if (!check(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * elem, count, t,
                             op == PS_COMM_MAX ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD),
               "MPI_Allreduce", error))
      return FALSE;
    at += (size_t)count;
  }
  return TRUE;
}

static gboolean mpi_allgather(void *state, const void *send, void *recv, size_t bytes, GError **error) {
  (void)state;
  if (bytes > INT_MAX) {
    g_set_error(error, PS_ERROR, PS_ERROR_COMM, "MPI_Allgather of %zu bytes per rank is too large", bytes);
    return FALSE;
  }
  return check(MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD),
               "MPI_Allgather", error);
}

static gboolean mpi_broadcast(void *state, void *buf, size_t bytes, int root, GError **error) {
  (void)state;
  for (size_t at = 0; at < bytes;) {
    int count = (int)MIN(bytes - at, (size_t)INT_MAX);
    if (!check(MPI_Bcast((char *)buf + at, count, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast", error))
      return FALSE;
    at += (size_t)count;
  }
  return TRUE;
}

static gboolean mpi_barrier(void *state, GError **error) {
  (void)state;
  return check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", error);
}

static void *mpi_iallreduce(void *state, float *buf, size_t n, GError **error) {
  (void)state;
  if (n > INT_MAX) {
    g_set_error(error, PS_ERROR, PS_ERROR_COMM, "MPI_Iallreduce of %zu floats is too large", n);
    return NULL;
  }
  MPI_Request *req = g_new(MPI_Request, 1);
  if (!check(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, req),
             "MPI_Iallreduce", error)) {
    g_free(req);
    return NULL;
  }
  return req;
}

static gboolean mpi_wait(void *state, void *request, GError **error) {
  (void)state;
  MPI_Request *req = request;
  gboolean ok = check(MPI_Wait(req, MPI_STATUS_IGNORE), "MPI_Wait", error);
  g_free(req);
  return ok;
}

/* Open MPI moves non-blocking collectives forward only inside MPI calls
 * (there is no progress thread by default): poking the library between the
 * backward passes of two components lets a reduction advance meanwhile. */
static void mpi_progress(void *state) {
  (void)state;
  int flag = 0;
  MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
}

static void mpi_abort(void *state, int code) {
  (void)state;
  MPI_Abort(MPI_COMM_WORLD, code);
}

static const ps_comm_ops ops = {
    sizeof(ps_comm_ops), "mpi",          mpi_init,       mpi_finalize, mpi_allreduce, mpi_allgather,
    mpi_broadcast,       mpi_barrier,    mpi_iallreduce, mpi_wait,     mpi_progress,  mpi_abort,
};

__attribute__((visibility("default"))) const ps_comm_ops *ps_comm_backend_ops(void) { return &ops; }
