/* rope.c — rotary position embedding (rotate-half form, HF Qwen2 / Qwen2-VL
 * M-RoPE sections / Qwen2.5-VL vision 2-D RoPE) on the CPU, forward and its
 * backward (the inverse rotation). Angles are computed like PyTorch: the
 * inverse frequencies and pos * inv_freq in float32, then cos/sin. */
#include <math.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

/* Frequencies handled per block of cos/sin on the stack. */
#define FBLK 128

/* Stream and inverse frequency of frequency index j (< D/2). */
static void rope_freq(const ps_rope_desc *d, int64_t j, int *stream, float *inv) {
  if (d->n_sections <= 0) {
    *stream = 0;
    *inv = 1.0f / powf(d->theta, (float)(2 * j) / (float)d->D);
    return;
  }
  int64_t start = 0;
  int s = 0;
  for (; s < d->n_sections - 1; s++) {
    if (j < start + d->sections[s]) break;
    start += d->sections[s];
  }
  *stream = s;
  if (d->section_local) {
    int64_t dim = 2 * (int64_t)d->sections[s];
    *inv = 1.0f / powf(d->theta, (float)(2 * (j - start)) / (float)dim);
  } else {
    *inv = 1.0f / powf(d->theta, (float)(2 * j) / (float)d->D);
  }
}

/* out = R(sign * angle) inp for every head of every token; sign -1 is the inverse. */
/* Frequencies whose inverse frequency and stream are computed once per call
 * (powf per row and frequency was most of the op's time); wider heads fall
 * back to computing them per row. */
#define FTAB 1024

static void rope_apply(float *out, const float *inp, const int32_t *pos, const ps_rope_desc *d,
                       float sign, int accumulate) {
  int64_t N = d->N, H = d->H, D = d->D, half = D / 2;
  int64_t ld = d->ld ? d->ld : H * D;
  float inv_tab[FTAB];
  int stream_tab[FTAB];
  const int tabled = half <= FTAB;
  for (int64_t j = 0; tabled && j < half; j++) rope_freq(d, j, &stream_tab[j], &inv_tab[j]);
#pragma omp parallel for schedule(static) if (N * H * D > PS_OMP_MIN_WORK)
  for (int64_t n = 0; n < N; n++) {
    float cs[FBLK], sn[FBLK];
    for (int64_t j0 = 0; j0 < half; j0 += FBLK) {
      int64_t nj = ps_min64(FBLK, half - j0);
      for (int64_t jj = 0; jj < nj; jj++) {
        int stream;
        float inv;
        if (tabled) {
          stream = stream_tab[j0 + jj];
          inv = inv_tab[j0 + jj];
        } else {
          rope_freq(d, j0 + jj, &stream, &inv);
        }
        float ang = (float)pos[(int64_t)stream * N + n] * inv;
        cs[jj] = cosf(ang);
        sn[jj] = sign * sinf(ang);
      }
      for (int64_t h = 0; h < H; h++) {
        const float *x = inp + n * ld + h * D + j0;
        float *y = out + n * ld + h * D + j0;
        if (accumulate) {
#pragma omp simd
          for (int64_t jj = 0; jj < nj; jj++) {
            float a = x[jj], b = x[jj + half];
            y[jj] += a * cs[jj] - b * sn[jj];
            y[jj + half] += b * cs[jj] + a * sn[jj];
          }
        } else {
#pragma omp simd
          for (int64_t jj = 0; jj < nj; jj++) {
            float a = x[jj], b = x[jj + half];
            y[jj] = a * cs[jj] - b * sn[jj];
            y[jj + half] = b * cs[jj] + a * sn[jj];
          }
        }
      }
    }
  }
}

void ps_cpu_rope_forward(float *out, const float *inp, const int32_t *pos, const ps_rope_desc *d) {
  /* out, inp: (N, H, D) with row stride ld (in place allowed); pos: (N) or (n_sections, N) */
  rope_apply(out, inp, pos, d, 1.0f, 0);
}

void ps_cpu_rope_backward(float *dinp, const float *dout, const int32_t *pos,
                          const ps_rope_desc *d) {
  /* dinp += R^T dout; the rotation is orthogonal, so R^T is the rotation by -angle */
  rope_apply(dinp, dout, pos, d, -1.0f, 1);
}
