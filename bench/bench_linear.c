/* bench_linear.c — linear forward + backward (pathseg kernel table) against
 * the raw cblas_sgemm calls of the same three products, in the same run.
 *
 * Forward: out(N, OC) = inp(N, C) @ W(OC, C)^T + b; backward: dinp += dout @ W,
 * dW += dout^T @ inp, db += colsum(dout). The peer does exactly the three
 * sgemm calls (no bias), so ratio = t_peer / t_pathseg is the fraction of raw
 * BLAS speed the kernel keeps (goal >= 0.90). The machine's sgemm peak is
 * measured on a square 4096^3 NN product.
 *
 * Ratios printed: `ratio` (median over median), `ratio_min` (fastest over
 * fastest) and `ratio_pair` (median of the per-pair ratios; each pair runs
 * back to back, so it is the steadiest on a shared machine). The kernel's
 * only work beyond the peer's is the dbias column sum (one pass over dout,
 * ~0.5 % here) and the bias copy, which takes the place of the zeroing
 * OpenBLAS does for the peer's beta = 0. */
#include <cblas.h>
#include <pathseg/kernels.h>

#include "bench_common.h"

typedef struct {
  const ps_kernels *k;
  int64_t N, C, OC;
  float *inp, *w, *b, *out, *dout, *dinp, *dw, *db;
} linear_ctx;

static void run_pathseg(void *p) {
  linear_ctx *c = p;
  c->k->linear_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
  c->k->linear_backward(c->dinp, c->dw, c->db, c->dout, c->inp, c->w, c->N, c->C, c->OC);
}

static void run_peer(void *p) {
  linear_ctx *c = p;
  int N = (int)c->N, C = (int)c->C, OC = (int)c->OC;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, c->inp, C, c->w, C, 0.0f,
              c->out, OC);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, c->dout, OC, c->w, C,
              1.0f, c->dinp, C);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, c->dout, OC, c->inp, C,
              1.0f, c->dw, C);
}

typedef struct {
  int n;
  float *a, *b, *c;
} square_ctx;

static void run_square(void *p) {
  square_ctx *s = p;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->n, s->n, s->n, 1.0f, s->a, s->n, s->b,
              s->n, 0.0f, s->c, s->n);
}

int main(int argc, char **argv) {
  double min_seconds = argc > 1 ? atof(argv[1]) : 2.0;
  GError *err = NULL;
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, &err);
  if (!k) {
    fprintf(stderr, "bench_linear: %s\n", err->message);
    return 1;
  }
  printf("# bench_linear: %d OpenMP threads, %s, core %s\n", bench_threads(), openblas_get_config(),
         openblas_get_corename());

  square_ctx sq = {.n = 4096};
  sq.a = bench_alloc((size_t)sq.n * sq.n);
  sq.b = bench_alloc((size_t)sq.n * sq.n);
  sq.c = bench_alloc((size_t)sq.n * sq.n);
  bench_fill(sq.a, (size_t)sq.n * sq.n, 1);
  bench_fill(sq.b, (size_t)sq.n * sq.n, 2);
  double tsq;
  bench_pair(run_square, &sq, NULL, NULL, 3, min_seconds, &tsq, NULL);
  double peak = 2.0 * sq.n * (double)sq.n * sq.n / tsq * 1e-9;
  printf("RESULT linear sgemm_peak n=4096 gflops=%.1f gflops_best=%.1f\n", peak,
         2.0 * sq.n * (double)sq.n * sq.n / bench_min_a * 1e-9);
  free(sq.a), free(sq.b), free(sq.c);

  /* (N tokens, C in, OC out): ViT-B/SAM MLP up and down, fused qkv, and a
   * Qwen2.5-0.5B MLP projection. */
  static const int64_t shapes[][3] = {
      {4096, 768, 3072}, {4096, 3072, 768}, {4096, 768, 2304}, {2048, 896, 4864}};
  for (size_t s = 0; s < G_N_ELEMENTS(shapes); s++) {
    linear_ctx c = {.k = k, .N = shapes[s][0], .C = shapes[s][1], .OC = shapes[s][2]};
    size_t nc = (size_t)(c.N * c.C), no = (size_t)(c.N * c.OC), wc = (size_t)(c.OC * c.C);
    c.inp = bench_alloc(nc), c.dinp = bench_alloc(nc);
    c.out = bench_alloc(no), c.dout = bench_alloc(no);
    c.w = bench_alloc(wc), c.dw = bench_alloc(wc);
    c.b = bench_alloc((size_t)c.OC), c.db = bench_alloc((size_t)c.OC);
    bench_fill(c.inp, nc, 3), bench_fill(c.dout, no, 4), bench_fill(c.w, wc, 5);
    bench_fill(c.b, (size_t)c.OC, 6);
    double tp, tq;
    /* at least 7 pairs: a median of 3 on a shared machine is one burst of
     * load away from a different answer */
    bench_pair(run_pathseg, &c, run_peer, &c, 7, min_seconds, &tp, &tq);
    double flops = 3.0 * 2.0 * (double)c.N * (double)c.C * (double)c.OC;
    printf("RESULT linear %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
           " pathseg_ms=%.2f sgemm_ms=%.2f ratio=%.3f ratio_min=%.3f ratio_pair=%.3f"
           " gflops=%.1f peak_frac=%.3f\n",
           c.N, c.C, c.OC, tp * 1e3, tq * 1e3, tq / tp, bench_min_b / bench_min_a,
           bench_ratio_pair, flops / tp * 1e-9, flops / tp * 1e-9 / peak);
    free(c.inp), free(c.dinp), free(c.out), free(c.dout), free(c.w), free(c.dw), free(c.b),
        free(c.db);
  }
  return 0;
}
