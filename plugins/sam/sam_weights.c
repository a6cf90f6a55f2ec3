/* sam_weights.c — SAM / MedSAM weights from safetensors under the official
 * segment-anything names or the Hugging Face transformers SamModel names
 * (see sam_weights.h).
 *
 * The HF names are what transformers' models/sam/convert_sam_to_hf.py makes
 * of the official state dict: its KEYS_TO_MODIFY_MAPPING substitutions
 * applied in order (each replacing every occurrence, as Python's
 * str.replace), then the hypernetwork-MLP rule (layers.0/1/2 -> proj_in /
 * layers.0 / proj_out), and the prompt encoder's Gaussian matrix also
 * stored at the top level as shared_image_embedding.positional_embedding.
 * save_pretrained keeps only one of two tied tensors, so either of the two
 * HF spellings of that matrix is accepted.
 *
 * Values are converted straight into the parameters with
 * ps_safetensors_read_f32, which releases the file pages it has read: a
 * load peaks near the size of the weights, not twice it. */
#include "sam_weights.h"

#include <stdlib.h>

#include <pathseg/error.h>

/* convert_sam_to_hf.py KEYS_TO_MODIFY_MAPPING, in its order. */
static const char *const hf_map[][2] = {
    {"iou_prediction_head.layers.0", "iou_prediction_head.proj_in"},
    {"iou_prediction_head.layers.1", "iou_prediction_head.layers.0"},
    {"iou_prediction_head.layers.2", "iou_prediction_head.proj_out"},
    {"mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"},
    {"mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"},
    {"mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"},
    {"mask_downscaling.0", "mask_embed.conv1"},
    {"mask_downscaling.1", "mask_embed.layer_norm1"},
    {"mask_downscaling.3", "mask_embed.conv2"},
    {"mask_downscaling.4", "mask_embed.layer_norm2"},
    {"mask_downscaling.6", "mask_embed.conv3"},
    {"point_embeddings", "point_embed"},
    {"pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"},
    {"image_encoder", "vision_encoder"},
    {"neck.0", "neck.conv1"},
    {"neck.1", "neck.layer_norm1"},
    {"neck.2", "neck.conv2"},
    {"neck.3", "neck.layer_norm2"},
    {"patch_embed.proj", "patch_embed.projection"},
    {".norm", ".layer_norm"},
    {"blocks", "layers"},
};

#define PE_OFFICIAL "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
#define PE_HF_TOP "shared_image_embedding.positional_embedding"

static void replace_all(GString *s, const char *from, const char *to) {
  if (!strstr(s->str, from)) return;
  g_autoptr(GString) out = g_string_sized_new(s->len + 16);
  const char *p = s->str, *hit;
  size_t fl = strlen(from);
  while ((hit = strstr(p, from))) {
    g_string_append_len(out, p, hit - p);
    g_string_append(out, to);
    p = hit + fl;
  }
  g_string_append(out, p);
  g_string_assign(s, out->str);
}

char *sam_hf_name(const char *official) {
  GString *s = g_string_new(official);
  for (size_t i = 0; i < G_N_ELEMENTS(hf_map); i++) replace_all(s, hf_map[i][0], hf_map[i][1]);
  /* r".*.output_hypernetworks_mlps.(\d+).layers.(\d+).*" (re.match: from the start) */
  static GRegex *re = NULL;
  if (g_once_init_enter(&re)) {
    GRegex *r = g_regex_new("^.*.output_hypernetworks_mlps.(\\d+).layers.(\\d+).*", 0, 0, NULL);
    g_once_init_leave(&re, r);
  }
  g_autoptr(GMatchInfo) mi = NULL;
  if (g_regex_match(re, s->str, 0, &mi)) {
    g_autofree char *nb = g_match_info_fetch(mi, 2);
    int layer = atoi(nb);
    if (layer == 0) replace_all(s, "layers.0", "proj_in");
    else if (layer == 1) replace_all(s, "layers.1", "layers.0");
    else if (layer == 2) replace_all(s, "layers.2", "proj_out");
  }
  return g_string_free(s, FALSE);
}

/* The file names that may hold parameter `official` under `naming`, best first. */
static int candidates(const char *official, const char *hf, sam_naming naming, const char *c[2]) {
  if (naming == SAM_NAMES_OFFICIAL) {
    c[0] = official;
    return 1;
  }
  c[0] = hf;
  if (strcmp(official, PE_OFFICIAL) == 0) {
    c[1] = PE_HF_TOP;
    return 2;
  }
  return 1;
}

static gboolean is_float(ps_dtype d) {
  return d == PS_DTYPE_F32 || d == PS_DTYPE_F16 || d == PS_DTYPE_BF16 || d == PS_DTYPE_F64;
}

