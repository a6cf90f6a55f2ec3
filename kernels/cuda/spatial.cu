/* spatial.cu — SAM window partition / unpartition, decomposed relative
 * positions, rotary embedding and bilinear/bicubic resize on the GPU, with the
 * semantics of kernels/cpu/window.c, relpos.c, rope.c and resize.c.
 * One thread per output element; backward passes are written as gathers where
 * the adjoint has one writer per element, atomics otherwise (rel-pos tables,
 * resize adjoint). */
#include "common.cuh"
#include "ops.cuh"

/* ---- window partition ---- */

/* For window element i of (B*nh*nw, ws, ws, C): the grid offset, or -1 for padding. */
__device__ __forceinline__ int64_t window_src(int64_t i, int64_t H, int64_t W, int64_t C,
                                              int64_t ws, int64_t nh, int64_t nw) {
  int64_t c = i % C, x = (i / C) % ws, y = (i / (C * ws)) % ws, wi = i / (C * ws * ws);
  int64_t b = wi / (nh * nw), wy = (wi / nw) % nh, wx = wi % nw;
  int64_t gy = wy * ws + y, gx = wx * ws + x;
  return gy < H && gx < W ? ((b * H + gy) * W + gx) * C + c : -1;
}

/* mode 0: win = grid (padding 0); 1: grid += win; 2: grid = win; 3: win += grid */
__global__ static void window_k(float *win, const float *wsrc, float *grid, const float *gsrc,
                                int64_t n, int64_t H, int64_t W, int64_t C, int64_t ws,
                                int64_t nh, int64_t nw, int mode) {
  PS_GRID_STRIDE(i, n) {
    int64_t g = window_src(i, H, W, C, ws, nh, nw);
    switch (mode) {
    case 0: win[i] = g >= 0 ? gsrc[g] : 0.0f; break;
    case 1: if (g >= 0) grid[g] += wsrc[i]; break; /* one window element per grid element */
    case 2: if (g >= 0) grid[g] = wsrc[i]; break;
    default: if (g >= 0) win[i] += gsrc[g]; break;
    }
  }
}
static void window_map(float *win, const float *wsrc, float *grid, const float *gsrc, int64_t B,
                       int64_t H, int64_t W, int64_t C, int64_t ws, int mode) {
  int64_t nh = ps_windows_per_dim(H, ws), nw = ps_windows_per_dim(W, ws);
  int64_t n = B * nh * nw * ws * ws * C;
  if (n <= 0) return;
  window_k<<<ps_blocks(n), PS_THREADS>>>(win, wsrc, grid, gsrc, n, H, W, C, ws, nh, nw, mode);
  PS_CUDA_LAUNCHED();
}
void ps_cuda_window_partition_forward(float *out, const float *inp, int64_t B, int64_t H,
                                      int64_t W, int64_t C, int64_t ws) {
  /* out: (B*nh*nw, ws, ws, C); inp: (B, H, W, C) */
  window_map(out, NULL, NULL, inp, B, H, W, C, ws, 0);
}
void ps_cuda_window_partition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                       int64_t W, int64_t C, int64_t ws) {
  /* dinp: (B, H, W, C) += dout: (B*nh*nw, ws, ws, C) minus padding */
  window_map(NULL, dout, dinp, NULL, B, H, W, C, ws, 1);
}
void ps_cuda_window_unpartition_forward(float *out, const float *inp, int64_t B, int64_t H,
                                        int64_t W, int64_t C, int64_t ws) {
  /* out: (B, H, W, C); inp: (B*nh*nw, ws, ws, C) */
  window_map(NULL, inp, out, NULL, B, H, W, C, ws, 2);
}
void ps_cuda_window_unpartition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                         int64_t W, int64_t C, int64_t ws) {
  /* dinp: (B*nh*nw, ws, ws, C) += dout: (B, H, W, C) */
  window_map(dinp, NULL, NULL, dout, B, H, W, C, ws, 3);
}

/* ---- decomposed relative positions ---- */

