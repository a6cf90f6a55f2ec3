/* test_rl_sample.c — the RL rollout sampler (plugins/rl/rl_sample.c) with a
 * mock KV-cached LLM whose next-token logits depend only on the row's own
 * prompt and tokens: row i of a group, seeded by rl_sample_seed(seed, step,
 * p, i), must come out the same whether it is sampled with its group, alone
 * (as a rank holding one row of the group would sample it) or in another
 * position; rows with different seeds differ; rows that stop early do not
 * shift the others' draws; the seed hash separates every argument. */
#include <string.h>

#include "ps_test.h"
#include "rl_stage.h"

enum { V = 12, EOS = 2, SEG = 5, PAD = 0, IMG = 11 };

typedef struct {
  int64_t B;
  uint64_t state[64]; /* per row: a hash of the row's prompt and tokens */
  float logits[64 * V];
} mock_llm;

static uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* logits of row b from its state alone; EOS made likely enough that rows
 * stop at different lengths */
static void fill(mock_llm *m, int64_t b) {
  for (int v = 0; v < V; v++) {
    uint64_t h = mix(m->state[b] ^ (uint64_t)(v + 1) * 0x100000001b3ULL);
    m->logits[b * V + v] = (float)((double)(h >> 11) / 9007199254740992.0 * 4.0 - 2.0);
  }
  m->logits[b * V + EOS] -= 1.0f;
}

static gboolean mock_prefill(void *self, ps_context *ctx, const ps_llm_prompt *p, int64_t max_new,
                             GError **error) {
  mock_llm *m = self;
  m->B = p->B;
  for (int64_t b = 0; b < p->B; b++) {
    m->state[b] = 17;
    for (int64_t t = 0; t < p->T; t++) m->state[b] = mix(m->state[b] ^ (uint64_t)p->input_ids[b * p->T + t]);
    fill(m, b);
  }
  return TRUE;
}

static gboolean mock_step(void *self, ps_context *ctx, const int32_t *tokens, GError **error) {
  mock_llm *m = self;
  for (int64_t b = 0; b < m->B; b++) {
    m->state[b] = mix(m->state[b] ^ (uint64_t)(tokens[b] + 1000));
    fill(m, b);
  }
  return TRUE;
}

static const float *mock_logits(void *self) { return ((mock_llm *)self)->logits; }

static const ps_llm_generate_iface mock_iface = {
    .struct_size = sizeof(ps_llm_generate_iface), .prefill = mock_prefill, .step = mock_step,
    .logits = mock_logits};

int main(void) {
  GError *error = NULL;
  mock_llm m = {0};
  float probs[V];
  int32_t order[V];
  rl_sampler s = {.gen = &mock_iface, .llm = &m, .ctx = NULL, .V = V, .probs = probs, .order = order};
  rl_config c = {.group_size = 6, .max_new = 24, .max_seg = 1, .temperature = 1.0, .top_p = 0.95,
                 .seg_mode = RL_SEG_AUTO};
  rl_tokens tk = {.seg = SEG, .eos = EOS, .pad = PAD, .image = IMG};
  const int32_t prompt[5] = {3, 7, 4, 9, 1};
  enum { G = 6, Tc = 24 };
  const uint64_t base = 0x5eed;
  uint64_t seeds[G];
  for (int i = 0; i < G; i++) seeds[i] = rl_sample_seed(base, 3, 1, i);

  int32_t tok[G * Tc], tok1[Tc], tok_rev[G * Tc];
  float lp[G * Tc], lp1[Tc], lp_rev[G * Tc];
  int64_t n[G], n1, n_rev[G];
  PS_CHECK_OK(rl_sample_group(&s, &c, &tk, prompt, 5, NULL, 0, 0, seeds, G, c.temperature, Tc, tok, lp, n,
                              &error), error);

  /* each row alone, as a rank that holds only that row samples it */
  for (int i = 0; i < G; i++) {
    PS_CHECK_OK(rl_sample_group(&s, &c, &tk, prompt, 5, NULL, 0, 0, &seeds[i], 1, c.temperature, Tc, tok1, lp1,
                                &n1, &error), error);
    PS_CHECK_MSG(n1 == n[i] && memcmp(tok1, tok + i * Tc, sizeof tok1) == 0 &&
                     memcmp(lp1, lp + i * Tc, sizeof lp1) == 0,
                 "row %d sampled alone differs from the same row in its group", i);
  }

  /* the group in reverse order: the same rows, reversed */
  uint64_t rev[G];
  for (int i = 0; i < G; i++) rev[i] = seeds[G - 1 - i];
  PS_CHECK_OK(rl_sample_group(&s, &c, &tk, prompt, 5, NULL, 0, 0, rev, G, c.temperature, Tc, tok_rev, lp_rev,
                              n_rev, &error), error);
  for (int i = 0; i < G; i++)
    PS_CHECK_MSG(n_rev[i] == n[G - 1 - i] && memcmp(tok_rev + i * Tc, tok + (G - 1 - i) * Tc, sizeof tok1) == 0,
                 "row %d depends on its position in the group", G - 1 - i);

  /* the test means something: rows differ, some stop early (EOS) at
   * different lengths, and <SEG> appears at most max_seg times */
  int distinct = 0, stopped = 0, min_n = Tc, max_n = 0;
  for (int i = 0; i < G; i++) {
    distinct += i > 0 && memcmp(tok + i * Tc, tok, sizeof tok1) != 0;
    stopped += n[i] < Tc && tok[i * Tc + n[i] - 1] == EOS;
    min_n = MIN(min_n, (int)n[i]);
    max_n = MAX(max_n, (int)n[i]);
    int segs = 0;
    for (int t = 0; t < n[i]; t++) {
      segs += tok[i * Tc + t] == SEG;
      PS_CHECK(tok[i * Tc + t] != IMG);
    }
    PS_CHECK(segs <= 1);
  }
  PS_CHECK_MSG(distinct >= G - 2, "only %d of %d rows differ from row 0", distinct, G - 1);
  PS_CHECK_MSG(stopped >= 1 && min_n < max_n, "rows did not stop at different lengths (%d..%d)", min_n, max_n);

  /* another step or prompt gives other samples */
  uint64_t other = rl_sample_seed(base, 4, 1, 0);
  PS_CHECK_OK(rl_sample_group(&s, &c, &tk, prompt, 5, NULL, 0, 0, &other, 1, c.temperature, Tc, tok1, lp1, &n1,
                              &error), error);
  PS_CHECK(memcmp(tok1, tok, sizeof tok1) != 0 || n1 != n[0]);

  /* the seed hash: deterministic, and distinct over a grid of (step, prompt, row) */
  PS_CHECK(rl_sample_seed(base, 3, 1, 2) == seeds[2]);
  GHashTable *seen = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
  int collisions = 0;
  for (int st = 0; st < 16; st++)
    for (int p = 0; p < 16; p++)
      for (int i = 0; i < 16; i++) {
        gint64 *k = g_new(gint64, 1);
        *k = (gint64)rl_sample_seed(base, st, p, i);
        if (g_hash_table_contains(seen, k)) {
          collisions++;
          g_free(k);
        } else
          g_hash_table_add(seen, k);
      }
  g_hash_table_destroy(seen);
  PS_CHECK_MSG(collisions == 0, "%d seed collisions over 16^3 (step, prompt, row)", collisions);
  /* the stage seed matters */
  PS_CHECK(rl_sample_seed(base + 1, 3, 1, 2) != seeds[2]);
  return ps_test_finish();
}
