/* test_kernels_attention.c — the attention family: full, causal, grouped-query
 * (6 query heads on 2 kv heads), cross (Tq != Tk), KV-cache offsets, fully
 * masked rows, additive bias (broadcast and full) with its gradient,
 * decomposed relative-position terms with their gradients, packed qkv row
 * strides, several query chunks, and reduced scratch. Forward and lse vs a
 * double reference; backward vs finite differences (see kcheck.h). */
#include "kcheck.h"

static const ps_kernels *K;

typedef struct {
  ps_attention_desc d;
  /* where q/k/v live: input index and offset (packed qkv shares one input) */
  int qi, ki, vi;
  int64_t qoff, koff, voff;
  int bias_i, relh_i, relw_i; /* -1 when absent */
  double *lse;                /* (B, Hq, Tq) reference lse */
} att_ctx;

static int64_t ldq_of(const ps_attention_desc *d) {
  return d->ldq ? d->ldq : d->Hq * d->D;
}
static int64_t ldk_of(const ps_attention_desc *d) {
  return d->ldk ? d->ldk : d->Hkv * d->D;
}
static int64_t ldv_of(const ps_attention_desc *d) {
  return d->ldv ? d->ldv : d->Hkv * d->D;
}
static int64_t ldo_of(const ps_attention_desc *d) {
  return d->ldo ? d->ldo : d->Hq * d->D;
}

static void att_ref(kc_problem *p) {
  att_ctx *c = (att_ctx *)p->ctx;
  const ps_attention_desc *d = &c->d;
  const double *q = p->in[c->qi] + c->qoff, *k = p->in[c->ki] + c->koff,
               *v = p->in[c->vi] + c->voff;
  int64_t rep = d->Hq / d->Hkv;
  double *s = g_new(double, d->Tk);
  memset(p->out, 0, sizeof(double) * p->out_n);
  for (int64_t b = 0; b < d->B; b++)
    for (int64_t h = 0; h < d->Hq; h++)
      for (int64_t i = 0; i < d->Tq; i++) {
        int64_t g = h / rep;
        double mx = -INFINITY;
        for (int64_t j = 0; j < d->Tk; j++) {
          double dot = 0.0;
          for (int64_t e = 0; e < d->D; e++)
            dot += q[(b * d->Tq + i) * ldq_of(d) + h * d->D + e] *
                   k[(b * d->Tk + j) * ldk_of(d) + g * d->D + e];
          double l = d->scale * dot;
          if (c->bias_i >= 0)
            l += p->in[c->bias_i][b * d->bias_sb + h * d->bias_sh + i * d->Tk + j];
          if (c->relh_i >= 0) {
            int64_t row = (b * d->Hq + h) * d->Tq + i;
            l += p->in[c->relh_i][row * d->rel_kh + j / d->rel_kw] +
                 p->in[c->relw_i][row * d->rel_kw + j % d->rel_kw];
          }
          if (d->causal && j > i + d->Tk - d->Tq) l = -INFINITY;
          s[j] = l;
          mx = fmax(mx, l);
        }
        double *o = p->out + (b * d->Tq + i) * ldo_of(d) + h * d->D;
        if (mx == -INFINITY) {
          if (c->lse) c->lse[(b * d->Hq + h) * d->Tq + i] = -INFINITY;
          continue;
        }
        double sum = 0.0;
        for (int64_t j = 0; j < d->Tk; j++) sum += exp(s[j] - mx);
        if (c->lse) c->lse[(b * d->Hq + h) * d->Tq + i] = mx + log(sum);
        for (int64_t j = 0; j < d->Tk; j++) {
          double pj = exp(s[j] - mx) / sum;
          for (int64_t e = 0; e < d->D; e++)
            o[e] += pj * v[(b * d->Tk + j) * ldv_of(d) + g * d->D + e];
        }
      }
  g_free(s);
}

typedef struct {
  int packed; /* q, k, v from one (B, T, 3, H, D) buffer (needs Tq == Tk, Hq == Hkv) */
  int bias;   /* 0 none, 1 broadcast (Tq, Tk), 2 full (B, Hq, Tq, Tk) */
  int rel;    /* rel_h / rel_w on a kh x kw key grid */
  int64_t kh, kw;
  int64_t ldo_pad; /* extra floats per output row */
  int64_t checks;  /* FD checks per input */
} att_opts;

