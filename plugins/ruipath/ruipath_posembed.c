/* ruipath_posembed.c — DINOv2's position-embedding interpolation
 * (DinoVisionTransformer.interpolate_pos_encoding) forward and backward.
 *
 * The official code, with gh = H / patch (rows) and gw = W / patch:
 *   if npatch == M*M and H == W: use pos_embed as is
 *   offset != 0: scale_factor = ((gh + offset) / M, (gw + offset) / M)   (double)
 *                torch's output size is floor(M * scale) and the kernel maps
 *                output pixels back with 1 / scale (not M / out)
 *   offset == 0: size = (gh, gw), the kernel uses M / out
 *   bicubic in float32, antialias as configured; the cls row is copied.
 * The patch rows (M*M, D) are transposed to D planes of M x M, resampled and
 * transposed back. Buffers are memory of the kernel table's device; the
 * antialiased resampling, which the table lacks, runs on the host (a round
 * trip on devices other than the CPU). */
#include <math.h>
#include <string.h>

#include <pathseg/error.h>

#include "ruipath.h"

/* The antialiased resampling of planes on any device. On the CPU table it
 * runs in place; elsewhere src and dst go through host copies.
 * DEVICE: host round trip, needs a kernel (an antialiased resize entry). */
static gboolean host_table(const ps_kernels *k) { return strcmp(k->name, "cpu") == 0; }

static void aa_forward_on(const ps_kernels *k, float *out, const float *inp, int64_t NC,
                          int64_t H, int64_t W, int64_t OH, int64_t OW, float sh, float sw) {
  /* out: (NC, OH, OW); inp: (NC, H, W) */
  if (host_table(k)) {
    rp_resize_aa_forward(out, inp, NC, H, W, OH, OW, sh, sw);
    return;
  }
  float *hi = g_new(float, NC * H * W), *ho = g_new(float, NC * OH * OW);
  k->copy_to_host(hi, inp, sizeof(float) * (size_t)(NC * H * W));
  rp_resize_aa_forward(ho, hi, NC, H, W, OH, OW, sh, sw);
  k->copy_to_device(out, ho, sizeof(float) * (size_t)(NC * OH * OW));
  g_free(hi);
  g_free(ho);
}

static void aa_backward_on(const ps_kernels *k, float *dinp, const float *dout, int64_t NC,
                           int64_t H, int64_t W, int64_t OH, int64_t OW, float sh, float sw) {
  /* dinp: (NC, H, W) +=; dout: (NC, OH, OW) */
  if (host_table(k)) {
    rp_resize_aa_backward(dinp, dout, NC, H, W, OH, OW, sh, sw);
    return;
  }
  float *hd = g_new(float, NC * H * W), *ho = g_new(float, NC * OH * OW);
  k->copy_to_host(hd, dinp, sizeof(float) * (size_t)(NC * H * W));
  k->copy_to_host(ho, dout, sizeof(float) * (size_t)(NC * OH * OW));
  rp_resize_aa_backward(hd, ho, NC, H, W, OH, OW, sh, sw);
  k->copy_to_device(dinp, hd, sizeof(float) * (size_t)(NC * H * W));
  g_free(hd);
  g_free(ho);
}

gboolean rp_pos_interp_plan(rp_pos_interp *p, int64_t M, int64_t H, int64_t W, int64_t patch,
                            double offset, gboolean antialias, GError **error) {
  memset(p, 0, sizeof *p);
  p->M = M;
  p->gh = H / patch;
  p->gw = W / patch;
  p->antialias = antialias;
  if (p->gh * p->gw == M * M && H == W) {
    p->identity = TRUE;
    return TRUE;
  }
  if (offset != 0.0) {
    const double sh = ((double)p->gh + offset) / (double)M;
    const double sw = ((double)p->gw + offset) / (double)M;
    const int64_t oh = (int64_t)floor((double)M * sh), ow = (int64_t)floor((double)M * sw);
    if (oh != p->gh || ow != p->gw) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "encoder.ruipath: position-embedding interpolation of the %" G_GINT64_FORMAT
                  "x%" G_GINT64_FORMAT " grid with offset %g gives %" G_GINT64_FORMAT
                  "x%" G_GINT64_FORMAT ", not the %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                  " patch grid (the official code asserts here)",
                  M, M, offset, oh, ow, p->gh, p->gw);
      return FALSE;
    }
    /* torch: (opmath_t)(1.0 / scale_factor), computed in double. */
    p->scale_h = (float)(1.0 / sh);
    p->scale_w = (float)(1.0 / sw);
  } else {
    p->scale_h = p->scale_w = 0.0f; /* size given: M / out */
  }
  return TRUE;
}

