/* fake_components.h — fake component descriptors and a lookup callback for
 * the pipeline loader tests. */
#pragma once

#include <pathseg/plugin.h>

extern const ps_component_desc fake_encoder;   /* encoder.fake: image (+mask) -> embeddings, tokens */
extern const ps_component_desc fake_decoder;   /* decoder.fake: emb (+prompt) -> mask, logits; hidden required */
extern const ps_component_desc fake_augment;   /* augment.stain: image -> image */
extern const ps_component_desc fake_badschema; /* encoder.badschema: a default that is not YAML */
extern const ps_component_desc fake_stage;     /* stage.fake */

/* ps_component_lookup over the fakes; `user` may point at an int call counter. */
const ps_component_desc *fake_lookup(const char *name, void *user);