static void test_attention(const char *name, ps_attention_desc d, att_opts o) {
  att_ctx c = {.d = d, .bias_i = -1, .relh_i = -1, .relw_i = -1};
  kc_problem p = {.forward = att_ref, .ctx = &c};
  int64_t nq, nk, nv;
  if (o.packed) {
    int64_t C3 = 3 * d.Hq * d.D;
    c.d.ldq = c.d.ldk = c.d.ldv = C3;
    kc_add_input(&p, d.B * d.Tq * C3, -1, 1);
    c.qi = c.ki = c.vi = 0;
    c.qoff = 0;
    c.koff = d.Hq * d.D;
    c.voff = 2 * d.Hq * d.D;
    nq = nk = nv = d.B * d.Tq * C3;
  } else {
    nq = d.B * d.Tq * ldq_of(&d);
    nk = d.B * d.Tk * ldk_of(&d);
    nv = d.B * d.Tk * ldv_of(&d);
    kc_add_input(&p, nq, -1, 1);
    kc_add_input(&p, nk, -1, 1);
    kc_add_input(&p, nv, -1, 1);
    c.qi = 0, c.ki = 1, c.vi = 2;
  }
  int64_t nbias = 0;
  if (o.bias == 1) {
    c.d.bias_sb = c.d.bias_sh = 0;
    nbias = d.Tq * d.Tk;
  } else if (o.bias == 2) {
    c.d.bias_sh = d.Tq * d.Tk;
    c.d.bias_sb = d.Hq * d.Tq * d.Tk;
    nbias = d.B * d.Hq * d.Tq * d.Tk;
  }
  if (o.bias) {
    c.bias_i = p.n_in;
    kc_add_input(&p, nbias, -1, 1);
  }
  int64_t nrh = d.B * d.Hq * d.Tq * o.kh, nrw = d.B * d.Hq * d.Tq * o.kw;
  if (o.rel) {
    c.d.rel_kh = o.kh;
    c.d.rel_kw = o.kw;
    c.relh_i = p.n_in;
    kc_add_input(&p, nrh, -1, 1);
    c.relw_i = p.n_in;
    kc_add_input(&p, nrw, -1, 1);
  }
  c.d.ldo = d.Hq * d.D + o.ldo_pad;
  int64_t no = d.B * d.Tq * c.d.ldo, nl = d.B * d.Hq * d.Tq;
  c.lse = kc_dzeros(nl);
  kc_set_output(&p, no);

  /* f32 copies */
  g_autofree float *fq = kc_f32(p.in[c.qi], nq);
  g_autofree float *fk = o.packed ? NULL : kc_f32(p.in[c.ki], nk);
  g_autofree float *fv = o.packed ? NULL : kc_f32(p.in[c.vi], nv);
  const float *q = fq + c.qoff, *k = (o.packed ? fq : fk) + c.koff,
              *v = (o.packed ? fq : fv) + c.voff;
  g_autofree float *fbias = o.bias ? kc_f32(p.in[c.bias_i], nbias) : NULL;
  g_autofree float *frh = o.rel ? kc_f32(p.in[c.relh_i], nrh) : NULL;
  g_autofree float *frw = o.rel ? kc_f32(p.in[c.relw_i], nrw) : NULL;
  c.d.bias = fbias;
  c.d.rel_h = frh;
  c.d.rel_w = frw;

  g_autofree float *out = kc_fzeros(no), *lse = kc_fzeros(nl);
  int64_t ns = K->attention_scratch(&c.d, 0);
  g_autofree float *scratch = kc_fzeros(ns);
  K->attention_forward(out, lse, q, k, v, &c.d, scratch, ns);
  g_autofree char *n_f = g_strdup_printf("attention %s forward", name);
  kc_check_fwd(n_f, out, p.out, no, 2e-5);
  int lse_ok = 1;
  for (int64_t i = 0; i < nl; i++) {
    if (isinf(c.lse[i]))
      lse_ok &= isinf(lse[i]) && lse[i] < 0;
    else
      lse_ok &= fabs(lse[i] - c.lse[i]) <= 1e-5 * fmax(1.0, fabs(c.lse[i]));
  }
  PS_CHECK_MSG(lse_ok, "attention %s lse", name);

  /* the same with scratch for a single thread only */
  {
    int64_t per = K->attention_scratch(&c.d, 0);
    int threads = 1;
    const char *env = g_getenv("OMP_NUM_THREADS");
    if (env) threads = atoi(env) > 0 ? atoi(env) : 1;
    g_autofree float *out1 = kc_fzeros(no), *lse1 = kc_fzeros(nl);
    K->attention_forward(out1, lse1, q, k, v, &c.d, scratch, per / threads);
    /* same math; only BLAS's own threading (and so its rounding) may differ */
    double md = 0.0;
    for (int64_t i = 0; i < no; i++) md = fmax(md, fabs(out1[i] - out[i]));
    PS_CHECK_MSG(md <= 1e-6, "attention %s one-thread scratch: %g", name, md);
  }

  /* backward */
  g_autofree float *dout = kc_f32(p.dout, no);
  int64_t nb = K->attention_scratch(&c.d, 1);
  g_autofree float *bscratch = kc_fzeros(nb);
  g_autofree float *dq = kc_ffill(nq, KC_PREFILL);
  g_autofree float *dk = o.packed ? NULL : kc_ffill(nk, KC_PREFILL);
  g_autofree float *dv = o.packed ? NULL : kc_ffill(nv, KC_PREFILL);
  g_autofree float *dbias = o.bias ? kc_ffill(nbias, KC_PREFILL) : NULL;
  g_autofree float *drh = o.rel ? kc_ffill(nrh, KC_PREFILL) : NULL;
  g_autofree float *drw = o.rel ? kc_ffill(nrw, KC_PREFILL) : NULL;
  float *gq = dq + c.qoff, *gk = (o.packed ? dq : dk) + c.koff, *gv = (o.packed ? dq : dv) + c.voff;
  K->attention_backward(gq, gk, gv, dbias, drh, drw, dout, q, k, v, out, lse, &c.d, bscratch, nb);
  int64_t m = o.checks ? o.checks : 200;
  g_autofree char *n_q = g_strdup_printf("attention %s dq%s", name, o.packed ? "kv" : "");
  g_autofree char *n_k = g_strdup_printf("attention %s dk", name);
  g_autofree char *n_v = g_strdup_printf("attention %s dv", name);
  g_autofree char *n_b = g_strdup_printf("attention %s dbias", name);
  g_autofree char *n_h = g_strdup_printf("attention %s drel_h", name);
  g_autofree char *n_w = g_strdup_printf("attention %s drel_w", name);
  kc_check_grad(n_q, &p, c.qi, dq, 2e-4, m);
  if (!o.packed) {
    kc_check_grad(n_k, &p, c.ki, dk, 2e-4, m);
    kc_check_grad(n_v, &p, c.vi, dv, 2e-4, m);
  }
  if (o.bias) kc_check_grad(n_b, &p, c.bias_i, dbias, 2e-4, m);
  if (o.rel) {
    kc_check_grad(n_h, &p, c.relh_i, drh, 2e-4, m);
    kc_check_grad(n_w, &p, c.relw_i, drw, 2e-4, m);
  }
  g_free(c.lse);
  kc_problem_free(&p);
}

