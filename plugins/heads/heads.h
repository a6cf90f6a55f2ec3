/* heads.h — what the `heads` plugin's files share: the three component
 * descriptors (projector, adapter.seg, critic.value) and small helpers for a
 * component's parameter list and its reusable buffers.
 *
 * Devices: parameters are initialised on the host and moved to the
 * context's device at the end of create (hd_params_move_to); buffers,
 * outputs and gradients are memory of the context's kernel table, and the
 * host only reads control data (patch grid, <SEG> positions). */
#pragma once

#include <pathseg/kernels.h>
#include <pathseg/layers.h>
#include <pathseg/plugin.h>

extern const ps_component_desc hd_projector_desc;
extern const ps_component_desc hd_seg_adapter_desc;
extern const ps_component_desc hd_value_desc;

/* A component's parameters: names as in the official checkpoints, tensors
 * either owned here (`owned`) or by a ps_linear. */
typedef struct {
  GArray *items;    /* ps_param; not appended to after create() */
  GPtrArray *names; /* owned name strings */
  GPtrArray *owned; /* tensors freed with the list */
} hd_params;

void hd_params_init(hd_params *P);
void hd_params_clear(hd_params *P);
/* Adds a zero-filled parameter; returns its index or -1 with an error. */
int hd_param_add(hd_params *P, const char *name, ps_role role, int ndim, const int64_t *shape,
                 GError **error);
/* Adds a ps_linear (no LoRA) under `prefix` (N(0, std) weights, zero bias);
 * returns the index of its first entry, or -1. Bind after the list is complete. */
int hd_linear_add(hd_params *P, ps_linear *l, const char *prefix, int64_t in, int64_t out,
                  double std, ps_rng *rng, GError **error);
ps_param_list hd_params_list(hd_params *P);
/* Moves every parameter value to `device` (after host initialisation). */
gboolean hd_params_move_to(hd_params *P, ps_device device, GError **error);
static inline float *hd_pv(const hd_params *P, int i) {
  return ps_f32(g_array_index(P->items, ps_param, i).value);
}
/* The gradient of parameter i, or NULL when it does not train. */
static inline float *hd_pg(const hd_params *P, int i) {
  ps_tensor *g = g_array_index(P->items, ps_param, i).grad;
  return g ? ps_f32(g) : NULL;
}
/* TRUE when any of the layer's parameters train. */
gboolean hd_linear_trains(const ps_linear *l);

/* A float buffer of at least n elements in k's memory, reallocated only when
 * it grows; free it with hd_buf_free. */
gboolean hd_buf(const ps_kernels *k, float **p, int64_t *cap, int64_t n, GError **error);
void hd_buf_free(const ps_kernels *k, float **p, int64_t *cap);
/* The input gradient port `name` when it wants a gradient, else NULL. */
ps_port *hd_wants_grad(ps_ports *grad_in, const char *name);
/* The kernel table of the context's device at the run's precision
 * (ps_context_kernels); an error naming `component` when it cannot be
 * loaded. */
const ps_kernels *hd_kernels(ps_context *ctx, const char *component, GError **error);
