/* test_qwen2_gemv.c — the decode-step product of llm.qwen2 (qwen2_gemv.c):
 *   - y = x w^T + bias matches a double-precision reference, for sizes that
 *     are not multiples of its 16 lanes and rows given with a stride;
 *   - it is batch-invariant: a row computed alone, in a batch, or with 1 or
 *     2 threads gets exactly the same bits (what lets data-parallel ranks
 *     that split a sampling group draw the tokens of one process). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ps_test.h"
#include "qwen2.h"

static void fill(float *a, int64_t n, uint64_t *s) {
  for (int64_t i = 0; i < n; i++) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    a[i] = (float)((double)(*s >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
  }
}

static void check_size(int64_t N, int64_t in, int64_t out, int64_t stride) {
  uint64_t s = (uint64_t)(N * 1000003 + in * 101 + out);
  float *w = g_new(float, out *in), *x = g_new(float, N *stride), *b = g_new(float, out);
  float *y = g_new(float, N *out), *y1 = g_new(float, out), *y2 = g_new(float, N *out);
  fill(w, out * in, &s);
  fill(x, N * stride, &s);
  fill(b, out, &s);
  qwen2_gemv_rows(y, x, stride, w, b, N, in, out);
  double worst = 0;
  for (int64_t n = 0; n < N; n++)
    for (int64_t j = 0; j < out; j++) {
      double ref = b[j], mag = fabs(b[j]);
      for (int64_t i = 0; i < in; i++) {
        ref += (double)w[j * in + i] * x[n * stride + i];
        mag += fabs((double)w[j * in + i] * x[n * stride + i]);
      }
      worst = fmax(worst, fabs(y[n * out + j] - ref) / (mag + 1e-30));
    }
  PS_CHECK_MSG(worst < 1e-6, "N %ld in %ld out %ld: worst error %.3g of sum |terms|", (long)N,
               (long)in, (long)out, worst);
  /* each row alone gives the batch's bits */
  gboolean same = TRUE;
  for (int64_t n = 0; n < N; n++) {
    qwen2_gemv_rows(y1, x + n * stride, stride, w, b, 1, in, out);
    same = same && memcmp(y1, y + n * out, sizeof(float) * (size_t)out) == 0;
  }
  PS_CHECK_MSG(same, "N %ld in %ld out %ld: a row alone differs from the batch", (long)N, (long)in,
               (long)out);
  /* one thread and two threads give the same bits */
  int before = omp_get_max_threads();
  omp_set_num_threads(1);
  qwen2_gemv_rows(y2, x, stride, w, b, N, in, out);
  PS_CHECK(memcmp(y2, y, sizeof(float) * (size_t)(N * out)) == 0);
  omp_set_num_threads(2);
  qwen2_gemv_rows(y2, x, stride, w, NULL, N, in, out);
  qwen2_gemv_rows(y1, x, stride, w, NULL, 1, in, out);
  PS_CHECK(memcmp(y2, y1, sizeof(float) * (size_t)out) == 0);
  omp_set_num_threads(before);
  g_free(w);
  g_free(x);
  g_free(b);
  g_free(y);
  g_free(y1);
  g_free(y2);
}

int main(void) {
  check_size(1, 1, 1, 1);
  check_size(5, 53, 37, 60);    /* odd sizes, strided rows, one thread (below the threshold) */
  check_size(3, 300, 301, 300); /* above the parallel threshold */
  check_size(7, 16, 1000, 17);
  return ps_test_finish();
}
