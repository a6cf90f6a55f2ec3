/* test_kernels_positional.c — SAM window partition/unpartition (9x9 grid,
 * window 4: padded), SAM decomposed relative positions, a composed SAM
 * windowed-attention block (packed qkv -> rel-pos from the unscaled q ->
 * attention -> unpartition) against a literal double transcription of SAM's
 * Python, and rotary embeddings (1-D, M-RoPE sections, vision 2-D sections):
 * forward vs double references, backward vs finite differences. */
#include "kcheck.h"

static const ps_kernels *K;

/* ---- window partition ---- */

typedef struct {
  int64_t B, H, W, C, ws;
  int inverse;
} win_ctx;

static int64_t nwin(int64_t n, int64_t ws) {
  return (n + ws - 1) / ws;
}

static void win_ref(kc_problem *p) {
  const win_ctx *c = p->ctx;
  int64_t nh = nwin(c->H, c->ws), nw = nwin(c->W, c->ws);
  /* windows (B*nh*nw, ws, ws, C) vs grid (B, H, W, C) */
  if (!c->inverse) memset(p->out, 0, sizeof(double) * p->out_n);
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t y = 0; y < nh * c->ws; y++)
      for (int64_t x = 0; x < nw * c->ws; x++)
        for (int64_t ch = 0; ch < c->C; ch++) {
          int64_t w = (b * nh + y / c->ws) * nw + x / c->ws;
          int64_t wi = ((w * c->ws + y % c->ws) * c->ws + x % c->ws) * c->C + ch;
          if (y >= c->H || x >= c->W) continue;
          int64_t gi = ((b * c->H + y) * c->W + x) * c->C + ch;
          if (c->inverse)
            p->out[gi] = p->in[0][wi];
          else
            p->out[wi] = p->in[0][gi];
        }
}

static void test_window(int64_t B, int64_t H, int64_t W, int64_t C, int64_t ws) {
  int64_t ng = B * H * W * C, nwn = B * nwin(H, ws) * nwin(W, ws) * ws * ws * C;
  for (int inverse = 0; inverse < 2; inverse++) {
    win_ctx c = {B, H, W, C, ws, inverse};
    kc_problem p = {.forward = win_ref, .ctx = &c};
    kc_add_input(&p, inverse ? nwn : ng, -1, 1);
    kc_set_output(&p, inverse ? ng : nwn);
    g_autofree float *x = kc_f32(p.in[0], p.in_n[0]), *y = kc_ffill(p.out_n, 9.0f);
    if (inverse)
      K->window_unpartition_forward(y, x, B, H, W, C, ws);
    else
      K->window_partition_forward(y, x, B, H, W, C, ws);
    kc_check_fwd(inverse ? "window unpartition" : "window partition", y, p.out, p.out_n, 0.0);
    g_autofree float *dy = kc_f32(p.dout, p.out_n), *dx = kc_ffill(p.in_n[0], KC_PREFILL);
    if (inverse)
      K->window_unpartition_backward(dx, dy, B, H, W, C, ws);
    else
      K->window_partition_backward(dx, dy, B, H, W, C, ws);
    kc_check_grad(inverse ? "window unpartition backward" : "window partition backward", &p, 0, dx,
                  1e-6, 400);
    kc_problem_free(&p);
  }
}

/* ---- decomposed relative positions ---- */

typedef struct {
  int64_t B, H, gh, gw, D, ldq;
} rp_ctx;

/* out = [rel_h (B, H, T, gh) | rel_w (B, H, T, gw)]; in: q, rel_pos_h, rel_pos_w */
static void relpos_ref(kc_problem *p) {
  const rp_ctx *c = p->ctx;
  int64_t T = c->gh * c->gw;
  double *rh = p->out, *rw = p->out + c->B * c->H * T * c->gh;
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t h = 0; h < c->H; h++)
      for (int64_t y = 0; y < c->gh; y++)
        for (int64_t x = 0; x < c->gw; x++) {
          const double *q = p->in[0] + (b * T + y * c->gw + x) * c->ldq + h * c->D;
          int64_t row = (b * c->H + h) * T + y * c->gw + x;
          for (int64_t k = 0; k < c->gh; k++) {
            double s = 0.0; /* Rh[y, k] = rel_pos_h[y - k + gh - 1] */
            for (int64_t e = 0; e < c->D; e++) s += q[e] * p->in[1][(y - k + c->gh - 1) * c->D + e];
            rh[row * c->gh + k] = s;
          }
          for (int64_t k = 0; k < c->gw; k++) {
            double s = 0.0;
            for (int64_t e = 0; e < c->D; e++) s += q[e] * p->in[2][(x - k + c->gw - 1) * c->D + e];
            rw[row * c->gw + k] = s;
          }
        }
}

