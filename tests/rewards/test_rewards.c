/* test_rewards.c — each SO-GRPO reward on hand-made samples with known
 * answers, and the soft-Dice gradient against central finite differences. */
#include <pathseg/host.h>
#include <pathseg/reward.h>

#include "ps_test.h"

static ps_registry *reg;
static ps_context *ctx;

typedef struct {
  ps_component *c;
  const ps_reward_iface *r;
} reward;

static reward make(const char *name, const char *yaml) {
  reward out = {0};
  GError *error = NULL;
  const ps_component_desc *d = ps_registry_find(reg, name);
  g_autoptr(ps_config) cfg = d ? ps_config_parse(d->config, yaml, name, &error) : NULL;
  out.c = cfg ? ps_component_new(d, cfg, name, ctx, &error) : NULL;
  out.r = out.c ? ps_component_capability(out.c, "reward") : NULL;
  if (error) fprintf(stderr, "%s: %s\n", name, error->message);
  g_clear_error(&error);
  return out;
}

static double score(reward r, const ps_reward_sample *s, float *d) {
  return r.r->score(ps_component_self(r.c), s, d);
}

/* A sample whose completion is `text`; <SEG> positions found in it. */
static ps_reward_sample sample(const char *query, const char *text, int64_t *seg_char, int64_t tokens) {
  ps_reward_sample s = {0};
  s.query = query;
  s.completion = text;
  s.n_tokens = tokens;
  for (const char *p = strstr(text, "<SEG>"); p; p = strstr(p + 1, "<SEG>")) seg_char[s.n_seg++] = p - text;
  s.seg_char = seg_char;
  s.seg_at = seg_char; /* token positions are not used by these rewards */
  s.finished = strstr(text, "<|im_end|>") != NULL;
  return s;
}

