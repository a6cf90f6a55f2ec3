/* ruipath_plugin.c — the RuiPath plugin's one exported symbol: the
 * encoder.ruipath component (a DINOv2-style pathology ViT) and its
 * capabilities. */
#include <string.h>

#include "ruipath_plugin.h"

const void *rp_capability(const char *name) {
  if (strcmp(name, "fixture") == 0) return &rp_fixture;
  return NULL;
}

static const ps_component_desc *const components[] = {&rp_encoder_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "ruipath",
    .version = "0.1.0",
    .license = "Apache-2.0",
    .description = "RuiPath pathology image encoder: DINOv2-style ViT with registers, LayerScale, "
                   "position-embedding interpolation and LoRA on the attention.",
    .components = components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
