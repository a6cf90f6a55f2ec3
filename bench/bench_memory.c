/* bench_memory.c — memory-bound kernels (layernorm, softmax, GELU; forward
 * and backward) against an OpenMP-parallel memcpy moving the same number of
 * bytes, same threads, same run. "Bytes moved" is the least traffic each op
 * needs: forward reads x and writes y (2 arrays); backward reads dout and x
 * (softmax: y) and reads + writes dinp (4 arrays). The ratio
 * (op bytes/s) / (memcpy bytes/s) has the goal >= 0.5.
 *
 *   bench_memory [MIN_SECONDS [FILTER]]
 *
 * FILTER keeps the cases whose name contains it (e.g. softmax_fwd).
 * Ratios printed: `ratio` (median over median), `ratio_min` (fastest over
 * fastest) and `ratio_pair` (median of the per-pair ratios; each op run is
 * followed at once by its memcpy, so it is the steadiest on a shared machine). */
#include <pathseg/kernels.h>

#include "bench_common.h"

typedef struct {
  const ps_kernels *k;
  int op, bwd; /* op: 0 layernorm, 1 softmax, 2 gelu */
  int64_t N, C;
  float *x, *y, *dy, *dx, *w, *b, *mean, *rstd, *dw, *db;
} mem_ctx;

static void run_op(void *p) {
  mem_ctx *c = p;
  const ps_kernels *k = c->k;
  int64_t n = c->N * c->C;
  switch (c->op) {
  case 0:
    if (!c->bwd) k->layernorm_forward(c->y, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C, 1e-5f);
    else k->layernorm_backward(c->dx, c->dw, c->db, c->dy, c->x, c->w, c->mean, c->rstd, c->N, c->C);
    break;
  case 1:
    if (!c->bwd) k->softmax_forward(c->y, c->x, c->N, c->C);
    else k->softmax_backward(c->dx, c->dy, c->y, c->N, c->C);
    break;
  default:
    if (!c->bwd) k->gelu_forward(c->y, c->x, n);
    else k->gelu_backward(c->dx, c->x, c->dy, n);
  }
}

typedef struct {
  float *dst, *src;
  size_t n;
} copy_ctx;

static void run_copy(void *p) {
  copy_ctx *c = p;
#pragma omp parallel
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    size_t chunk = (c->n + (size_t)nt - 1) / (size_t)nt, lo = (size_t)t * chunk;
    size_t hi = lo + chunk < c->n ? lo + chunk : c->n;
    if (lo < hi) memcpy(c->dst + lo, c->src + lo, (hi - lo) * sizeof(float));
  }
}

int main(int argc, char **argv) {
  double min_seconds = argc > 1 ? atof(argv[1]) : 1.0;
  const char *filter = argc > 2 ? argv[2] : NULL;
  GError *err = NULL;
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, &err);
  if (!k) {
    fprintf(stderr, "bench_memory: %s\n", err->message);
    return 1;
  }
  printf("# bench_memory: %d OpenMP threads\n", bench_threads());
  /* (rows, cols): ViT-B activations of 4 images (4 x 4096 tokens x 768), and
   * attention-probability rows (8 x 4 heads x 256 x 256 is one shape; SAM
   * global attention rows of 4096 keys the other). */
  static const struct {
    int op;
    const char *name;
    int64_t N, C;
  } cases[] = {
      {0, "layernorm", 16384, 768}, {1, "softmax", 8192, 256}, {1, "softmax", 4096, 4096},
      {2, "gelu", 4096, 3072},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    for (int bwd = 0; bwd < 2; bwd++) {
      char name[64];
      g_snprintf(name, sizeof name, "%s_%s", cases[i].name, bwd ? "bwd" : "fwd");
      if (filter && !strstr(name, filter)) continue;
      mem_ctx c = {.k = k, .op = cases[i].op, .bwd = bwd, .N = cases[i].N, .C = cases[i].C};
      size_t n = (size_t)(c.N * c.C);
      c.x = bench_alloc(n), c.y = bench_alloc(n), c.dy = bench_alloc(n), c.dx = bench_alloc(n);
      c.w = bench_alloc((size_t)c.C), c.b = bench_alloc((size_t)c.C);
      c.dw = bench_alloc((size_t)c.C), c.db = bench_alloc((size_t)c.C);
      c.mean = bench_alloc((size_t)c.N), c.rstd = bench_alloc((size_t)c.N);
      bench_fill(c.x, n, 21), bench_fill(c.dy, n, 22), bench_fill(c.w, (size_t)c.C, 23);
      /* forward state for the backward (mean/rstd, softmax output) */
      c.bwd = 0;
      run_op(&c);
      c.bwd = bwd;
      double arrays = bwd ? 4.0 : 2.0, bytes = arrays * (double)n * sizeof(float);
      copy_ctx cp = {.n = (size_t)(bytes / 2 / sizeof(float))};
      cp.dst = bench_alloc(cp.n), cp.src = bench_alloc(cp.n);
      bench_fill(cp.src, cp.n, 24);
      double top, tcp;
      bench_pair(run_op, &c, run_copy, &cp, 5, min_seconds, &top, &tcp);
      printf("RESULT memory %s %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
             " op_ms=%.3f op_GBps=%.2f memcpy_ms=%.3f memcpy_GBps=%.2f ratio=%.3f"
             " ratio_min=%.3f ratio_pair=%.3f\n",
             name, c.N, c.C, top * 1e3, bytes / top * 1e-9, tcp * 1e3, bytes / tcp * 1e-9,
             tcp / top, bench_min_b / bench_min_a, bench_ratio_pair);
      free(c.x), free(c.y), free(c.dy), free(c.dx), free(c.w), free(c.b), free(c.dw), free(c.db),
          free(c.mean), free(c.rstd), free(cp.dst), free(cp.src);
    }
  }
  return 0;
}