/* Element i of rel_h (B, H, T, gh) then rel_w (B, H, T, gw) concatenated. */
__global__ static void relpos_fwd(float *rel_h, float *rel_w, const float *q, const float *rph,
                                  const float *rpw, int64_t B, int64_t H, int64_t gh, int64_t gw,
                                  int64_t D, int64_t ldq) {
  int64_t T = gh * gw, nh = B * H * T * gh, n = nh + B * H * T * gw;
  PS_GRID_STRIDE(i, n) {
    bool is_h = i < nh;
    int64_t j = is_h ? i : i - nh, K = is_h ? gh : gw;
    int64_t kk = j % K, bht = j / K, t = bht % T, h = (bht / T) % H, b = bht / (T * H);
    int64_t y = t / gw, x = t % gw;
    const float *qv = q + (b * T + t) * ldq + h * D;
    const float *r = is_h ? rph + (y - kk + gh - 1) * D : rpw + (x - kk + gw - 1) * D;
    float s = 0.0f;
    for (int64_t c = 0; c < D; c++) s += qv[c] * r[c];
    (is_h ? rel_h : rel_w)[j] = s;
  }
}
/* dq (b, t, h, c) gathers over ky and kx: one writer per element. */
__global__ static void relpos_bwd_dq(float *dq, const float *drel_h, const float *drel_w,
                                     const float *rph, const float *rpw, int64_t B, int64_t H,
                                     int64_t gh, int64_t gw, int64_t D, int64_t ldq) {
  int64_t T = gh * gw;
  PS_GRID_STRIDE(i, B * T * H * D) {
    int64_t c = i % D, h = (i / D) % H, t = (i / (D * H)) % T, b = i / (D * H * T);
    int64_t y = t / gw, x = t % gw, row = (b * H + h) * T + t;
    float s = 0.0f;
    for (int64_t ky = 0; ky < gh; ky++) s += drel_h[row * gh + ky] * rph[(y - ky + gh - 1) * D + c];
    for (int64_t kx = 0; kx < gw; kx++) s += drel_w[row * gw + kx] * rpw[(x - kx + gw - 1) * D + c];
    dq[(b * T + t) * ldq + h * D + c] += s;
  }
}
/* Table rows: thread per (row index r, c) sums every (b, h, y, x) pair: one writer each. */
__global__ static void relpos_bwd_table(float *dtab, const float *drel, const float *q, int64_t B,
                                       int64_t H, int64_t gh, int64_t gw, int64_t D, int64_t ldq,
                                       int along_h) {
  int64_t T = gh * gw, K = along_h ? gh : gw, rows = 2 * K - 1;
  PS_GRID_STRIDE(i, rows * D) {
    int64_t r = i / D, c = i % D;
    float s = 0.0f;
    for (int64_t bh = 0; bh < B * H; bh++) {
      int64_t b = bh / H, h = bh % H;
      for (int64_t t = 0; t < T; t++) {
        int64_t pos = along_h ? t / gw : t % gw, k = pos + K - 1 - r;
        if (k < 0 || k >= K) continue;
        s += drel[(bh * T + t) * K + k] * q[(b * T + t) * ldq + h * D + c];
      }
    }
    dtab[i] += s;
  }
}
void ps_cuda_rel_pos_forward(float *rel_h, float *rel_w, const float *q, const float *rel_pos_h,
                             const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                             int64_t D, int64_t ldq) {
  /* rel_h: (B, H, gh*gw, gh); rel_w: (B, H, gh*gw, gw); q: (B, gh*gw, H, D) stride ldq */
  if (ldq == 0) ldq = H * D;
  int64_t n = B * H * gh * gw * (gh + gw);
  if (n <= 0) return;
  relpos_fwd<<<ps_blocks(n), PS_THREADS>>>(rel_h, rel_w, q, rel_pos_h, rel_pos_w, B, H, gh, gw, D,
                                           ldq);
  PS_CUDA_LAUNCHED();
}
void ps_cuda_rel_pos_backward(float *dq, float *drel_pos_h, float *drel_pos_w,
                              const float *drel_h, const float *drel_w, const float *q,
                              const float *rel_pos_h, const float *rel_pos_w, int64_t B,
                              int64_t H, int64_t gh, int64_t gw, int64_t D, int64_t ldq) {
  /* dq: like q; drel_pos_h: (2gh-1, D); drel_pos_w: (2gw-1, D); drel_h, drel_w: like rel_h, rel_w */
  if (ldq == 0) ldq = H * D;
  if (B * H * gh * gw * D <= 0) return;
  if (dq) {
    relpos_bwd_dq<<<ps_blocks(B * gh * gw * H * D), PS_THREADS>>>(dq, drel_h, drel_w, rel_pos_h,
                                                                 rel_pos_w, B, H, gh, gw, D, ldq);
    PS_CUDA_LAUNCHED();
  }
  if (drel_pos_h) {
    relpos_bwd_table<<<ps_blocks((2 * gh - 1) * D), PS_THREADS>>>(drel_pos_h, drel_h, q, B, H, gh,
                                                                 gw, D, ldq, 1);
    PS_CUDA_LAUNCHED();
  }
  if (drel_pos_w) {
    relpos_bwd_table<<<ps_blocks((2 * gw - 1) * D), PS_THREADS>>>(drel_pos_w, drel_w, q, B, H, gh,
                                                                 gw, D, ldq, 0);
    PS_CUDA_LAUNCHED();
  }
}