static ps_attention_desc desc(int64_t B, int64_t Hq, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D,
                              int causal) {
  ps_attention_desc d = {.B = B,
                         .Hq = Hq,
                         .Hkv = Hkv,
                         .Tq = Tq,
                         .Tk = Tk,
                         .D = D,
                         .scale = (float)(1.0 / sqrt((double)D)),
                         .causal = causal};
  return d;
}

/* A -inf bias entry masks exactly like causal masking does. */
static void test_mask_equals_causal(void) {
  ps_attention_desc d = desc(1, 2, 1, 7, 7, 4, 1);
  int64_t n = 7 * 2 * 4, nkv = 7 * 4;
  g_autofree double *dq = kc_dvec(n, -1, 1), *dk = kc_dvec(nkv, -1, 1), *dv = kc_dvec(nkv, -1, 1);
  g_autofree float *q = kc_f32(dq, n), *k = kc_f32(dk, nkv), *v = kc_f32(dv, nkv);
  g_autofree float *o1 = kc_fzeros(n), *o2 = kc_fzeros(n), *mask = kc_fzeros(49);
  for (int i = 0; i < 7; i++)
    for (int j = 0; j < 7; j++) mask[i * 7 + j] = j > i ? -INFINITY : 0.0f;
  int64_t ns = K->attention_scratch(&d, 0);
  g_autofree float *s = kc_fzeros(ns);
  K->attention_forward(o1, NULL, q, k, v, &d, s, ns);
  d.causal = 0;
  d.bias = mask;
  K->attention_forward(o2, NULL, q, k, v, &d, s, ns);
  double md = 0.0;
  for (int64_t i = 0; i < n; i++) md = fmax(md, fabs(o1[i] - o2[i]));
  PS_CHECK_NEAR(md, 0.0, 1e-6);
}

/* Descriptors that break their constraints write nothing (and read nothing
 * out of bounds, which the sanitizer build would report). */
