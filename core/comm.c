/* comm.c — the communication layer of data-parallel runs (see comm.h): the
 * built-in single-process backend, and loading the MPI or NCCL backend
 * module (libpathseg-mpi.so, libpathseg-nccl.so) only when a run asks for
 * one, so that a single-process run never maps an MPI library. */
#include <dlfcn.h>
#include <pathseg/comm.h>
#include <pathseg/registry.h>
#include <string.h>

#include "build_config.h"
#include "comm_backend.h"
#include "context_internal.h"

struct ps_comm {
  const ps_comm_ops *ops; /* NULL: the none backend */
  void *state;
  void *module;           /* dlopen handle of the backend module */
  int rank, size;
  uint64_t bytes_sent;
};

struct ps_comm_request {
  ps_comm *comm;
  void *handle; /* the backend's request; NULL when already complete */
};

/* Launchers set these in every task's environment: Open MPI's mpirun,
 * MPICH/Hydra (PMI_SIZE), PMIx (srun --mpi=pmix) and Slurm. */
static int launcher_size(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"};
  for (size_t i = 0; i < G_N_ELEMENTS(vars); i++) {
    const char *v = g_getenv(vars[i]);
    if (v && *v) return (int)g_ascii_strtoll(v, NULL, 10);
  }
  return 1;
}

static void *open_module(const char *file, GString *tried) {
  g_autofree char *beside = ps_install_dir(".");
  g_autofree char *installed = g_build_filename(beside, file, NULL);
  g_autofree char *built = g_build_filename(PS_BUILD_DIR, file, NULL);
  const char *candidates[] = {installed, ps_running_from_build_tree() ? built : NULL, file};
  for (size_t i = 0; i < G_N_ELEMENTS(candidates); i++) {
    if (!candidates[i]) continue;
    /* RTLD_GLOBAL: MPI libraries dlopen their own components, which expect
     * libmpi's symbols to be visible. */
    void *handle = dlopen(candidates[i], RTLD_NOW | RTLD_GLOBAL);
    if (handle) return handle;
    g_string_append_printf(tried, "%s%s", tried->len ? "; " : "", dlerror());
  }
  return NULL;
}

ps_comm *ps_comm_new(const char *backend, GError **error) {
  if (!backend || strcmp(backend, "auto") == 0) {
    const char *env = g_getenv("PATHSEG_COMM");
    backend = env && *env ? env : launcher_size() > 1 ? "mpi" : "none";
  }
  ps_comm *comm = g_new0(ps_comm, 1);
  comm->size = 1;
  if (strcmp(backend, "none") == 0) return comm;
  const char *file = strcmp(backend, "mpi") == 0    ? PS_MPI_LIBRARY
                     : strcmp(backend, "nccl") == 0 ? PS_NCCL_LIBRARY
                                                    : NULL;
  if (!file) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "comm backend '%s' is not one of none, mpi, nccl, auto",
                backend);
    g_free(comm);
    return NULL;
  }
  GString *tried = g_string_new(NULL);
  comm->module = open_module(file, tried);
  if (!comm->module) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "comm backend '%s': cannot load %s (was pathseg built with %s?): %s", backend, file,
                strcmp(backend, "mpi") == 0 ? "MPI" : "NCCL and MPI", tried->str);
    g_string_free(tried, TRUE);
    g_free(comm);
    return NULL;
  }
  g_string_free(tried, TRUE);
  ps_comm_backend_fn fn = (ps_comm_backend_fn)dlsym(comm->module, "ps_comm_backend_ops");
  comm->ops = fn ? fn() : NULL;
  if (!comm->ops || comm->ops->struct_size < sizeof(ps_comm_ops)) {
    g_set_error(error, PS_ERROR, PS_ERROR_ABI, "%s does not export a usable ps_comm_backend_ops", file);
    dlclose(comm->module);
    g_free(comm);
    return NULL;
  }
  comm->state = comm->ops->init(&comm->rank, &comm->size, error);
  if (!comm->state) {
    g_prefix_error(error, "comm backend '%s': ", backend);
    /* Not dlclose'd: an MPI library that started threads must stay mapped. */
    g_free(comm);
    return NULL;
  }
  return comm;
}

