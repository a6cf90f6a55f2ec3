/* context_internal.h — the ps_context struct and host-side functions
 * (plugins see only the accessors in plugin.h). */
#pragma once

#include <pathseg/plugin.h>

struct ps_context {
  ps_device device;
  int threads;
  gboolean training;
  ps_rng rng;
  GArray *blocks; /* struct scratch_block */
  size_t scratch_grows;
  struct ps_comm *comm; /* borrowed; NULL = single process */
  const struct ps_kernels *mem; /* the device's table for scratch (NULL on the CPU) */
  int precision;                /* ps_precision */
};