static void test_relpos(int64_t B, int64_t H, int64_t gh, int64_t gw, int64_t D, int64_t pad,
                        int64_t checks) {
  rp_ctx c = {B, H, gh, gw, D, H * D + pad};
  int64_t T = gh * gw, nq = B * T * c.ldq;
  int64_t nh = B * H * T * gh, nw = B * H * T * gw;
  kc_problem p = {.forward = relpos_ref, .ctx = &c};
  kc_add_input(&p, nq, -1, 1);
  kc_add_input(&p, (2 * gh - 1) * D, -1, 1);
  kc_add_input(&p, (2 * gw - 1) * D, -1, 1);
  kc_set_output(&p, nh + nw);
  g_autofree float *q = kc_f32(p.in[0], nq), *th = kc_f32(p.in[1], p.in_n[1]);
  g_autofree float *tw = kc_f32(p.in[2], p.in_n[2]), *out = kc_fzeros(nh + nw);
  K->rel_pos_forward(out, out + nh, q, th, tw, B, H, gh, gw, D, c.ldq);
  kc_check_fwd("rel_pos forward", out, p.out, nh + nw, 1e-5);
  g_autofree float *dout = kc_f32(p.dout, nh + nw);
  g_autofree float *dq = kc_ffill(nq, KC_PREFILL), *dth = kc_ffill(p.in_n[1], KC_PREFILL);
  g_autofree float *dtw = kc_ffill(p.in_n[2], KC_PREFILL);
  K->rel_pos_backward(dq, dth, dtw, dout, dout + nh, q, th, tw, B, H, gh, gw, D, c.ldq);
  kc_check_grad("rel_pos dq", &p, 0, dq, 1e-4, checks);
  kc_check_grad("rel_pos drel_pos_h", &p, 1, dth, 1e-4, checks);
  kc_check_grad("rel_pos drel_pos_w", &p, 2, dtw, 1e-4, checks);
  kc_problem_free(&p);
}

/* ---- composed SAM windowed attention ---- */

typedef struct {
  int64_t B, H, W, heads, D, ws;
} sam_ctx;

/* Literal transcription of segment_anything's Block/Attention for the part
 * after qkv: x is already the packed qkv grid (B, H, W, 3*heads*D). Windows
 * are padded with zeros (which take part in attention), the logits are
 * (q*scale) @ k^T + rel_h + rel_w with rel terms from the UNSCALED q, and the
 * result is unpartitioned and cropped. in: x, rel_pos_h, rel_pos_w. */
