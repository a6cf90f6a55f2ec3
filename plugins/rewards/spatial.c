/* spatial.c — `reward.spatial`, R_spatial: the predicted mask should lie
 * where the words say. When the query names a location ("upper left",
 * "centre", ...), the reference point is that location; otherwise it is the
 * centroid of the ground truth. R = max(0, 1 - d / d_max) with d the distance
 * from the predicted mask's centroid to the reference point in unit
 * coordinates and d_max = sqrt(2)/2. No prediction: 0. */
#include <math.h>

#include "rewards.h"

static const ps_config_key config[] = {
    {"weight", PS_TYPE_FLOAT, "0.1", 0, 1e6, NULL, "lambda_spatial"},
    {NULL},
};

static void *create(const ps_config *cfg, ps_context *ctx, GError **error) {
  reward_base *s = g_new0(reward_base, 1);
  s->weight = ps_config_float(cfg, "weight");
  return s;
}

static double score(void *self, const ps_reward_sample *x, float *dlogits) {
  double px, py, rx, ry;
  if (x->n_seg == 0 || !x->logits || !ps_mask_centroid(x->logits, x->H, x->W, 0.0f, &px, &py)) return 0.0;
  if (!ps_location_point(x->query, &rx, &ry)) {
    g_autofree float *t = g_new(float, x->H * x->W);
    for (int64_t i = 0; i < x->H * x->W; i++) t[i] = x->target[i] > 0.5f ? 1.0f : -1.0f;
    if (!ps_mask_centroid(t, x->H, x->W, 0.0f, &rx, &ry)) return 0.0; /* nothing to find */
  }
  double d = hypot(px - rx, py - ry);
  return fmax(0.0, 1.0 - d / (sqrt(2.0) / 2.0));
}

static const ps_reward_iface iface = {sizeof(ps_reward_iface), ps_reward_weight, score};
static const void *capability(const char *name) { return g_strcmp0(name, "reward") == 0 ? &iface : NULL; }
static const ps_port_desc none[] = {{NULL}};
static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, g_free, NULL, NULL, NULL};
const ps_component_desc ps_reward_spatial_desc = {
    sizeof(ps_component_desc), PS_KIND_REWARD, "reward.spatial",
    "R_spatial: centroid of the predicted mask against the location named in the query.",
    config, none, none, &vtable, capability,
};
