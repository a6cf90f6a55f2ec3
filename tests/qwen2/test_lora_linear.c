/* test_lora_linear.c — the shared linear layer with a LoRA branch
 * (core/layers.c) against a double-precision reference and central finite
 * differences: plain (no LoRA), LoRA without dropout, LoRA with dropout in
 * training (the mask is held fixed by restoring the context's RNG before
 * every forward) and in evaluation (no dropout), only-LoRA training (no base
 * gradient buffers), a fresh adapter (B = 0) leaving the layer unchanged,
 * and the parameter names and roles.
 *
 * The loss L = sum R * y is linear in x, W, b, and in A and B separately, so
 * a central difference is exact up to float32 rounding of y (about 1e-6
 * relative to |y| ~ 1 per entry, summed over ~30 entries): an entry passes
 * when |fd - an| <= 1e-3 + 1e-3 |an| with step 1e-2; a missing scaling or
 * dropout factor is off by a factor of 2 here. */
#include <pathseg/host.h>
#include <pathseg/layers.h>

#include "ps_test.h"

#define N 6
#define IN 7
#define OUT 5
#define R 3
#define ALPHA 6.0 /* scaling 2 */
#define EPS 1e-2

typedef struct {
  ps_linear l;
  GArray *params;
  GPtrArray *names;
  ps_context *ctx;
  ps_rng rng_at_forward; /* restored before each forward: the same dropout mask */
  float x[N * IN], y[N * OUT], rw[N * OUT], dx[N * IN];
} lcase;

static void fill(float *p, int64_t n, ps_rng *rng, double std) {
  for (int64_t i = 0; i < n; i++) p[i] = (float)(std * ps_rng_normal(rng));
}

static void setup(lcase *c, int64_t r, double dropout, gboolean training, gboolean train_base,
                  ps_rng *rng) {
  memset(c, 0, sizeof *c);
  GError *err = NULL;
  PS_CHECK_OK(ps_linear_init(&c->l, IN, OUT, TRUE, 0.5, rng, &err), err);
  fill(ps_f32(c->l.bias), OUT, rng, 0.5);
  if (r) {
    PS_CHECK_OK(ps_linear_add_lora(&c->l, r, ALPHA, dropout, rng, &err), err);
    /* B starts at zero (checked elsewhere); make it non-zero to test the branch. */
    fill(ps_f32(c->l.lora_b), OUT * r, rng, 0.5);
  }
  c->params = g_array_new(FALSE, TRUE, sizeof(ps_param));
  c->names = g_ptr_array_new_with_free_func(g_free);
  ps_linear_params(&c->l, "model.layers.0.self_attn.q_proj", PS_ROLE_BACKBONE, c->params, c->names);
  ps_linear_bind(&c->l, c->params, 0);
  for (guint i = 0; i < c->params->len; i++) {
    ps_param *p = &g_array_index(c->params, ps_param, i);
    if (p->role == PS_ROLE_LORA || train_base)
      p->grad = ps_tensor_new(PS_DTYPE_F32, p->value->ndim, p->value->shape, NULL);
  }
  c->ctx = ps_context_new(PS_DEVICE_CPU, 1, 1234);
  ps_context_set_training(c->ctx, training);
  c->rng_at_forward = *ps_context_rng(c->ctx);
  fill(c->x, N * IN, rng, 1.0);
  fill(c->rw, N * OUT, rng, 1.0);
}

static void teardown(lcase *c) {
  for (guint i = 0; i < c->params->len; i++)
    ps_tensor_free(g_array_index(c->params, ps_param, i).grad);
  g_array_free(c->params, TRUE);
  g_ptr_array_free(c->names, TRUE);
  ps_linear_clear(&c->l);
  ps_context_free(c->ctx);
}

static double loss(lcase *c, const ps_kernels *k) {
  GError *err = NULL;
  *ps_context_rng(c->ctx) = c->rng_at_forward;
  if (!ps_linear_forward(&c->l, k, c->ctx, c->y, c->x, N, &err)) {
    PS_CHECK_OK(FALSE, err);
    return NAN;
  }
  double L = 0;
  for (int i = 0; i < N * OUT; i++) L += (double)c->y[i] * c->rw[i];
  return L;
}

/* Central differences at every entry of `v` (n floats) against `an`. */
static void check_fd(lcase *c, const ps_kernels *k, float *v, const float *an, int64_t n,
                     const char *what) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    float v0 = v[i];
    v[i] = (float)(v0 + EPS);
    double lp = loss(c, k);
    v[i] = (float)(v0 - EPS);
    double lm = loss(c, k);
    v[i] = v0;
    double step = (double)(float)(v0 + EPS) - (double)(float)(v0 - EPS);
    double fd = (lp - lm) / step, a = an ? an[i] : 0.0;
    double err = fabs(fd - a) / (1e-3 + 1e-3 * fabs(a));
    worst = MAX(worst, err);
    PS_CHECK_MSG(err <= 1.0, "%s[%" G_GINT64_FORMAT "]: analytic %.7g, finite difference %.7g",
                 what, i, a, fd);
  }
  printf("  %-10s worst |fd - an| / tol = %.3f\n", what, worst);
}