static void sam_ref(kc_problem *p) {
  const sam_ctx *c = p->ctx;
  int64_t ws = c->ws, Hp = nwin(c->H, ws) * ws, Wp = nwin(c->W, ws) * ws;
  int64_t C3 = 3 * c->heads * c->D, T = ws * ws;
  double scale = 1.0 / sqrt((double)c->D);
  double *logit = g_new(double, T);
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t wy = 0; wy < Hp / ws; wy++)
      for (int64_t wx = 0; wx < Wp / ws; wx++)
        for (int64_t h = 0; h < c->heads; h++)
          for (int64_t t = 0; t < T; t++) {
            int64_t qy = t / ws, qx = t % ws, gy = wy * ws + qy, gx = wx * ws + qx;
            if (gy >= c->H || gx >= c->W) continue; /* cropped anyway */
            const double *q = p->in[0] + ((b * c->H + gy) * c->W + gx) * C3 + h * c->D;
            double mx = -INFINITY;
            for (int64_t s = 0; s < T; s++) {
              int64_t ky = s / ws, kx = s % ws, ky_g = wy * ws + ky, kx_g = wx * ws + kx;
              int inside = ky_g < c->H && kx_g < c->W;
              const double *kv = inside ? p->in[0] + ((b * c->H + ky_g) * c->W + kx_g) * C3 : NULL;
              double l = 0.0;
              for (int64_t e = 0; e < c->D; e++) {
                double kk = inside ? kv[c->heads * c->D + h * c->D + e] : 0.0;
                l += q[e] * scale * kk;
              }
              double rh = 0.0, rw = 0.0;
              for (int64_t e = 0; e < c->D; e++) {
                rh += q[e] * p->in[1][(qy - ky + ws - 1) * c->D + e];
                rw += q[e] * p->in[2][(qx - kx + ws - 1) * c->D + e];
              }
              logit[s] = l + rh + rw;
              mx = fmax(mx, logit[s]);
            }
            double sum = 0.0;
            for (int64_t s = 0; s < T; s++) sum += exp(logit[s] - mx);
            double *o = p->out + ((b * c->H + gy) * c->W + gx) * c->heads * c->D + h * c->D;
            for (int64_t e = 0; e < c->D; e++) o[e] = 0.0;
            for (int64_t s = 0; s < T; s++) {
              int64_t ky_g = wy * ws + s / ws, kx_g = wx * ws + s % ws;
              if (ky_g >= c->H || kx_g >= c->W) continue; /* padded v is 0 */
              const double *vv = p->in[0] + ((b * c->H + ky_g) * c->W + kx_g) * C3 +
                                 2 * c->heads * c->D + h * c->D;
              double pr = exp(logit[s] - mx) / sum;
              for (int64_t e = 0; e < c->D; e++) o[e] += pr * vv[e];
            }
          }
  g_free(logit);
}

static void test_sam_window_block(int64_t B, int64_t H, int64_t W, int64_t heads, int64_t D,
                                  int64_t ws) {
  sam_ctx c = {B, H, W, heads, D, ws};
  int64_t C3 = 3 * heads * D, C = heads * D, T = ws * ws;
  int64_t nW = B * nwin(H, ws) * nwin(W, ws);
  kc_problem p = {.forward = sam_ref, .ctx = &c};
  kc_add_input(&p, B * H * W * C3, -1, 1);
  kc_add_input(&p, (2 * ws - 1) * D, -1, 1);
  kc_add_input(&p, (2 * ws - 1) * D, -1, 1);
  kc_set_output(&p, B * H * W * C);
  g_autofree float *x = kc_f32(p.in[0], p.in_n[0]), *th = kc_f32(p.in[1], p.in_n[1]);
  g_autofree float *tw = kc_f32(p.in[2], p.in_n[2]);
  /* forward: partition -> rel-pos (unscaled q) -> attention -> unpartition */
  g_autofree float *win = kc_fzeros(nW * T * C3), *rh = kc_fzeros(nW * heads * T * ws);
  g_autofree float *rw = kc_fzeros(nW * heads * T * ws), *wout = kc_fzeros(nW * T * C);
  g_autofree float *lse = kc_fzeros(nW * heads * T), *y = kc_fzeros(B * H * W * C);
  K->window_partition_forward(win, x, B, H, W, C3, ws);
  K->rel_pos_forward(rh, rw, win, th, tw, nW, heads, ws, ws, D, C3);
  ps_attention_desc d = {.B = nW,
                         .Hq = heads,
                         .Hkv = heads,
                         .Tq = T,
                         .Tk = T,
                         .D = D,
                         .ldq = C3,
                         .ldk = C3,
                         .ldv = C3,
                         .scale = (float)(1.0 / sqrt((double)D)),
                         .rel_h = rh,
                         .rel_w = rw,
                         .rel_kh = ws,
                         .rel_kw = ws};
  int64_t ns = kc_max64(K->attention_scratch(&d, 0), K->attention_scratch(&d, 1));
  g_autofree float *scratch = kc_fzeros(ns);
  K->attention_forward(wout, lse, win, win + C, win + 2 * C, &d, scratch, ns);
  K->window_unpartition_forward(y, wout, B, H, W, C, ws);
  kc_check_fwd("sam window block forward", y, p.out, B * H * W * C, 2e-5);
  /* backward through the same chain */
  g_autofree float *dy = kc_f32(p.dout, B * H * W * C), *dwout = kc_fzeros(nW * T * C);
  g_autofree float *dwin = kc_fzeros(nW * T * C3), *drh = kc_fzeros(nW * heads * T * ws);
  g_autofree float *drw = kc_fzeros(nW * heads * T * ws);
  g_autofree float *dx = kc_ffill(p.in_n[0], KC_PREFILL), *dth = kc_ffill(p.in_n[1], KC_PREFILL);
  g_autofree float *dtw = kc_ffill(p.in_n[2], KC_PREFILL);
  K->window_unpartition_backward(dwout, dy, B, H, W, C, ws);
  K->attention_backward(dwin, dwin + C, dwin + 2 * C, NULL, drh, drw, dwout, win, win + C,
                        win + 2 * C, wout, lse, &d, scratch, ns);
  K->rel_pos_backward(dwin, dth, dtw, drh, drw, win, th, tw, nW, heads, ws, ws, D, C3);
  K->window_partition_backward(dx, dwin, B, H, W, C3, ws);
  kc_check_grad("sam window block dx", &p, 0, dx, 2e-4, 150);
  kc_check_grad("sam window block drel_pos_h", &p, 1, dth, 2e-4, 150);
  kc_check_grad("sam window block drel_pos_w", &p, 2, dtw, 2e-4, 150);
  kc_problem_free(&p);
}

