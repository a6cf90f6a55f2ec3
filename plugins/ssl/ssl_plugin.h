/* ssl_plugin.h — what the files of the ssl plugin share: its component
 * descriptors and the fixture capability of ssl.mae. */
#pragma once

#include <pathseg/plugin.h>

#include "mae_vit.h"

extern const ps_component_desc ssl_mae_desc;         /* ssl.mae (mae_component.c) */
extern const ps_component_desc ssl_mae_decoder_desc; /* ssl.mae_decoder (mae_decoder_comp.c) */
extern const ps_component_desc ssl_stage_desc;       /* stage.ssl_pretrain (ssl_stage.c) */

extern const ps_fixture_iface ssl_mae_fixture_iface; /* mae.loss (mae_fixture.c) */

/* Runs the `mae.loss` fixture: builds a MaskedAutoencoderViT from the JSON
 * config, loads the parameters by their official names, runs it on
 * input.imgs with input.noise and puts loss, pred, mask and ids_restore.
 * When `model_out` is non-NULL the model is handed to the caller (tests
 * inspect trace values) instead of being freed. */
gboolean ssl_mae_fixture_run(ps_fixture *fx, ps_context *ctx, mae_model **model_out,
                             GError **error);