void rp_pos_interp_forward(const rp_pos_interp *p, const ps_kernels *k, float *out,
                           const float *pos, int64_t D, float *scratch) {
  /* out: (1 + gh*gw, D); pos: (1 + M*M, D) */
  const int64_t MM = p->M * p->M, N = p->gh * p->gw;
  if (p->identity) {
    k->copy_on_device(out, pos, sizeof(float) * (size_t)((1 + MM) * D));
    return;
  }
  float *planes = scratch;                  /* (D, M*M) */
  float *rs = scratch + D * MAX(MM, N);     /* (D, gh*gw) */
  k->copy_on_device(out, pos, sizeof(float) * (size_t)D); /* cls row */
  k->transpose_forward(planes, pos + D, 1, MM, D);
  if (p->antialias)
    aa_forward_on(k, rs, planes, D, p->M, p->M, p->gh, p->gw, p->scale_h, p->scale_w);
  else
    k->resize_forward(rs, planes, D, p->M, p->M, p->gh, p->gw, p->scale_h, p->scale_w,
                      PS_RESIZE_BICUBIC);
  k->transpose_forward(out + D, rs, 1, D, N);
}

void rp_pos_interp_backward(const rp_pos_interp *p, const ps_kernels *k, float *dpos,
                            const float *dout, int64_t D, float *scratch) {
  /* dpos: (1 + M*M, D) +=; dout: (1 + gh*gw, D) */
  const int64_t MM = p->M * p->M, N = p->gh * p->gw;
  if (p->identity) {
    k->axpy(dpos, 1.0f, dout, (1 + MM) * D);
    return;
  }
  float *dplanes = scratch;              /* (D, M*M) */
  float *drs = scratch + D * MAX(MM, N); /* (D, gh*gw) */
  k->axpy(dpos, 1.0f, dout, D);
  k->transpose_forward(drs, dout + D, 1, N, D);
  k->mem_zero(dplanes, sizeof(float) * (size_t)(D * MM));
  if (p->antialias)
    aa_backward_on(k, dplanes, drs, D, p->M, p->M, p->gh, p->gw, p->scale_h, p->scale_w);
  else
    k->resize_backward(dplanes, drs, D, p->M, p->M, p->gh, p->gw, p->scale_h, p->scale_w,
                       PS_RESIZE_BICUBIC);
  k->transpose_backward(dpos + D, dplanes, 1, MM, D);
}

/* ---- antialiased bicubic (torch _upsample_bicubic2d_aa) ----------------------- */

/* Keys' cubic with A = -0.5 (torch's aa_filter for bicubic). */
static float aa_cubic(float x) {
  const float a = -0.5f;
  x = fabsf(x);
  if (x < 1.0f) return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
  if (x < 2.0f) return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
  return 0.0f;
}

/* Per output index: the first input index, the tap count and the normalised
 * weights (maxw per index), as torch's _compute_indices_weights_aa. */
typedef struct {
  int64_t maxw;
  int64_t *xmin, *xsize;
  float *w;
} aa_axis;

static void aa_axis_init(aa_axis *a, int64_t in, int64_t out, float given) {
  const float scale = given > 0.0f ? given : (float)in / (float)out;
  const float support = scale >= 1.0f ? 2.0f * scale : 2.0f;
  const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
  a->maxw = (int64_t)ceilf(support) * 2 + 1;
  a->xmin = g_new(int64_t, out);
  a->xsize = g_new(int64_t, out);
  a->w = g_new0(float, out * a->maxw);
  for (int64_t i = 0; i < out; i++) {
    const float center = scale * ((float)i + 0.5f);
    int64_t xmin = (int64_t)(center - support + 0.5f);
    if (xmin < 0) xmin = 0;
    int64_t xmax = (int64_t)(center + support + 0.5f);
    if (xmax > in) xmax = in;
    int64_t n = MIN(MAX(xmax - xmin, 0), a->maxw);
    float *w = a->w + i * a->maxw, total = 0.0f;
    for (int64_t j = 0; j < n; j++) {
      w[j] = aa_cubic(((float)(j + xmin) - center + 0.5f) * invscale);
      total += w[j];
    }
    if (total != 0.0f)
      for (int64_t j = 0; j < n; j++) w[j] /= total;
    a->xmin[i] = xmin;
    a->xsize[i] = n;
  }
}