static void test_invalid_desc(void) {
  float q[3 * 4] = {0}, k[2 * 4] = {0}, out[3 * 4], s[4096];
  for (int i = 0; i < 12; i++) out[i] = 7.0f;
  ps_attention_desc d = desc(1, 3, 2, 1, 1, 4, 0); /* 2 kv heads do not divide 3 */
  K->attention_forward(out, NULL, q, k, k, &d, s, 4096);
  d = desc(1, 1, 1, 3, 4, 4, 0);
  float rel[12] = {0};
  d.rel_h = rel, d.rel_w = rel, d.rel_kh = 3, d.rel_kw = 3; /* 3 x 3 != Tk = 4 */
  K->attention_forward(out, NULL, q, k, k, &d, s, 4096);
  int untouched = 1;
  for (int i = 0; i < 12; i++) untouched &= out[i] == 7.0f;
  PS_CHECK(untouched);
  ps_conv2d_desc c = {.B = 1, .C = 1, .H = 2, .W = 2, .OC = 1, .KH = 3, .KW = 3, .stride = 1};
  PS_CHECK(K->conv2d_scratch(&c) == 0);
  K->conv2d_forward(out, q, q, NULL, &c, s, 4096); /* kernel larger than the input */
  c.KH = c.KW = 1, c.stride = 0;                   /* zero stride */
  K->conv2d_forward(out, q, q, NULL, &c, s, 4096);
  untouched = 1;
  for (int i = 0; i < 12; i++) untouched &= out[i] == 7.0f;
  PS_CHECK(untouched);
}

/* Two application threads running attention at once (each with its own
 * OpenMP team) give the same results as running alone: the BLAS
 * single-threading guard is shared and reference counted. */
typedef struct {
  ps_attention_desc d;
  const float *q;
  float *out, *scratch;
  int64_t ns;
} conc_job;

static gpointer conc_run(gpointer p) {
  conc_job *j = p;
  for (int r = 0; r < 20; r++)
    K->attention_forward(j->out, NULL, j->q, j->q, j->q, &j->d, j->scratch, j->ns);
  return NULL;
}

static void test_concurrent(void) {
  ps_attention_desc d = desc(4, 4, 4, 33, 33, 16, 0);
  int64_t n = 4 * 33 * 4 * 16, ns = K->attention_scratch(&d, 0);
  g_autofree double *qd = kc_dvec(2 * n, -1, 1);
  g_autofree float *q = kc_f32(qd, 2 * n), *ref = kc_fzeros(2 * n), *out = kc_fzeros(2 * n);
  g_autofree float *s0 = kc_fzeros(ns), *s1 = kc_fzeros(ns);
  K->attention_forward(ref, NULL, q, q, q, &d, s0, ns);
  K->attention_forward(ref + n, NULL, q + n, q + n, q + n, &d, s0, ns);
  conc_job j0 = {d, q, out, s0, ns}, j1 = {d, q + n, out + n, s1, ns};
  GThread *t0 = g_thread_new("att0", conc_run, &j0), *t1 = g_thread_new("att1", conc_run, &j1);
  g_thread_join(t0);
  g_thread_join(t1);
  double md = 0.0;
  for (int64_t i = 0; i < 2 * n; i++) md = fmax(md, fabs(out[i] - ref[i]));
  PS_CHECK_NEAR(md, 0.0, 1e-6);
}

int main(void) {
  K = kc_cpu();
  kc_seed(3);
  att_opts none = {0};
  test_attention("single", desc(1, 1, 1, 1, 1, 1, 0), none);
  test_attention("full", desc(2, 3, 3, 9, 9, 8, 0), none);
  test_attention("causal-gqa", desc(1, 6, 2, 13, 13, 4, 1), none);
  test_attention("cross", desc(2, 2, 2, 5, 11, 6, 0), none);
  test_attention("kvcache", desc(2, 4, 2, 3, 10, 5, 1), none);
  test_attention("masked-rows", desc(1, 2, 1, 6, 4, 3, 1), none); /* rows 0, 1 see no key */
  test_attention("bias-broadcast", desc(2, 3, 3, 4, 6, 5, 0), (att_opts){.bias = 1});
  test_attention("bias-full-gqa", desc(2, 4, 2, 5, 3, 4, 0), (att_opts){.bias = 2});
  test_attention("packed-qkv", desc(2, 3, 3, 7, 7, 4, 0), (att_opts){.packed = 1, .ldo_pad = 3});
  test_attention("relpos", desc(2, 2, 2, 12, 12, 5, 0), (att_opts){.rel = 1, .kh = 3, .kw = 4});
  test_attention("relpos-cross", desc(1, 2, 2, 5, 6, 3, 0), (att_opts){.rel = 1, .kh = 2, .kw = 3});
  /* several query chunks (chunk = 256 rows at this Tk) with causal and GQA */
  test_attention("chunks", desc(1, 2, 1, 300, 300, 8, 1), (att_opts){.checks = 20});
  test_attention("chunks-full", desc(1, 1, 1, 270, 1100, 4, 0), (att_opts){.checks = 12});
  test_mask_equals_causal();
  test_invalid_desc();
  test_concurrent();
  return ps_test_finish();
}