gboolean sam_params_load_safetensors(pl_params *P, ps_safetensors *st,
                                     const char *const *prefixes, const char *what,
                                     sam_naming *naming_out, GError **error) {
  const guint n = P->items->len;
  g_autoptr(GPtrArray) hf = g_ptr_array_new_full(n, g_free);
  /* Which naming: count the parameters whose two names differ and that the
   * file has under each (a full SAM checkpoint has all of them one way). */
  int hits_off = 0, hits_hf = 0;
  for (guint i = 0; i < n; i++) {
    const char *name = pl_param(P, (int)i)->name;
    char *h = sam_hf_name(name);
    g_ptr_array_add(hf, h);
    if (strcmp(h, name) == 0) continue;
    hits_off += ps_safetensors_has(st, name);
    const char *c[2];
    int nc = candidates(name, h, SAM_NAMES_HF, c);
    for (int k = 0; k < nc; k++)
      if (ps_safetensors_has(st, c[k])) {
        hits_hf++;
        break;
      }
  }
  const sam_naming naming = hits_hf > hits_off ? SAM_NAMES_HF : SAM_NAMES_OFFICIAL;
  if (naming_out) *naming_out = naming;

  g_autoptr(GString) problems = g_string_new(NULL);
  g_autoptr(GHashTable) used = g_hash_table_new(g_str_hash, g_str_equal);
  size_t n_problems = 0;
  char a[96], b[96];
  for (guint i = 0; i < n; i++) {
    ps_param *p = pl_param(P, (int)i);
    const char *c[2];
    int nc = candidates(p->name, g_ptr_array_index(hf, i), naming, c);
    const char *found = NULL;
    for (int k = 0; k < nc; k++)
      if (ps_safetensors_has(st, c[k])) {
        g_hash_table_add(used, (gpointer)c[k]);
        if (!found) found = c[k];
      }
    if (!found) {
      if (p->role == PS_ROLE_ADAPTER) continue; /* a pretrained SAM has no adapters */
      g_string_append_printf(problems, "\n  missing: %s %s", c[0],
                             ps_shape_format(p->value, a, sizeof a));
      n_problems++;
      continue;
    }
    const ps_tensor *t = ps_safetensors_get(st, found, error);
    if (!t) return FALSE;
    if (t->ndim != p->value->ndim ||
        memcmp(t->shape, p->value->shape, sizeof(int64_t) * (size_t)t->ndim) != 0) {
      g_string_append_printf(problems, "\n  wrong shape: %s is %s in the file, %s in the model",
                             found, ps_shape_format(t, a, sizeof a),
                             ps_shape_format(p->value, b, sizeof b));
      n_problems++;
      continue;
    }
    if (!is_float(t->dtype)) {
      g_string_append_printf(problems, "\n  wrong dtype: %s is %s in the file, a float in the model",
                             found, ps_dtype_name(t->dtype));
      n_problems++;
      continue;
    }
    if (n_problems == 0 && !ps_safetensors_read_f32(st, found, p->value, error)) return FALSE;
  }
  /* Tensors of this component's parts that nothing used. */
  g_autoptr(GPtrArray) own = g_ptr_array_new_with_free_func(g_free);
  for (size_t k = 0; prefixes && prefixes[k]; k++) {
    g_ptr_array_add(own, naming == SAM_NAMES_HF ? sam_hf_name(prefixes[k]) : g_strdup(prefixes[k]));
    if (naming == SAM_NAMES_HF && strcmp(prefixes[k], "prompt_encoder.") == 0)
      g_ptr_array_add(own, g_strdup("shared_image_embedding."));
  }
  for (size_t k = 0; k < ps_safetensors_count(st); k++) {
    const char *name = ps_safetensors_name(st, k);
    gboolean mine = FALSE;
    for (guint j = 0; j < own->len && !mine; j++)
      mine = g_str_has_prefix(name, g_ptr_array_index(own, j));
    if (!mine || g_hash_table_contains(used, name)) continue;
    const ps_tensor *t = ps_safetensors_get(st, name, error);
    if (!t) return FALSE;
    g_string_append_printf(problems, "\n  unexpected: %s %s", name, ps_shape_format(t, a, sizeof a));
    n_problems++;
  }
  if (n_problems) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "%s: %zu problem%s loading %s weights (%s names):%s", ps_safetensors_path(st),
                n_problems, n_problems == 1 ? "" : "s", what,
                naming == SAM_NAMES_HF ? "Hugging Face" : "official", problems->str);
    return FALSE;
  }
  return TRUE;
}

gboolean sam_params_load_path(pl_params *P, const char *path, const char *const *prefixes,
                              const char *what, sam_naming *naming, GError **error) {
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, error);
  if (!st) return FALSE;
  return sam_params_load_safetensors(P, st, prefixes, what, naming, error);
}
