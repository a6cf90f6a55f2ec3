/* projector.c — the `projector` component: Qwen2.5-VL's patch merger
 * (Qwen2_5_VLPatchMerger) from the vision width into the LLM width.
 *
 *   xn = RMSNorm(patches) per token (ln_q.weight, eps 1e-6)
 *   each m x m block of neighbouring patches -> one vector of m*m*C, in the
 *     order (r, c), (r, c+1), ..., (r+1, c), ... (row-major inside the block;
 *     what Qwen's view(-1, 4C) sees after its window ordering)
 *   tokens = mlp.2(GELU(mlp.0(x)))   mlp.0: (m*m*C -> m*m*C), mlp.2: (m*m*C -> llm_width)
 * Merged tokens are row-major over the (gh/m, gw/m) grid of blocks.
 * Runs on the context's device; the patch grid is read on the host. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <pathseg/error.h>

#include "heads.h"

typedef struct {
  int64_t C, out, m, K; /* K = m*m*C */
  float eps;
  const ps_kernels *k;
  hd_params P;
  int ln;
  ps_linear fc1, fc2;
  /* last forward */
  int64_t B, N, gh, gw, rows; /* rows = B * N / (m*m) */
  ps_device dev;
  const ps_tensor *x; /* the input on the device (the caller's or x_dev) */
  float *xn, *rstd, *g, *h, *a;
  int64_t cap_xn, cap_rstd, cap_g, cap_h, cap_a;
  ps_tensor *tokens, *dpatches;
  ps_tensor *x_dev, *dt_dev; /* device copies of host inputs / gradients */
} projector;

static const ps_config_key proj_config[] = {
    {"in_width", PS_TYPE_INT, "64", 1, 1 << 16, NULL, "vision width C (the encoder's embed_dim)"},
    {"llm_width", PS_TYPE_INT, "128", 1, 1 << 16, NULL, "LLM hidden width (Qwen2.5-VL out_hidden_size)"},
    {"merge_size", PS_TYPE_INT, "2", 1, 16, NULL, "patches merged per side (Qwen spatial_merge_size 2)"},
    {"eps", PS_TYPE_FLOAT, "1e-6", 1e-30, 1, NULL, "RMSNorm eps of ln_q"},
    {"init_std", PS_TYPE_FLOAT, "0.02", 0, 10, NULL, "std of the N(0, std) weight initialisation"},
    {NULL},
};
static const ps_port_desc proj_inputs[] = {
    {"patches", "[B, N, in_width] f32 patch tokens, row-major on the patch grid", FALSE},
    {"patch_grid", "[2] i32 (gh, gw), both multiples of merge_size; absent: a square grid", TRUE},
    {NULL}};
static const ps_port_desc proj_outputs[] = {
    {"tokens", "[B, N / merge_size^2, llm_width] f32 visual tokens for the LLM", FALSE}, {NULL}};

static void proj_destroy(void *self) {
  projector *p = self;
  if (!p) return;
  ps_linear_clear(&p->fc1);
  ps_linear_clear(&p->fc2);
  hd_params_clear(&p->P);
  hd_buf_free(p->k, &p->xn, &p->cap_xn);
  hd_buf_free(p->k, &p->rstd, &p->cap_rstd);
  hd_buf_free(p->k, &p->g, &p->cap_g);
  hd_buf_free(p->k, &p->h, &p->cap_h);
  hd_buf_free(p->k, &p->a, &p->cap_a);
  ps_tensor_free(p->tokens);
  ps_tensor_free(p->dpatches);
  ps_tensor_free(p->x_dev);
  ps_tensor_free(p->dt_dev);
  g_free(p);
}

