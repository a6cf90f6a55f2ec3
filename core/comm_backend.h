/* comm_backend.h — the table a communication backend module exports.
 *
 * libpathseg-mpi.so and libpathseg-nccl.so each define
 * `const ps_comm_ops *ps_comm_backend_ops(void)`; core/comm.c dlopens the
 * module a run asks for and calls through this table. The none backend is
 * built into core/comm.c. Internal to pathseg (not installed). */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { PS_COMM_F32, PS_COMM_F64, PS_COMM_I64 } ps_comm_dtype;
typedef enum { PS_COMM_SUM, PS_COMM_MAX } ps_comm_reduce;

typedef struct ps_comm_ops {
  uint32_t struct_size;
  const char *name;
  /* Initialises the library (unless the program already did) and returns
   * the backend's state; sets *rank and *size. */
  void *(*init)(int *rank, int *size, GError **error);
  void (*finalize)(void *state);
  gboolean (*allreduce)(void *state, void *buf, size_t n, ps_comm_dtype dtype, ps_comm_reduce op,
                        GError **error);
  /* send: (bytes) -> recv: (size, bytes) */
  gboolean (*allgather)(void *state, const void *send, void *recv, size_t bytes, GError **error);
  gboolean (*broadcast)(void *state, void *buf, size_t bytes, int root, GError **error);
  gboolean (*barrier)(void *state, GError **error);
  /* Starts an in-place f32 sum; returns an opaque request. */
  void *(*iallreduce_f32)(void *state, float *buf, size_t n, GError **error);
  gboolean (*wait)(void *state, void *request, GError **error);
  void (*progress)(void *state);
  /* Ends every rank's process with `code` (a rank failed; the others would
   * wait for it forever). */
  void (*abort)(void *state, int code);
} ps_comm_ops;

typedef const ps_comm_ops *(*ps_comm_backend_fn)(void);
