/* bench_attention.c — attention forward + backward through the pathseg
 * kernel table, for the two shapes whose PyTorch timings bench/peer_torch.py
 * measures (bench/run.sh runs both with the same thread count):
 *
 *   mha: batch 8, 4 heads, 256 tokens, head dim 32, full attention, q/k/v
 *        packed in one (B, T, 3, H, D) projection as the model produces it;
 *   sam: SAM ViT-B windowed attention of one 1024x1024 image: 25 windows of
 *        14x14 tokens, 12 heads, head dim 64, decomposed relative positions
 *        (rel_pos_forward + attention forward; attention backward +
 *        rel_pos_backward).
 *
 * Forward saves lse; backward computes dq, dk, dv (and the relative-position
 * gradients), i.e. what training needs. Prints RESULT lines. */
#include <pathseg/kernels.h>

#include "bench_common.h"

typedef struct {
  const ps_kernels *k;
  ps_attention_desc d;
  int rel; /* SAM relative positions */
  int64_t gh, gw;
  float *qkv, *dqkv, *out, *dout, *lse, *scratch;
  int64_t scratch_floats;
  float *rel_h, *rel_w, *drel_h, *drel_w, *rph, *rpw, *drph, *drpw;
} att_ctx;

static void run_fwd(att_ctx *c) {
  const ps_attention_desc *d = &c->d;
  int64_t HD = d->Hq * d->D;
  if (c->rel)
    c->k->rel_pos_forward(c->rel_h, c->rel_w, c->qkv, c->rph, c->rpw, d->B, d->Hq, c->gh, c->gw,
                          d->D, 3 * HD);
  c->k->attention_forward(c->out, c->lse, c->qkv, c->qkv + HD, c->qkv + 2 * HD, d, c->scratch,
                          c->scratch_floats);
}

static void run_fwd_bwd(void *p) {
  att_ctx *c = p;
  const ps_attention_desc *d = &c->d;
  int64_t HD = d->Hq * d->D;
  run_fwd(c);
  c->k->attention_backward(c->dqkv, c->dqkv + HD, c->dqkv + 2 * HD, NULL,
                           c->rel ? c->drel_h : NULL, c->rel ? c->drel_w : NULL, c->dout, c->qkv,
                           c->qkv + HD, c->qkv + 2 * HD, c->out, c->lse, d, c->scratch,
                           c->scratch_floats);
  if (c->rel)
    c->k->rel_pos_backward(c->dqkv, c->drph, c->drpw, c->drel_h, c->drel_w, c->qkv, c->rph, c->rpw,
                           d->B, d->Hq, c->gh, c->gw, d->D, 3 * HD);
}

static void run_fwd_only(void *p) { run_fwd(p); }

static void bench(const ps_kernels *k, const char *name, int64_t B, int64_t H, int64_t T,
                  int64_t D, int rel, int64_t g, double min_seconds) {
  att_ctx c = {.k = k, .rel = rel, .gh = g, .gw = g};
  c.d = (ps_attention_desc){.B = B, .Hq = H, .Hkv = H, .Tq = T, .Tk = T, .D = D,
                            .ldq = 3 * H * D, .ldk = 3 * H * D, .ldv = 3 * H * D,
                            .scale = 1.0f / sqrtf((float)D)};
  size_t nqkv = (size_t)(B * T * 3 * H * D), no = (size_t)(B * T * H * D);
  c.qkv = bench_alloc(nqkv), c.dqkv = bench_alloc(nqkv);
  c.out = bench_alloc(no), c.dout = bench_alloc(no);
  c.lse = bench_alloc((size_t)(B * H * T));
  bench_fill(c.qkv, nqkv, 11), bench_fill(c.dout, no, 12);
  if (rel) {
    size_t nr = (size_t)(B * H * T * g), np = (size_t)((2 * g - 1) * D);
    c.rel_h = bench_alloc(nr), c.rel_w = bench_alloc(nr);
    c.drel_h = bench_alloc(nr), c.drel_w = bench_alloc(nr);
    c.rph = bench_alloc(np), c.rpw = bench_alloc(np), c.drph = bench_alloc(np),
    c.drpw = bench_alloc(np);
    bench_fill(c.rph, np, 13), bench_fill(c.rpw, np, 14);
    c.d.rel_h = c.rel_h, c.d.rel_w = c.rel_w, c.d.rel_kh = g, c.d.rel_kw = g;
  }
  int64_t s0 = k->attention_scratch(&c.d, 0), s1 = k->attention_scratch(&c.d, 1);
  c.scratch_floats = s0 > s1 ? s0 : s1;
  c.scratch = bench_alloc((size_t)(c.scratch_floats > 0 ? c.scratch_floats : 1));

  double tf, tfb;
  bench_pair(run_fwd_only, &c, NULL, NULL, 5, min_seconds, &tf, NULL);
  double tf_min = bench_min_a;
  bench_pair(run_fwd_bwd, &c, NULL, NULL, 5, min_seconds, &tfb, NULL);
  double tfb_min = bench_min_a;
  /* Matmul FLOPs: forward 2 products (QK^T, PV), backward 4 (dV, dP, dQ, dK). */
  double flops = 2.0 * B * H * (double)T * T * D;
  printf("RESULT attention %s B=%" G_GINT64_FORMAT " H=%" G_GINT64_FORMAT " T=%" G_GINT64_FORMAT
         " D=%" G_GINT64_FORMAT " rel=%d fwd_ms=%.3f fwd_bwd_ms=%.3f fwd_min_ms=%.3f"
         " fwd_bwd_min_ms=%.3f fwd_bwd_gflops=%.1f\n",
         name, B, H, T, D, rel, tf * 1e3, tfb * 1e3, tf_min * 1e3, tfb_min * 1e3,
         6.0 * flops / tfb * 1e-9);
  free(c.qkv), free(c.dqkv), free(c.out), free(c.dout), free(c.lse), free(c.scratch);
  if (rel)
    free(c.rel_h), free(c.rel_w), free(c.drel_h), free(c.drel_w), free(c.rph), free(c.rpw),
        free(c.drph), free(c.drpw);
}

int main(int argc, char **argv) {
  double min_seconds = argc > 1 ? atof(argv[1]) : 2.0;
  GError *err = NULL;
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, &err);
  if (!k) {
    fprintf(stderr, "bench_attention: %s\n", err->message);
    return 1;
  }
  printf("# bench_attention: %d OpenMP threads\n", bench_threads());
  bench(k, "mha", 8, 4, 256, 32, 0, 0, min_seconds);
  bench(k, "sam_window", 25, 12, 196, 64, 1, 14, min_seconds);
  return 0;
}
