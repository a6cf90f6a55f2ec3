/* sparsity.c — `reward.sparsity`, R_sparse (Eq. 3 as pathseg reads it):
 * a segmentation token should be emitted once, and at a spatially informed
 * state — after the reasoning has said where the target is or what bounds
 * it. With n = number of <SEG> tokens,
 *   R = 0                        if n = 0 or n > max_seg
 *   R = s(state_1) / n           otherwise,
 * where state_1 is the reasoning text before the first <SEG> and s is 1 when
 * it contains a location or boundary word (the built-in vocabulary plus
 * `vocabulary`), `uninformed` otherwise. */
#include <string.h>

#include "rewards.h"

typedef struct {
  reward_base base;
  int64_t max_seg;
  double uninformed;
  char **vocabulary;
} sparsity;

static const ps_config_key config[] = {
    {"weight", PS_TYPE_FLOAT, "0.2", 0, 1e6, NULL, "lambda_sparse"},
    {"max_seg", PS_TYPE_INT, "3", 1, 1000, NULL, "more <SEG> tokens than this earn nothing"},
    {"uninformed", PS_TYPE_FLOAT, "0.5", 0, 1, NULL, "reward share when the state names no location or boundary"},
    {"vocabulary", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL, "more location/boundary words"},
    {NULL},
};

static void destroy(void *self) {
  sparsity *s = self;
  g_strfreev(s->vocabulary);
  g_free(s);
}

static void *create(const ps_config *cfg, ps_context *ctx, GError **error) {
  sparsity *s = g_new0(sparsity, 1);
  s->base.weight = ps_config_float(cfg, "weight");
  s->max_seg = ps_config_int(cfg, "max_seg");
  s->uninformed = ps_config_float(cfg, "uninformed");
  size_t n = 0;
  const char *const *v = ps_config_string_list(cfg, "vocabulary", &n);
  s->vocabulary = g_new0(char *, n + 1);
  for (size_t i = 0; i < n; i++) s->vocabulary[i] = g_strdup(v[i]);
  return s;
}

static double score(void *self, const ps_reward_sample *x, float *dlogits) {
  sparsity *s = self;
  if (x->n_seg <= 0 || x->n_seg > s->max_seg) return 0.0;
  g_autofree char *state = g_strndup(x->completion, (gsize)x->seg_char[0]);
  double informed = ps_has_spatial_word(state, (const char *const *)s->vocabulary) ? 1.0 : s->uninformed;
  return informed / (double)x->n_seg;
}

static const ps_reward_iface iface = {sizeof(ps_reward_iface), ps_reward_weight, score};
static const void *capability(const char *name) { return g_strcmp0(name, "reward") == 0 ? &iface : NULL; }
static const ps_port_desc none[] = {{NULL}};
static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, destroy, NULL, NULL, NULL};
const ps_component_desc ps_reward_sparsity_desc = {
    sizeof(ps_component_desc), PS_KIND_REWARD, "reward.sparsity",
    "R_sparse: one <SEG>, emitted at a state that names a location or boundary.",
    config, none, none, &vtable, capability,
};
