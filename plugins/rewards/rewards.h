/* rewards.h — what the reward components share (internal): the component
 * boilerplate and the spatial vocabulary. */
#pragma once

#include <pathseg/reward.h>

/* Every reward component's self starts with its weight. */
typedef struct {
  double weight;
} reward_base;

double ps_reward_weight(void *self);

/* Finds the first location phrase of the 3x3 grid ("upper left", "centre",
 * "lower right", "top", "left", ...) in `text` (case-insensitive) and gives
 * its point in [0, 1]^2. FALSE when there is none. */
gboolean ps_location_point(const char *text, double *x, double *y);
/* TRUE when `text` contains a location or boundary word. `extra` is a
 * NULL-terminated list of more words (from the config), may be NULL. */
gboolean ps_has_spatial_word(const char *text, const char *const *extra);
/* Centroid of logits > 0 in [0, 1]^2; FALSE when nothing is predicted. */
gboolean ps_mask_centroid(const float *logits, int64_t H, int64_t W, float threshold, double *x, double *y);

extern const ps_component_desc ps_reward_soft_dice_desc, ps_reward_sparsity_desc,
    ps_reward_spatial_desc, ps_reward_format_desc, ps_reward_length_desc;
