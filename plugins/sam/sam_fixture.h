/* sam_fixture.h — helpers of the SAM plugin's fixture runners
 * (sam_fixture.c: the encoder; mask_decoder_fixture.c: the decoder). */
#pragma once

#include <json-glib/json-glib.h>

#include "../common/param_list.h"

JsonObject *sam_fx_config(ps_fixture *fx, JsonParser *parser, GError **error);
/* A number (or bool as 0/1) from the config; `fallback` when absent. */
double sam_fx_num(JsonObject *o, const char *key, double fallback);
gboolean sam_fx_load(ps_fixture *fx, pl_params *P, GError **error);
gboolean sam_fx_check_outputs(ps_fixture *fx, const char *const *known, GError **error);
gboolean sam_fx_put(ps_fixture *fx, const char *name, const ps_tensor *t, GError **error);

gboolean sam_decoder_run_fixture(ps_fixture *fx, ps_context *ctx, GError **error);