/* ---- rotary embeddings ---- */

typedef struct {
  ps_rope_desc d;
  const int32_t *pos;
} rope_ctx;

static void rope_ref(kc_problem *p) {
  const rope_ctx *c = p->ctx;
  const ps_rope_desc *d = &c->d;
  int64_t half = d->D / 2, ld = d->ld ? d->ld : d->H * d->D;
  memset(p->out, 0, sizeof(double) * p->out_n);
  for (int64_t n = 0; n < d->N; n++)
    for (int64_t j = 0; j < half; j++) {
      /* stream and frequency of j, written out per mode */
      int stream = 0;
      int64_t jj = j, dim = d->D;
      if (d->n_sections > 0) {
        int64_t start = 0;
        while (stream < d->n_sections - 1 && j >= start + d->sections[stream])
          start += d->sections[stream++];
        if (d->section_local) jj = j - start, dim = 2 * d->sections[stream];
      }
      /* PyTorch: inv_freq = 1 / theta ** (arange(0, dim, 2).float() / dim) and
       * pos.float() * inv_freq, all rounded to float32; cos/sin exact here */
      float e = (float)(2 * jj) / (float)dim;
      float inv = 1.0f / (float)pow((double)d->theta, (double)e);
      float angf = (float)c->pos[stream * d->N + n] * inv;
      double ang = angf, cs = cos(ang), sn = sin(ang);
      for (int64_t h = 0; h < d->H; h++) {
        const double *x = p->in[0] + n * ld + h * d->D;
        double *y = p->out + n * ld + h * d->D;
        /* q' = q cos + rotate_half(q) sin, rotate_half = cat(-x2, x1) */
        y[j] = x[j] * cs - x[j + half] * sn;
        y[j + half] = x[j + half] * cs + x[j] * sn;
      }
    }
}

static void test_rope(const char *name, ps_rope_desc d, const int32_t *pos) {
  rope_ctx c = {d, pos};
  int64_t ld = d.ld ? d.ld : d.H * d.D, n = d.N * ld;
  kc_problem p = {.forward = rope_ref, .ctx = &c};
  kc_add_input(&p, n, -1, 1);
  /* the stride padding is not part of the op: zero it in the input */
  for (int64_t t = 0; t < d.N; t++)
    for (int64_t i = d.H * d.D; i < ld; i++) p.in[0][t * ld + i] = 0.0;
  kc_set_output(&p, n);
  g_autofree float *x = kc_f32(p.in[0], n), *y = kc_fzeros(n);
  K->rope_forward(y, x, pos, &d);
  /* the reference rounds the angle to float32 as PyTorch does, so what is
   * left is cosf/sinf's ulp */
  g_autofree char *nf = g_strdup_printf("rope %s forward", name);
  kc_check_fwd(nf, y, p.out, n, 2e-6);
  K->rope_forward(x, x, pos, &d); /* in place */
  PS_CHECK_MSG(memcmp(x, y, sizeof(float) * n) == 0, "rope %s in place", name);
  g_autofree float *x2 = kc_f32(p.in[0], n), *dy = kc_f32(p.dout, n);
  g_autofree float *dx = kc_ffill(n, KC_PREFILL);
  for (int64_t t = 0; t < d.N; t++) /* padding is not touched by backward */
    for (int64_t i = d.H * d.D; i < ld; i++) dx[t * ld + i] = KC_PREFILL;
  K->rope_backward(dx, dy, pos, &d);
  g_autofree char *nb = g_strdup_printf("rope %s backward", name);
  kc_check_grad(nb, &p, 0, dx, 1e-5, 400);
  /* backward undoes forward: R^T R x = x */
  g_autofree float *z = kc_fzeros(n);
  K->rope_backward(z, y, pos, &d);
  KC_EXPECT("rope inverse", kc_err(z, p.in[0], n, 1.0), 1e-6);
  kc_problem_free(&p);
}

