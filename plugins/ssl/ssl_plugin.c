/* ssl_plugin.c — the `ssl` plugin: self-supervised pre-training (paper
 * section 3.2). Components: ssl.mae (the official MaskedAutoencoderViT, and
 * the mae.loss fixture), ssl.mae_decoder (MAE's light decoder over another
 * encoder's feature map) and stage.ssl_pretrain (MAE + the stain-invariant
 * self-distillation term of Eq. 1). */
#include "ssl_plugin.h"

static const ps_component_desc *const ssl_components[] = {
    &ssl_mae_desc,
    &ssl_mae_decoder_desc,
    &ssl_stage_desc,
    NULL,
};

static const ps_plugin_desc ssl_plugin = {
    PS_PLUGIN_HEADER,
    .name = "ssl",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Self-supervised pre-training: MAE and the stain-invariant term of Eq. 1",
    .components = ssl_components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) {
  return &ssl_plugin;
}