/* ---- rotary embedding (rotate-half) ---- */

__device__ static void rope_freq(const ps_rope_desc &d, int64_t j, int *stream, float *inv) {
  if (d.n_sections <= 0) {
    *stream = 0;
    *inv = 1.0f / powf(d.theta, (float)(2 * j) / (float)d.D);
    return;
  }
  int64_t start = 0;
  int s = 0;
  for (; s < d.n_sections - 1; s++) {
    if (j < start + d.sections[s]) break;
    start += d.sections[s];
  }
  *stream = s;
  if (d.section_local)
    *inv = 1.0f / powf(d.theta, (float)(2 * (j - start)) / (float)(2 * (int64_t)d.sections[s]));
  else
    *inv = 1.0f / powf(d.theta, (float)(2 * j) / (float)d.D);
}

/* Thread per (token, head, frequency j): rotates the pair (j, j + D/2).
 * A template over the storage type T (f32 and bf16 entries; f32 math). */
template <typename T>
__global__ static void rope_k(T *out, const T *inp, const int32_t *pos, ps_rope_desc d, int64_t ld,
                              float sign, int accumulate) {
  int64_t half = d.D / 2;
  PS_GRID_STRIDE(i, d.N * d.H * half) {
    int64_t j = i % half, h = (i / half) % d.H, n = i / (half * d.H);
    int stream;
    float inv;
    rope_freq(d, j, &stream, &inv);
    float ang = (float)pos[(int64_t)stream * d.N + n] * inv;
    float cs = cosf(ang), sn = sign * sinf(ang);
    const T *x = inp + n * ld + h * d.D;
    T *y = out + n * ld + h * d.D;
    float a = ps_ld(x[j]), b = ps_ld(x[j + half]);
    float ya = a * cs - b * sn, yb = b * cs + a * sn;
    if (accumulate) {
      ps_acc(&y[j], ya);
      ps_acc(&y[j + half], yb);
    } else {
      y[j] = ps_st<T>(ya);
      y[j + half] = ps_st<T>(yb);
    }
  }
}
template <typename T>
static void rope(T *out, const T *inp, const int32_t *pos, const ps_rope_desc *d, float sign,
                 int accumulate) {
  int64_t n = d->N * d->H * (d->D / 2);
  if (n <= 0) return;
  rope_k<T><<<ps_blocks(n), PS_THREADS>>>(out, inp, pos, *d, d->ld ? d->ld : d->H * d->D, sign,
                                          accumulate);
  PS_CUDA_LAUNCHED();
}
void ps_cuda_rope_forward(float *out, const float *inp, const int32_t *pos, const ps_rope_desc *d) {
  /* out, inp: (N, H, D) stride ld; pos: (N) or (n_sections, N) */
  rope(out, inp, pos, d, 1.0f, 0);
}
void ps_cuda_rope_backward(float *dinp, const float *dout, const int32_t *pos,
                           const ps_rope_desc *d) {
  /* dinp += R^T dout (rotation by -angle) */
  rope(dinp, dout, pos, d, -1.0f, 1);
}
void ps_cuda_rope_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, const int32_t *pos,
                               const ps_rope_desc *d) {
  /* out, inp: (N, H, D) bf16, stride ld; pos: (N) or (n_sections, N) */
  rope(ps_bf(out), ps_bf(inp), pos, d, 1.0f, 0);
}
void ps_cuda_rope_backward_bf16(ps_bf16 *dinp, const ps_bf16 *dout, const int32_t *pos,
                                const ps_rope_desc *d) {
  /* dinp += R^T dout, both bf16 */
  rope(ps_bf(dinp), ps_bf(dout), pos, d, -1.0f, 1);
}

/* ---- resize (PyTorch align_corners=False, A = -0.75) ---- */

struct taps {
  int64_t idx[4];
  float w[4];
};

__device__ __forceinline__ float cubic1(float x) {
  return ((-0.75f + 2.0f) * x - (-0.75f + 3.0f)) * x * x + 1.0f;
}
__device__ __forceinline__ float cubic2(float x) {
  return ((-0.75f * x - 5.0f * -0.75f) * x + 8.0f * -0.75f) * x - 4.0f * -0.75f;
}

