/* plugin.c — the reward plugin: one component per reward term of SO-GRPO. */
#include "rewards.h"

static const ps_component_desc *const components[] = {
    &ps_reward_soft_dice_desc, &ps_reward_sparsity_desc, &ps_reward_spatial_desc,
    &ps_reward_format_desc,    &ps_reward_length_desc,   NULL,
};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "rewards",
    .version = "0.1.0",
    .license = "MIT",
    .description = "SO-GRPO reward terms: soft Dice, sparsity, spatial, format, length.",
    .components = components,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