void ps_comm_free(ps_comm *comm) {
  if (!comm) return;
  if (comm->ops) comm->ops->finalize(comm->state);
  /* The module stays loaded: MPI libraries do not support being unloaded. */
  g_free(comm);
}

int ps_comm_rank(const ps_comm *comm) { return comm ? comm->rank : 0; }
int ps_comm_size(const ps_comm *comm) { return comm ? comm->size : 1; }
const char *ps_comm_backend(const ps_comm *comm) {
  return comm && comm->ops ? comm->ops->name : "none";
}
uint64_t ps_comm_bytes_sent(const ps_comm *comm) { return comm ? comm->bytes_sent : 0; }

/* With a backend loaded, even one rank goes through it (the GPU smoke test
 * checks NCCL on a single GPU); without one, every call is local. */
static gboolean single(const ps_comm *comm) { return !comm || !comm->ops; }

static gboolean reduce(ps_comm *comm, void *buf, size_t n, size_t elem, ps_comm_dtype dtype,
                       ps_comm_reduce op, GError **error) {
  if (single(comm) || n == 0) return TRUE;
  comm->bytes_sent += (uint64_t)(n * elem);
  return comm->ops->allreduce(comm->state, buf, n, dtype, op, error);
}

gboolean ps_comm_allreduce_f32(ps_comm *comm, float *buf, size_t n, GError **error) {
  return reduce(comm, buf, n, sizeof(float), PS_COMM_F32, PS_COMM_SUM, error);
}
gboolean ps_comm_allreduce_f64(ps_comm *comm, double *buf, size_t n, GError **error) {
  return reduce(comm, buf, n, sizeof(double), PS_COMM_F64, PS_COMM_SUM, error);
}
gboolean ps_comm_allreduce_max_i64(ps_comm *comm, int64_t *buf, size_t n, GError **error) {
  return reduce(comm, buf, n, sizeof(int64_t), PS_COMM_I64, PS_COMM_MAX, error);
}

gboolean ps_comm_allgather_f64(ps_comm *comm, const double *send, double *recv, size_t n,
                               GError **error) {
  if (single(comm)) {
    if (n) memmove(recv, send, n * sizeof(double));
    return TRUE;
  }
  comm->bytes_sent += (uint64_t)(n * sizeof(double));
  return comm->ops->allgather(comm->state, send, recv, n * sizeof(double), error);
}

gboolean ps_comm_broadcast(ps_comm *comm, void *buf, size_t bytes, int root, GError **error) {
  if (single(comm) || bytes == 0) return TRUE;
  if (comm->rank == root) comm->bytes_sent += bytes;
  return comm->ops->broadcast(comm->state, buf, bytes, root, error);
}

gboolean ps_comm_barrier(ps_comm *comm, GError **error) {
  return single(comm) ? TRUE : comm->ops->barrier(comm->state, error);
}

ps_comm_request *ps_comm_iallreduce_f32(ps_comm *comm, float *buf, size_t n, GError **error) {
  ps_comm_request *r = g_new0(ps_comm_request, 1);
  r->comm = comm;
  if (single(comm) || n == 0) return r;
  comm->bytes_sent += (uint64_t)(n * sizeof(float));
  r->handle = comm->ops->iallreduce_f32(comm->state, buf, n, error);
  if (!r->handle) {
    g_free(r);
    return NULL;
  }
  return r;
}

void ps_comm_progress(ps_comm *comm) {
  if (!single(comm) && comm->ops->progress) comm->ops->progress(comm->state);
}

gboolean ps_comm_wait(ps_comm_request *request, GError **error) {
  if (!request) return TRUE;
  gboolean ok = TRUE;
  if (request->handle) ok = request->comm->ops->wait(request->comm->state, request->handle, error);
  g_free(request);
  return ok;
}

void ps_comm_abort(ps_comm *comm, int code) {
  if (!single(comm) && comm->ops->abort) comm->ops->abort(comm->state, code);
}

/* Every context without a comm of its own shares this single-process one. */
static ps_comm single_process = {NULL, NULL, NULL, 0, 1, 0};

ps_comm *ps_context_comm(const ps_context *ctx) {
  return ctx && ctx->comm ? ctx->comm : &single_process;
}

void ps_context_set_comm(ps_context *ctx, ps_comm *comm) { ctx->comm = comm; }
