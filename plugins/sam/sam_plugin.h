/* sam_plugin.h — the SAM plugin's component descriptors and the pieces the
 * component files share (config translation, the fixture capability). */
#pragma once

#include <pathseg/plugin.h>

#include "image_encoder.h"

extern const ps_component_desc sam_encoder_desc;
extern const ps_component_desc sam_decoder_desc;

/* Fills an encoder config from a validated component config (preset first). */
void sam_enc_cfg_from_config(sam_enc_cfg *c, const ps_config *cfg);

/* "fixture": runs sam.image_encoder and sam.mask_decoder (sam_fixture.c). */
const void *sam_capability(const char *name);
