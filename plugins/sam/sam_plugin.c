/* sam_plugin.c — the SAM plugin's one exported symbol: encoder.medsam (SAM /
 * MedSAM ViT image encoder with AdaptFormer adapters) and decoder.sam (prompt
 * encoder + two-way mask decoder, with LISA's text prompt). */
#include "sam_plugin.h"

static const ps_component_desc *const components[] = {&sam_encoder_desc, &sam_decoder_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "sam",
    .version = "0.1.0",
    .license = "Apache-2.0",
    .description = "Segment Anything / MedSAM image encoder and mask decoder (with AdaptFormer "
                   "adapters and LISA's text-embedding prompt).",
    .components = components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) {
  return &plugin;
}