static float *grad_of(lcase *c, const char *suffix) {
  for (guint i = 0; i < c->params->len; i++) {
    ps_param *p = &g_array_index(c->params, ps_param, i);
    if (g_str_has_suffix(p->name, suffix)) return p->grad ? ps_f32(p->grad) : NULL;
  }
  return NULL;
}

/* y in double: x W^T + b + s B (A u) with u = dropout(x) as the layer drew it. */
static double forward_error(lcase *c) {
  const ps_linear *l = &c->l;
  double worst = 0;
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OUT; o++) {
      double y = ps_f32(l->bias)[o];
      for (int i = 0; i < IN; i++) y += (double)c->x[n * IN + i] * ps_f32(l->weight)[o * IN + i];
      if (l->r) {
        for (int j = 0; j < l->r; j++) {
          double a = 0;
          for (int i = 0; i < IN; i++) {
            double u = c->x[n * IN + i];
            if (l->dropped) u = l->keep[n * IN + i] ? u / (1.0 - l->dropout) : 0.0;
            a += u * ps_f32(l->lora_a)[j * IN + i];
          }
          y += l->scaling * ps_f32(l->lora_b)[o * l->r + j] * a;
        }
      }
      worst = MAX(worst, fabs(y - c->y[n * OUT + o]));
    }
  return worst;
}

static void run_case(const char *name, int64_t r, double dropout, gboolean training,
                     gboolean train_base, const ps_kernels *k, ps_rng *rng) {
  printf("%s\n", name);
  lcase c;
  setup(&c, r, dropout, training, train_base, rng);
  loss(&c, k);
  double fe = forward_error(&c);
  PS_CHECK_MSG(fe < 1e-5, "%s: forward differs from the double reference by %g", name, fe);
  PS_CHECK_MSG(c.l.dropped == (r > 0 && dropout > 0 && training), "%s: dropout ran = %d", name,
               c.l.dropped);
  /* backward with dy = R */
  memset(c.dx, 0, sizeof c.dx);
  ps_linear_backward(&c.l, k, c.dx, c.rw, N);
  /* copies: the finite differences re-run forward (and would not touch grads, but be safe) */
  float dx[N * IN];
  memcpy(dx, c.dx, sizeof dx);
  check_fd(&c, k, c.x, dx, N * IN, "x");
  const char *leaves[] = {".weight", ".bias", ".lora_A.weight", ".lora_B.weight"};
  ps_tensor *vals[] = {c.l.weight, c.l.bias, c.l.lora_a, c.l.lora_b};
  for (int i = 0; i < 4; i++) {
    if (!vals[i]) continue;
    gboolean lora = i >= 2;
    float *g = i == 0 ? grad_of(&c, "proj.weight") : grad_of(&c, leaves[i]);
    if (!lora && !train_base) {
      PS_CHECK_MSG(g == NULL, "%s: frozen %s has a gradient buffer", name, leaves[i]);
      continue;
    }
    g_autofree float *gc = g_memdup2(g, vals[i]->nbytes);
    check_fd(&c, k, ps_f32(vals[i]), gc, ps_tensor_numel(vals[i]), leaves[i] + 1);
  }
  /* Backward adds: a second call doubles every gradient. */
  float *gb = r ? grad_of(&c, ".lora_B.weight") : grad_of(&c, "proj.weight");
  float before = gb[0];
  loss(&c, k);
  ps_linear_backward(&c.l, k, NULL, c.rw, N);
  PS_CHECK_NEAR(gb[0], 2.0 * before, 1e-5 * (1 + fabs(before)));
  teardown(&c);
}