int main(void) {
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
  enum { H = 6, W = 6 };
  float logits[H * W], target[H * W], grad[H * W];
  ps_rng rng;
  ps_rng_seed(&rng, 3);
  for (int i = 0; i < H * W; i++) {
    logits[i] = (float)(2 * ps_rng_normal(&rng));
    target[i] = (i % W) < 3 && (i / W) < 3; /* the upper-left quarter */
  }
  int64_t at[8];

  /* Soft Dice: value against the formula, gradient against central differences. */
  reward dice = make("reward.soft_dice", "{eps: 1.0}");
  PS_CHECK(dice.r && dice.r->weight(ps_component_self(dice.c)) == 0.3);
  ps_reward_sample s = sample("Segment the glands.", "glands at left <SEG><|im_end|>", at, 10);
  s.logits = logits;
  s.target = target;
  s.H = H;
  s.W = W;
  double pt = 0, ps_ = 0, ts = 0;
  for (int i = 0; i < H * W; i++) {
    double p = 1 / (1 + exp(-logits[i]));
    pt += p * target[i];
    ps_ += p;
    ts += target[i];
  }
  memset(grad, 0, sizeof grad);
  PS_CHECK_NEAR(score(dice, &s, grad), (2 * pt + 1) / (ps_ + ts + 1), 1e-12);
  for (int i = 0; i < H * W; i++) {
    float saved = logits[i];
    logits[i] = saved + 1e-3f;
    double up = score(dice, &s, NULL);
    logits[i] = saved - 1e-3f;
    double down = score(dice, &s, NULL);
    logits[i] = saved;
    double numeric = (up - down) / (2e-3);
    PS_CHECK_NEAR(grad[i], numeric, 1e-5 + 1e-3 * fabs(numeric));
  }
  ps_reward_sample none = sample("Segment the glands.", "I cannot tell.<|im_end|>", at, 5);
  PS_CHECK(score(dice, &none, NULL) == 0.0);

  /* Sparsity: one <SEG> after a located state earns 1, unlocated 0.5, two halve it, too many earn 0. */
  reward sparse = make("reward.sparsity", "{max_seg: 2}");
  ps_reward_sample a = sample("q", "The glands lie in the upper left. <SEG><|im_end|>", at, 12);
  PS_CHECK_NEAR(score(sparse, &a, NULL), 1.0, 0);
  ps_reward_sample b = sample("q", "There are glands. <SEG><|im_end|>", at, 8);
  PS_CHECK_NEAR(score(sparse, &b, NULL), 0.5, 0);
  ps_reward_sample c = sample("q", "Along the boundary <SEG> and again <SEG><|im_end|>", at, 9);
  PS_CHECK_NEAR(score(sparse, &c, NULL), 0.5, 0);
  ps_reward_sample d = sample("q", "a <SEG> b <SEG> c <SEG><|im_end|>", at, 9);
  PS_CHECK(score(sparse, &d, NULL) == 0.0 && score(sparse, &none, NULL) == 0.0);
  /* The state is only the text BEFORE the first <SEG>. */
  ps_reward_sample e = sample("q", "Glands. <SEG> They are in the centre.<|im_end|>", at, 9);
  PS_CHECK_NEAR(score(sparse, &e, NULL), 0.5, 0);
  reward custom = make("reward.sparsity", "{vocabulary: [crypt]}");
  ps_reward_sample f = sample("q", "Each crypt is outlined. <SEG><|im_end|>", at, 9);
  PS_CHECK_NEAR(score(custom, &f, NULL), 1.0, 0);

  /* Spatial: a prediction in the upper left for a query naming the upper left. */
  reward spatial = make("reward.spatial", "{}");
  float upper_left[H * W], lower_right[H * W];
  for (int i = 0; i < H * W; i++) {
    upper_left[i] = (i % W) < 2 && (i / W) < 2 ? 5.0f : -5.0f;
    lower_right[i] = (i % W) >= 4 && (i / W) >= 4 ? 5.0f : -5.0f;
  }
  ps_reward_sample g = sample("Segment the nuclei in the upper left.", "x <SEG><|im_end|>", at, 3);
  g.target = target;
  g.H = H;
  g.W = W;
  g.logits = upper_left;
  double near = score(spatial, &g, NULL);
  g.logits = lower_right;
  double far = score(spatial, &g, NULL);
  /* upper_left's centroid is (1/6, 1/6), exactly the named point. */
  PS_CHECK_NEAR(near, 1.0, 1e-12);
  PS_CHECK(far == 0.0);
  /* Without a location word the reference is the ground truth's centroid (1/4, 1/4). */
  g.query = "Segment the nuclei.";
  g.logits = upper_left;
  PS_CHECK_NEAR(score(spatial, &g, NULL), 1.0 - hypot(1 / 6.0 - 0.25, 1 / 6.0 - 0.25) / (sqrt(2) / 2), 1e-9);

  /* Format: the four checks. */
  reward format = make("reward.format", "{min_words: 3, max_tail: 1}");
  ps_reward_sample good = sample("q", "three words here <SEG>.<|im_end|>", at, 6);
  PS_CHECK_NEAR(score(format, &good, NULL), 1.0, 0);
  ps_reward_sample early = sample("q", "two words <SEG> and a long tail after it<|im_end|>", at, 6);
  PS_CHECK_NEAR(score(format, &early, NULL), 0.5, 0);
  ps_reward_sample cut = sample("q", "three words here <SEG>", at, 6);
  PS_CHECK_NEAR(score(format, &cut, NULL), 0.75, 0);
  PS_CHECK_NEAR(score(format, &none, NULL), 0.25, 0);

  /* Length: free up to L0, then -ln(L - L0 + 1). */
  reward length = make("reward.length", "{free_tokens: 10, weight: 0.05}");
  ps_reward_sample l = sample("q", "x<|im_end|>", at, 10);
  PS_CHECK(score(length, &l, NULL) == 0.0);
  l.n_tokens = 9;
  PS_CHECK(score(length, &l, NULL) == 0.0);
  l.n_tokens = 30;
  PS_CHECK_NEAR(score(length, &l, NULL), -log(21.0), 1e-12);
  PS_CHECK(length.r->weight(ps_component_self(length.c)) == 0.05);

  reward all[] = {dice, sparse, custom, spatial, format, length};
  for (size_t i = 0; i < G_N_ELEMENTS(all); i++) ps_component_free(all[i].c);
  ps_context_free(ctx);
  ps_registry_free(reg);
  return ps_test_finish();
}