static void aa_axis_clear(aa_axis *a) {
  g_free(a->xmin);
  g_free(a->xsize);
  g_free(a->w);
}

/* One axis: out (P, O, S) from inp (P, I, S): out[p, o, s] = sum_j w[o, j] inp[p, xmin[o] + j, s].
 * Horizontal resampling is S = 1; vertical is P = NC, S = row width. */
static void aa_apply(const aa_axis *a, float *out, const float *inp, int64_t P, int64_t I,
                     int64_t O, int64_t S) {
  for (int64_t p = 0; p < P; p++)
    for (int64_t o = 0; o < O; o++) {
      float *dst = out + (p * O + o) * S;
      const float *w = a->w + o * a->maxw;
      for (int64_t s = 0; s < S; s++) dst[s] = 0.0f;
      for (int64_t j = 0; j < a->xsize[o]; j++) {
        const float *src = inp + (p * I + a->xmin[o] + j) * S;
        for (int64_t s = 0; s < S; s++) dst[s] += w[j] * src[s];
      }
    }
}

/* The adjoint: dinp (P, I, S) += w^T dout (P, O, S). */
static void aa_apply_t(const aa_axis *a, float *dinp, const float *dout, int64_t P, int64_t I,
                       int64_t O, int64_t S) {
  for (int64_t p = 0; p < P; p++)
    for (int64_t o = 0; o < O; o++) {
      const float *g = dout + (p * O + o) * S;
      const float *w = a->w + o * a->maxw;
      for (int64_t j = 0; j < a->xsize[o]; j++) {
        float *dst = dinp + (p * I + a->xmin[o] + j) * S;
        for (int64_t s = 0; s < S; s++) dst[s] += w[j] * g[s];
      }
    }
}

void rp_resize_aa_forward(float *out, const float *inp, int64_t NC, int64_t H, int64_t W,
                          int64_t OH, int64_t OW, float scale_h, float scale_w) {
  /* out: (NC, OH, OW); inp: (NC, H, W). Width first into tmp (NC, H, OW). */
  float *tmp = NULL;
  const float *src = inp;
  if (OW != W) {
    aa_axis ax;
    aa_axis_init(&ax, W, OW, scale_w);
    tmp = g_new(float, NC * H * OW);
    aa_apply(&ax, tmp, inp, NC * H, W, OW, 1);
    aa_axis_clear(&ax);
    src = tmp;
  }
  if (OH != H) {
    aa_axis ay;
    aa_axis_init(&ay, H, OH, scale_h);
    aa_apply(&ay, out, src, NC, H, OH, OW);
    aa_axis_clear(&ay);
  } else {
    memcpy(out, src, sizeof(float) * (size_t)(NC * H * OW));
  }
  g_free(tmp);
}

void rp_resize_aa_backward(float *dinp, const float *dout, int64_t NC, int64_t H, int64_t W,
                           int64_t OH, int64_t OW, float scale_h, float scale_w) {
  /* dinp: (NC, H, W) +=; dout: (NC, OH, OW). Reverse order: height, then width. */
  float *dtmp = g_new0(float, NC * H * OW); /* gradient w.r.t. the width-resampled map */
  if (OH != H) {
    aa_axis ay;
    aa_axis_init(&ay, H, OH, scale_h);
    aa_apply_t(&ay, dtmp, dout, NC, H, OH, OW);
    aa_axis_clear(&ay);
  } else {
    memcpy(dtmp, dout, sizeof(float) * (size_t)(NC * H * OW));
  }
  if (OW != W) {
    aa_axis ax;
    aa_axis_init(&ax, W, OW, scale_w);
    aa_apply_t(&ax, dinp, dtmp, NC * H, W, OW, 1);
    aa_axis_clear(&ax);
  } else {
    for (int64_t i = 0; i < NC * H * W; i++) dinp[i] += dtmp[i];
  }
  g_free(dtmp);
}