static void *proj_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  projector *p = g_new0(projector, 1);
  p->C = ps_config_int(cfg, "in_width");
  p->out = ps_config_int(cfg, "llm_width");
  p->m = ps_config_int(cfg, "merge_size");
  p->K = p->m * p->m * p->C;
  p->eps = (float)ps_config_float(cfg, "eps");
  hd_params_init(&p->P);
  const double std = ps_config_float(cfg, "init_std");
  ps_rng *rng = ps_context_rng(ctx);
  const int64_t vec[] = {p->C};
  int f1, f2;
  p->dev = ps_context_device(ctx);
  p->k = hd_kernels(ctx, "projector", error);
  if (!p->k || (p->ln = hd_param_add(&p->P, "ln_q.weight", PS_ROLE_FULL, 1, vec, error)) < 0 ||
      (f1 = hd_linear_add(&p->P, &p->fc1, "mlp.0", p->K, p->K, std, rng, error)) < 0 ||
      (f2 = hd_linear_add(&p->P, &p->fc2, "mlp.2", p->K, p->out, std, rng, error)) < 0) {
    proj_destroy(p);
    return NULL;
  }
  ps_linear_bind(&p->fc1, p->P.items, (guint)f1);
  ps_linear_bind(&p->fc2, p->P.items, (guint)f2);
  for (int64_t c = 0; c < p->C; c++) hd_pv(&p->P, p->ln)[c] = 1.0f;
  if (!hd_params_move_to(&p->P, p->dev, error)) {
    g_prefix_error(error, "projector: ");
    proj_destroy(p);
    return NULL;
  }
  return p;
}

static ps_param_list proj_params(void *self) { return hd_params_list(&((projector *)self)->P); }

/* Patch (b, y, x) goes to row (b * gh/m + y/m) * gw/m + x/m of the merged
 * matrix, at column ((y % m) * m + x % m) * C. One patch row (b, y) is thus
 * gw/m runs of m*C contiguous floats, each landing in the next merged row
 * at column (y % m) * m * C: one strided block copy per patch row.
 * merge: g (rows, K) = those blocks of xn (B*N, C); unmerge: the reverse,
 * xn from g. */
static void merge_patches(const projector *p, const ps_kernels *k, float *g, float *xn,
                          gboolean unmerge) {
  const int64_t m = p->m, C = p->C, K = p->K, bw = p->gw / m;
  for (int64_t b = 0; b < p->B; b++)
    for (int64_t y = 0; y < p->gh; y++) {
      float *merged = g + (b * (p->gh / m) + y / m) * bw * K + (y % m) * m * C;
      float *row = xn + (b * p->gh + y) * p->gw * C;
      if (unmerge)
        k->copy_2d(row, m * C, merged, K, bw, m * C, 0);
      else
        k->copy_2d(merged, K, row, m * C, bw, m * C, 0);
    }
}

static gboolean proj_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                             GError **error) {
  projector *p = self;
  const ps_tensor *x = ps_ports_require(in, "projector", "patches", error);
  const int64_t shape[] = {-1, -1, p->C};
  if (!x || !ps_tensor_check(x, "projector input patches", PS_DTYPE_F32, 3, shape, error))
    return FALSE;
  const int64_t B = x->shape[0], N = x->shape[1];
  int64_t gh, gw;
  const ps_tensor *grid = ps_ports_get(in, "patch_grid");
  if (grid) {
    const int64_t gs[] = {2};
    if (!ps_tensor_check(grid, "projector input patch_grid", PS_DTYPE_I32, 1, gs, error))
      return FALSE;
    /* Control data: read on the host (two integers copied from a device). */
    int32_t g2[2];
    if (grid->device == PS_DEVICE_CPU) {
      memcpy(g2, grid->data, sizeof g2);
    } else {
      const ps_kernels *gk = ps_kernels_get(grid->device, error);
      if (!gk) return FALSE;
      gk->copy_to_host(g2, grid->data, sizeof g2);
    }
    gh = g2[0];
    gw = g2[1];
  } else {
    gh = gw = (int64_t)llround(sqrt((double)N));
  }
  if (gh <= 0 || gw <= 0 || gh * gw != N || gh % p->m != 0 || gw % p->m != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "projector: patch grid %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                " must hold the %" G_GINT64_FORMAT " patches and be a multiple of merge_size %" G_GINT64_FORMAT
                "%s",
                gh, gw, N, p->m, grid ? "" : " (no patch_grid given: the grid is taken as square)");
    return FALSE;
  }
  p->B = B;
  p->N = N;
  p->gh = gh;
  p->gw = gw;
  p->rows = B * N / (p->m * p->m);
  p->x = ps_tensor_on_device(x, p->dev, &p->x_dev, error);
  if (!p->x) return FALSE;
  const ps_kernels *k = p->k;
  const int64_t rows = p->rows, K = p->K, C = p->C;
  const int64_t ts[] = {B, N / (p->m * p->m), p->out};
  if (!hd_buf(k, &p->xn, &p->cap_xn, B * N * C, error) ||
      !hd_buf(k, &p->rstd, &p->cap_rstd, B * N, error) ||
      !hd_buf(k, &p->g, &p->cap_g, rows * K, error) ||
      !hd_buf(k, &p->h, &p->cap_h, rows * K, error) ||
      !hd_buf(k, &p->a, &p->cap_a, rows * K, error) ||
      !ps_tensor_ensure_on(&p->tokens, p->dev, PS_DTYPE_F32, 3, ts, error))
    return FALSE;
  k->rmsnorm_forward(p->xn, p->rstd, ps_f32(p->x), hd_pv(&p->P, p->ln), B * N, C, p->eps);
  merge_patches(p, k, p->g, p->xn, FALSE);
  if (!ps_linear_forward(&p->fc1, k, ctx, p->h, p->g, rows, error)) return FALSE;
  k->gelu_forward(p->a, p->h, rows * K);
  if (!ps_linear_forward(&p->fc2, k, ctx, ps_f32(p->tokens), p->a, rows, error)) return FALSE;
  ps_ports_set(out, "tokens", p->tokens);
  return TRUE;
}

