/* heads_plugin.c — the heads plugin's one exported symbol: three small
 * trainable heads around the LLM: `projector` (Qwen2.5-VL patch merger into
 * the LLM width), `adapter.seg` (LISA's <SEG> hidden state to prompt MLP)
 * and `critic.value` (value head for GAE). */
#include "heads.h"

static const ps_component_desc *const components[] = {&hd_projector_desc, &hd_seg_adapter_desc,
                                                      &hd_value_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "heads",
    .version = "0.1.0",
    .license = "Apache-2.0",
    .description = "Small heads around the LLM: Qwen2.5-VL patch-merger projector, LISA SEG "
                   "adapter, value head.",
    .components = components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
