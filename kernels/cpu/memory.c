/* memory.c — the CPU table's memory and optimizer entries: device memory is
 * host memory here, so these are malloc, memcpy and plain loops. The AdamW
 * loop is the one core/optim.c ran before it went through the table, so CPU
 * training is bit-identical to what it was. The layout entries (block copy,
 * row broadcast and its column sums) are here too: plain loops. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/ops.h"

#define MEM_ALIGN 64

void *ps_cpu_mem_alloc(size_t bytes) {
  void *p = NULL;
  size_t size = (bytes + MEM_ALIGN - 1) & ~(size_t)(MEM_ALIGN - 1);
  if (posix_memalign(&p, MEM_ALIGN, size ? size : MEM_ALIGN) != 0) return NULL;
  memset(p, 0, size ? size : MEM_ALIGN);
  return p;
}

void ps_cpu_mem_free(void *p) {
  free(p);
}

void ps_cpu_copy(void *dst, const void *src, size_t bytes) {
  if (bytes) memcpy(dst, src, bytes);
}

void ps_cpu_mem_zero(void *p, size_t bytes) {
  if (bytes) memset(p, 0, bytes);
}

double ps_cpu_sum_squares(const float *x, int64_t n) {
  double sum = 0;
#pragma omp parallel for reduction(+ : sum) if (n > 65536)
  for (int64_t k = 0; k < n; k++) sum += (double)x[k] * x[k];
  return sum;
}

int64_t ps_cpu_find_nonfinite(const float *x, int64_t n) {
  for (int64_t k = 0; k < n; k++)
    if (!isfinite(x[k])) return k;
  return -1;
}

void ps_cpu_adamw_step(float *p, const float *grad, float *m, float *v, ps_bf16 *p_bf16, int64_t n,
                       float clip, float beta1, float beta2, float wd, float step_size,
                       float inv_sqrt_c2, float eps) {
#pragma omp parallel for if (n > 65536)
  for (int64_t k = 0; k < n; k++) {
    float g = grad[k] * clip;
    m[k] = beta1 * m[k] + (1.0f - beta1) * g;
    v[k] = beta2 * v[k] + (1.0f - beta2) * g * g;
    p[k] -= wd * p[k];
    p[k] -= step_size * m[k] / (sqrtf(v[k]) * inv_sqrt_c2 + eps);
    if (p_bf16) p_bf16[k] = ps_f32_to_bf16(p[k]);
  }
}

void ps_cpu_to_bf16(ps_bf16 *out, const float *inp, int64_t n) {
#pragma omp parallel for if (n > 65536)
  for (int64_t k = 0; k < n; k++) out[k] = ps_f32_to_bf16(inp[k]);
}

void ps_cpu_from_bf16(float *out, const ps_bf16 *inp, int64_t n) {
#pragma omp parallel for if (n > 65536)
  for (int64_t k = 0; k < n; k++) out[k] = ps_bf16_to_f32(inp[k]);
}

void ps_cpu_copy_2d(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                    int64_t cols, int accumulate) {
#pragma omp parallel for if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; r++) {
    float *d = dst + r * ldd;
    const float *s = src + r * lds;
    if (accumulate)
      for (int64_t c = 0; c < cols; c++) d[c] += s[c];
    else
      memcpy(d, s, (size_t)cols * sizeof(float));
  }
}

void ps_cpu_add_rows(float *out, const float *inp, const float *row, int64_t N, int64_t C) {
#pragma omp parallel for if (N * C > 65536)
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) out[n * C + c] = inp[n * C + c] + row[c];
}

void ps_cpu_sum_rows(float *drow, const float *dout, int64_t N, int64_t C) {
  /* Columns split across threads; each column summed in row order. */
#pragma omp parallel if (N * C > 65536)
  {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t c0 = C * t / nt, c1 = C * (t + 1) / nt;
    for (int64_t n = 0; n < N; n++)
      for (int64_t c = c0; c < c1; c++) drow[c] += dout[n * C + c];
  }
}