static void test_names_and_fresh_adapter(const ps_kernels *k, ps_rng *rng) {
  lcase c;
  setup(&c, 0, 0, FALSE, TRUE, rng);
  GError *err = NULL;
  loss(&c, k);
  float base[N * OUT];
  memcpy(base, c.y, sizeof base);
  PS_CHECK_OK(ps_linear_add_lora(&c.l, R, ALPHA, 0.0, rng, &err), err);
  loss(&c, k);
  PS_CHECK(memcmp(base, c.y, sizeof base) == 0); /* B = 0: no change */
  double amax = 0;
  for (int i = 0; i < R * IN; i++) amax = MAX(amax, fabs(ps_f32(c.l.lora_a)[i]));
  /* kaiming_uniform(a = sqrt 5) on (r, in): U(-1/sqrt(in), 1/sqrt(in)) */
  PS_CHECK(amax > 0 && amax <= 1.0 / sqrt(IN));
  PS_CHECK_NEAR(c.l.scaling, ALPHA / R, 1e-7);
  PS_CHECK_FAILS_WITH(ps_linear_add_lora(&c.l, 0, ALPHA, 0.0, rng, &err), err, "rank");
  PS_CHECK_FAILS_WITH(ps_linear_add_lora(&c.l, 2, ALPHA, 1.0, rng, &err), err, "dropout");
  teardown(&c);

  setup(&c, R, 0.1, FALSE, FALSE, rng);
  const char *want[] = {"model.layers.0.self_attn.q_proj.weight",
                        "model.layers.0.self_attn.q_proj.bias",
                        "model.layers.0.self_attn.q_proj.lora_A.weight",
                        "model.layers.0.self_attn.q_proj.lora_B.weight"};
  const ps_role roles[] = {PS_ROLE_BACKBONE, PS_ROLE_BACKBONE, PS_ROLE_LORA, PS_ROLE_LORA};
  PS_CHECK(c.params->len == 4);
  for (guint i = 0; i < 4 && i < c.params->len; i++) {
    ps_param *p = &g_array_index(c.params, ps_param, i);
    PS_CHECK_MSG(strcmp(p->name, want[i]) == 0, "name %s", p->name);
    PS_CHECK(p->role == roles[i]);
  }
  teardown(&c);
}

/* Two backward calls after one forward (two losses on one output) must add
 * the same gradient twice, also with dropout and an input gradient. */
static void test_backward_twice(const ps_kernels *k, ps_rng *rng) {
  lcase c;
  setup(&c, R, 0.5, TRUE, TRUE, rng);
  loss(&c, k);
  float *ga = grad_of(&c, ".lora_A.weight");
  memset(c.dx, 0, sizeof c.dx);
  ps_linear_backward(&c.l, k, c.dx, c.rw, N);
  float a1[R * IN], x1[N * IN];
  memcpy(a1, ga, sizeof a1);
  memcpy(x1, c.dx, sizeof x1);
  ps_linear_backward(&c.l, k, c.dx, c.rw, N);
  double worst_a = 0, worst_x = 0;
  for (int i = 0; i < R * IN; i++) worst_a = MAX(worst_a, fabs(ga[i] - 2.0 * a1[i]));
  for (int i = 0; i < N * IN; i++) worst_x = MAX(worst_x, fabs(c.dx[i] - 2.0 * x1[i]));
  PS_CHECK_MSG(worst_a < 1e-5, "second backward changed dA by %g (dropout buffer reused?)",
               worst_a);
  PS_CHECK_MSG(worst_x < 1e-5, "second backward changed dx by %g", worst_x);
  teardown(&c);
}

/* Inverted dropout keeps about 1 - p of the entries. */
static void test_dropout_rate(const ps_kernels *k, ps_rng *rng) {
  lcase c;
  setup(&c, R, 0.3, TRUE, FALSE, rng);
  enum { BIG = 4000 };
  g_autofree float *x = g_new(float, BIG *IN);
  g_autofree float *y = g_new(float, BIG *OUT);
  fill(x, BIG * IN, rng, 1.0);
  GError *err = NULL;
  PS_CHECK_OK(ps_linear_forward(&c.l, k, c.ctx, y, x, BIG, &err), err);
  int64_t kept = 0;
  for (int64_t i = 0; i < BIG * IN; i++) kept += c.l.keep[i];
  double frac = (double)kept / (BIG * IN);
  /* binomial std sqrt(0.21 / 28000) ~ 0.0027 */
  PS_CHECK_MSG(fabs(frac - 0.7) < 0.015, "kept fraction %.4f", frac);
  teardown(&c);
}

int main(void) {
  GError *err = NULL;
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, &err);
  PS_CHECK_OK(k != NULL, err);
  if (!k) return ps_test_finish();
  ps_rng rng;
  ps_rng_seed(&rng, 42);
  run_case("plain linear (no LoRA), all trains", 0, 0.0, TRUE, TRUE, k, &rng);
  run_case("LoRA r=3, dropout 0, all trains", R, 0.0, TRUE, TRUE, k, &rng);
  run_case("LoRA r=3, dropout 0.5 in training, all trains", R, 0.5, TRUE, TRUE, k, &rng);
  run_case("LoRA r=3, dropout 0.5 in evaluation", R, 0.5, FALSE, TRUE, k, &rng);
  run_case("LoRA r=3, dropout 0.5, only LoRA trains", R, 0.5, TRUE, FALSE, k, &rng);
  run_case("LoRA r=3, dropout 0, only LoRA trains", R, 0.0, TRUE, FALSE, k, &rng);
  test_names_and_fresh_adapter(k, &rng);
  test_dropout_rate(k, &rng);
  test_backward_twice(k, &rng);
  return ps_test_finish();
}