int main(void) {
  K = kc_cpu();
  kc_seed(4);
  test_window(1, 1, 1, 1, 1);
  test_window(2, 9, 9, 3, 4); /* padding 9 -> 12 */
  test_window(1, 5, 7, 2, 3); /* different padding per dimension */
  test_window(1, 8, 8, 2, 4); /* no padding */
  test_relpos(1, 1, 1, 1, 1, 0, 300);
  test_relpos(2, 2, 3, 4, 5, 7, 300);
  test_relpos(1, 3, 5, 2, 4, 0, 300);
  test_relpos(2, 2, 8, 7, 33, 3, 200);     /* enough work to run threaded */
  test_relpos(1, 1, 65, 64, 2, 0, 30);     /* grid tile over 4096 floats: dot-product path */
  test_relpos(1, 2, 4, 3, 2400, 0, 30);    /* table over 16384 floats: no private copies */
  test_sam_window_block(1, 9, 9, 2, 4, 4); /* 9x9 grid, window 4: 3x3 windows with padding */
  test_sam_window_block(2, 5, 3, 1, 3, 3);

  /* 1-D RoPE, positions including 0 and a large one, padded row stride */
  int32_t pos1[5] = {0, 1, 7, 100, 4095};
  test_rope("1d", (ps_rope_desc){.N = 5, .H = 3, .D = 8, .ld = 3 * 8 + 5, .theta = 10000.0f}, pos1);
  test_rope("1d-theta1e6", (ps_rope_desc){.N = 5, .H = 2, .D = 16, .theta = 1e6f}, pos1);
  int32_t pos_one[1] = {3};
  test_rope("1d-single", (ps_rope_desc){.N = 1, .H = 1, .D = 2, .theta = 10000.0f}, pos_one);
  /* M-RoPE: 3 streams (t, h, w), sections 2 + 3 + 3 = D/2 */
  int32_t pos3[3 * 4] = {0, 5, 5, 9, /* t */ 0, 1, 2, 3, /* h */ 3, 2, 1, 0 /* w */};
  test_rope("mrope",
            (ps_rope_desc){
                .N = 4, .H = 2, .D = 16, .theta = 1e6f, .n_sections = 3, .sections = {2, 3, 3}},
            pos3);
  /* vision 2-D RoPE: 2 streams, frequencies restart per section */
  int32_t pos2[2 * 4] = {0, 0, 1, 1, 0, 1, 0, 1};
  test_rope("vision2d",
            (ps_rope_desc){.N = 4,
                           .H = 1,
                           .D = 16,
                           .theta = 10000.0f,
                           .n_sections = 2,
                           .sections = {4, 4},
                           .section_local = 1},
            pos2);
  /* text-only M-RoPE (three equal streams) equals 1-D RoPE */
  {
    int32_t same[3 * 5];
    for (int s = 0; s < 3; s++) memcpy(same + 5 * s, pos1, sizeof pos1);
    ps_rope_desc d1 = {.N = 5, .H = 2, .D = 16, .theta = 1e6f};
    ps_rope_desc d3 = d1;
    d3.n_sections = 3;
    d3.sections[0] = 2, d3.sections[1] = 3, d3.sections[2] = 3;
    g_autofree double *xd = kc_dvec(5 * 32, -1, 1);
    g_autofree float *x = kc_f32(xd, 5 * 32), *a = kc_fzeros(5 * 32), *b = kc_fzeros(5 * 32);
    K->rope_forward(a, x, pos1, &d1);
    K->rope_forward(b, x, same, &d3);
    PS_CHECK(memcmp(a, b, sizeof(float) * 5 * 32) == 0);
  }
  return ps_test_finish();
}