__device__ static taps make_taps(int64_t dst, int64_t in, float scale, int bicubic) {
  taps t;
  float src = scale * ((float)dst + 0.5f) - 0.5f;
  if (!bicubic && src < 0.0f) src = 0.0f;
  int64_t i0 = (int64_t)floorf(src);
  if (i0 > in - 1) i0 = in - 1;
  float lam = fminf(fmaxf(src - (float)i0, 0.0f), 1.0f);
  if (!bicubic) {
    t.idx[0] = i0;
    t.idx[1] = i0 + (i0 < in - 1 ? 1 : 0);
    t.w[0] = 1.0f - lam;
    t.w[1] = lam;
    t.idx[2] = t.idx[3] = i0;
    t.w[2] = t.w[3] = 0.0f;
  } else {
    t.w[0] = cubic2(lam + 1.0f);
    t.w[1] = cubic1(lam);
    float x2 = 1.0f - lam;
    t.w[2] = cubic1(x2);
    t.w[3] = cubic2(x2 + 1.0f);
    for (int k = 0; k < 4; k++) {
      int64_t v = i0 - 1 + k;
      t.idx[k] = v < 0 ? 0 : (v > in - 1 ? in - 1 : v);
    }
  }
  return t;
}

__global__ static void resize_fwd(float *out, const float *inp, int64_t NC, int64_t H, int64_t W,
                                  int64_t OH, int64_t OW, float sh, float sw, int bicubic) {
  int nt = bicubic ? 4 : 2;
  PS_GRID_STRIDE(i, NC * OH * OW) {
    int64_t ox = i % OW, oy = (i / OW) % OH, p = i / (OW * OH);
    taps ty = make_taps(oy, H, sh, bicubic), tx = make_taps(ox, W, sw, bicubic);
    const float *plane = inp + p * H * W;
    float acc = 0.0f;
    for (int a = 0; a < nt; a++) {
      float s = 0.0f;
      for (int c = 0; c < nt; c++) s += tx.w[c] * plane[ty.idx[a] * W + tx.idx[c]];
      acc += ty.w[a] * s;
    }
    out[i] = acc;
  }
}
__global__ static void resize_bwd(float *dinp, const float *dout, int64_t NC, int64_t H, int64_t W,
                                  int64_t OH, int64_t OW, float sh, float sw, int bicubic) {
  int nt = bicubic ? 4 : 2;
  PS_GRID_STRIDE(i, NC * OH * OW) {
    int64_t ox = i % OW, oy = (i / OW) % OH, p = i / (OW * OH);
    taps ty = make_taps(oy, H, sh, bicubic), tx = make_taps(ox, W, sw, bicubic);
    float *plane = dinp + p * H * W;
    float g = dout[i];
    for (int a = 0; a < nt; a++)
      for (int c = 0; c < nt; c++)
        if (ty.w[a] * tx.w[c] != 0.0f) atomicAdd(&plane[ty.idx[a] * W + tx.idx[c]], g * ty.w[a] * tx.w[c]);
  }
}
static float axis_scale(float given, int64_t in, int64_t out) {
  return given > 0.0f ? given : (float)in / (float)out;
}
void ps_cuda_resize_forward(float *out, const float *inp, int64_t NC, int64_t H, int64_t W,
                            int64_t OH, int64_t OW, float scale_h, float scale_w,
                            ps_resize_mode mode) {
  /* out: (NC, OH, OW); inp: (NC, H, W) */
  if (NC <= 0 || OH <= 0 || OW <= 0) return;
  resize_fwd<<<ps_blocks(NC * OH * OW), PS_THREADS>>>(out, inp, NC, H, W, OH, OW,
                                                      axis_scale(scale_h, H, OH),
                                                      axis_scale(scale_w, W, OW),
                                                      mode == PS_RESIZE_BICUBIC);
  PS_CUDA_LAUNCHED();
}
void ps_cuda_resize_backward(float *dinp, const float *dout, int64_t NC, int64_t H, int64_t W,
                             int64_t OH, int64_t OW, float scale_h, float scale_w,
                             ps_resize_mode mode) {
  /* dinp: (NC, H, W) += adjoint of dout: (NC, OH, OW) */
  if (NC <= 0 || OH <= 0 || OW <= 0) return;
  resize_bwd<<<ps_blocks(NC * OH * OW), PS_THREADS>>>(dinp, dout, NC, H, W, OH, OW,
                                                      axis_scale(scale_h, H, OH),
                                                      axis_scale(scale_w, W, OW),
                                                      mode == PS_RESIZE_BICUBIC);
  PS_CUDA_LAUNCHED();
}
