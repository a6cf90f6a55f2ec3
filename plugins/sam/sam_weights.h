/* sam_weights.h — loads SAM / MedSAM weights from a safetensors file under
 * either naming: the official segment-anything state dict (image_encoder.*,
 * prompt_encoder.*, mask_decoder.*; the names the parameters carry) or the
 * Hugging Face transformers SamModel names (vision_encoder.*, ...,
 * shared_image_embedding.*), detected from the file. */
#pragma once

#include <pathseg/safetensors.h>

#include "../common/param_list.h"

typedef enum { SAM_NAMES_OFFICIAL, SAM_NAMES_HF } sam_naming;

/* The transformers name of an official parameter name (convert_sam_to_hf.py:
 * KEYS_TO_MODIFY_MAPPING applied in order, then the hypernetwork-MLP rule).
 * Free with g_free. */
char *sam_hf_name(const char *official);

/* Loads every parameter of P from `st`. `prefixes` (NULL-terminated,
 * official spelling with the dot, e.g. "image_encoder.") are the parts of a
 * full SAM checkpoint this component owns: tensors under them (or their HF
 * spelling) that no parameter uses are reported as unexpected. Every
 * missing, unexpected, wrongly shaped or non-float tensor is named in one
 * error. Adapter parameters (role adapter) may be absent: a pretrained SAM
 * has none, and they keep their initialisation. `*naming` (may be NULL)
 * says which naming the file used. */
gboolean sam_params_load_safetensors(pl_params *P, ps_safetensors *st,
                                     const char *const *prefixes, const char *what,
                                     sam_naming *naming, GError **error);
/* The same from a path (memory-mapped; the pages read are released as it goes). */
gboolean sam_params_load_path(pl_params *P, const char *path, const char *const *prefixes,
                              const char *what, sam_naming *naming, GError **error);
