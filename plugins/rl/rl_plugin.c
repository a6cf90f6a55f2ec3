/* rl_plugin.c — the rl plugin's descriptors: stage.so_grpo (SO-GRPO, paper
 * §3.4) and stage.grpo (the standard GRPO baseline of Table 5). Both run
 * rl_stage_run; see rl_stage.c for what a step does. */
#include <string.h>

#include "rl_stage.h"

static void *so_grpo_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  (void)ctx;
  return rl_config_create(cfg, FALSE, error);
}

static void *grpo_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  (void)ctx;
  return rl_config_create(cfg, TRUE, error);
}

static const ps_stage_iface rl_stage_iface = {sizeof(ps_stage_iface), rl_stage_run, PS_STAGE_DATA_PARALLEL};

static const void *rl_capability(const char *name) {
  return strcmp(name, "stage") == 0 ? &rl_stage_iface : NULL;
}

static const ps_port_desc no_ports[] = {{NULL}};

static const ps_component_vtable so_grpo_vtable = {
    sizeof(ps_component_vtable), so_grpo_create, rl_config_destroy, NULL, NULL, NULL,
};
static const ps_component_vtable grpo_vtable = {
    sizeof(ps_component_vtable), grpo_create, rl_config_destroy, NULL, NULL, NULL,
};

static const ps_component_desc so_grpo_desc = {
    sizeof(ps_component_desc), PS_KIND_STAGE, "stage.so_grpo",
    "SO-GRPO (paper §3.4, Eq. 3-4): groups of sampled reasoning chains where the policy emits <SEG> "
    "itself, masks from the <SEG> state, weighted rewards (soft Dice, sparsity, spatial, format, "
    "length), per-token GAE with a critic (or group advantages), clipped surrogate + k3 KL to the "
    "frozen SFT policy, the soft-Dice gradient back through decoder and SEG adapter, learning rate "
    "a0 / (1 + eta k).",
    rl_so_grpo_config, no_ports, no_ports, &so_grpo_vtable, rl_capability,
};

static const ps_component_desc grpo_desc = {
    sizeof(ps_component_desc), PS_KIND_STAGE, "stage.grpo",
    "Standard GRPO: group-normalised advantages (advantage.group), no critic, the rewards as "
    "scalars only, constant learning rate by default; otherwise as stage.so_grpo.",
    rl_grpo_config, no_ports, no_ports, &grpo_vtable, rl_capability,
};

static const ps_component_desc *const components[] = {&so_grpo_desc, &grpo_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "rl",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Reinforcement-learning stages: SO-GRPO and GRPO.",
    .components = components,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