static gboolean proj_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                              ps_ports *grad_in, GError **error) {
  projector *p = self;
  const ps_tensor *dt = ps_ports_get(grad_out, "tokens");
  ps_port *dx_port = hd_wants_grad(grad_in, "patches");
  if (!p->x) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "projector: backward before forward");
    return FALSE;
  }
  const int64_t B = p->B, N = p->N, C = p->C, K = p->K, rows = p->rows;
  if (dx_port) {
    const int64_t s[] = {B, N, C};
    if (!ps_tensor_ensure_on(&p->dpatches, p->dev, PS_DTYPE_F32, 3, s, error)) return FALSE;
    p->k->mem_zero(p->dpatches->data, p->dpatches->nbytes);
    dx_port->tensor = p->dpatches;
  }
  if (!dt) return TRUE;
  if (!ps_tensor_check(dt, "projector gradient of tokens", PS_DTYPE_F32, 3, p->tokens->shape, error))
    return FALSE;
  dt = ps_tensor_on_device(dt, p->dev, &p->dt_dev, error);
  if (!dt) return FALSE;
  const ps_kernels *k = p->k;
  float *dln = hd_pg(&p->P, p->ln);
  const gboolean need_dg = dx_port || dln;
  const gboolean need_dh = need_dg || hd_linear_trains(&p->fc1);
  /* Scratch: da and dh (rows, K) each, dg (rows, K), dxn (B*N, C). */
  float *da = NULL, *dh = NULL;
  if (need_dh) {
    da = ps_context_scratch(ctx, sizeof(float) * (size_t)(rows * K));
    k->mem_zero(da, sizeof(float) * (size_t)(rows * K));
  }
  ps_linear_backward(&p->fc2, k, da, ps_f32(dt), rows);
  if (!need_dh) return TRUE;
  dh = ps_context_scratch(ctx, sizeof(float) * (size_t)(rows * K));
  k->mem_zero(dh, sizeof(float) * (size_t)(rows * K));
  k->gelu_backward(dh, p->h, da, rows * K);
  float *dg = NULL;
  if (need_dg) {
    dg = da; /* da is no longer needed */
    k->mem_zero(dg, sizeof(float) * (size_t)(rows * K));
  }
  ps_linear_backward(&p->fc1, k, dg, dh, rows);
  if (!need_dg) return TRUE;
  float *dxn = dh; /* B*N*C == rows*K floats */
  merge_patches(p, k, dg, dxn, TRUE);
  k->rmsnorm_backward(dx_port ? ps_f32(p->dpatches) : NULL, dln, dxn, ps_f32(p->x),
                      hd_pv(&p->P, p->ln), p->rstd, B * N, C);
  return TRUE;
}

static const ps_component_vtable proj_vtable = {
    sizeof(ps_component_vtable), proj_create, proj_destroy, proj_params, proj_forward, proj_backward,
};

const ps_component_desc hd_projector_desc = {
    sizeof(ps_component_desc),
    PS_KIND_ADAPTER,
    "projector",
    "Qwen2.5-VL patch merger: RMSNorm per patch (ln_q), each merge_size x merge_size block of "
    "neighbouring patches concatenated row-major, Linear-GELU-Linear into the LLM width "
    "(mlp.0, mlp.2). Role full.",
    proj_config,
    proj_inputs,
    proj_outputs,
    &proj_vtable,
    NULL,
};
