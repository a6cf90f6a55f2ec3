/* test_sam_weights.c — encoder.medsam and decoder.sam load their weights
 * (`checkpoint:`) under the official segment-anything names and under the
 * Hugging Face SamModel names, detected from the file:
 *   - the fixtures' official weights are written as one full SAM file, then
 *     renamed here (rules written out independently of the plugin, after
 *     transformers' convert_sam_to_hf.py, with the Gaussian matrix stored
 *     only at the top level as save_pretrained's tie dedup leaves it) into a
 *     second file; both components load from both files, give the fixtures'
 *     outputs, and the two namings give bit-identical outputs;
 *   - a file with a missing, a wrongly shaped and an unexpected tensor fails
 *     with one error naming all three (under either naming);
 *   - sam_hf_name spot checks against literal transformers names. */
#include <glib/gstdio.h>
#include <pathseg/host.h>
#include <pathseg/safetensors.h>

#include "ps_test.h"
#include "sam_weights.h"

static ps_registry *reg;
static char *dir;

/* ---- the test's own official -> HF renaming ---------------------------------- */

static char *sub(char *s, const char *pattern, const char *repl) {
  g_autoptr(GRegex) re = g_regex_new(pattern, 0, 0, NULL);
  g_assert(re);
  char *r = g_regex_replace(re, s, -1, 0, repl, 0, NULL);
  g_free(s);
  return r;
}

static char *to_hf(const char *official) {
  char *s = g_strdup(official);
  s = sub(s, "^image_encoder\\.", "vision_encoder.");
  s = sub(s, "^(vision_encoder)\\.blocks\\.", "\\1.layers.");
  s = sub(s, "\\.norm([0-9])\\.", ".layer_norm\\1.");
  s = sub(s, "\\.norm_final_attn\\.", ".layer_norm_final_attn.");
  s = sub(s, "\\.patch_embed\\.proj\\.", ".patch_embed.projection.");
  s = sub(s, "\\.neck\\.0\\.", ".neck.conv1.");
  s = sub(s, "\\.neck\\.1\\.", ".neck.layer_norm1.");
  s = sub(s, "\\.neck\\.2\\.", ".neck.conv2.");
  s = sub(s, "\\.neck\\.3\\.", ".neck.layer_norm2.");
  s = sub(s, "\\.mask_downscaling\\.0\\.", ".mask_embed.conv1.");
  s = sub(s, "\\.mask_downscaling\\.1\\.", ".mask_embed.layer_norm1.");
  s = sub(s, "\\.mask_downscaling\\.3\\.", ".mask_embed.conv2.");
  s = sub(s, "\\.mask_downscaling\\.4\\.", ".mask_embed.layer_norm2.");
  s = sub(s, "\\.mask_downscaling\\.6\\.", ".mask_embed.conv3.");
  s = sub(s, "\\.point_embeddings\\.", ".point_embed.");
  s = sub(s, "\\.output_upscaling\\.0\\.", ".upscale_conv1.");
  s = sub(s, "\\.output_upscaling\\.1\\.", ".upscale_layer_norm.");
  s = sub(s, "\\.output_upscaling\\.3\\.", ".upscale_conv2.");
  s = sub(s, "(iou_prediction_head|output_hypernetworks_mlps\\.[0-9]+)\\.layers\\.0\\.", "\\1.proj_in.");
  s = sub(s, "(iou_prediction_head|output_hypernetworks_mlps\\.[0-9]+)\\.layers\\.1\\.", "\\1.layers.0.");
  s = sub(s, "(iou_prediction_head|output_hypernetworks_mlps\\.[0-9]+)\\.layers\\.2\\.", "\\1.proj_out.");
  s = sub(s, "^prompt_encoder\\.pe_layer\\.positional_encoding_gaussian_matrix$",
          "shared_image_embedding.positional_embedding");
  return s;
}

/* ---- checkpoint files ------------------------------------------------------------- */

typedef struct {
  gboolean hf;
  const char *skip;           /* official name left out */
  const char *reshape;        /* official name written with its two dims swapped / flattened */
  const char *extra;          /* official name of an extra tensor */
} ckpt_opts;

static gboolean is_weight(const char *n) {
  return g_str_has_prefix(n, "image_encoder.") || g_str_has_prefix(n, "prompt_encoder.") ||
         g_str_has_prefix(n, "mask_decoder.");
}

static void add_from(ps_safetensors_writer *w, const char *fx_path, const ckpt_opts *o) {
  GError *err = NULL;
  g_autoptr(ps_safetensors) st = ps_safetensors_open(fx_path, &err);
  PS_CHECK_OK(st != NULL, err);
  if (!st) return;
  for (size_t i = 0; i < ps_safetensors_count(st); i++) {
    const char *n = ps_safetensors_name(st, i);
    if (!is_weight(n) || (o->skip && strcmp(n, o->skip) == 0)) continue;
    const ps_tensor *t = ps_safetensors_get(st, n, &err);
    PS_CHECK_OK(t != NULL, err);
    if (!t) continue;
    g_autofree char *name = o->hf ? to_hf(n) : g_strdup(n);
    ps_tensor v = *t;
    if (o->reshape && strcmp(n, o->reshape) == 0) {
      v.ndim = 1;
      v.shape[0] = ps_tensor_numel(t);
    }
    PS_CHECK_OK(ps_safetensors_writer_add(w, name, &v, &err), err);
  }
}

static char *fixture(const char *name) {
  g_autofree char *rel = g_strdup_printf("tests/fixtures/%s.safetensors", name);
  return ps_test_source_path(rel);
}

/* A full SAM checkpoint (encoder + prompt encoder + mask decoder) from the fixtures. */
static char *write_ckpt(const char *file, const ckpt_opts *o) {
  g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
  g_autofree char *fe = fixture("sam_image_encoder");
  g_autofree char *fd = fixture("sam_mask_decoder");
  add_from(w, fe, o);
  add_from(w, fd, o);
  GError *err = NULL;
  if (o->extra) {
    g_autoptr(ps_tensor) x = ps_tensor_new4(PS_DTYPE_F32, 3, -1, -1, -1, NULL);
    g_autofree char *name = o->hf ? to_hf(o->extra) : g_strdup(o->extra);
    PS_CHECK_OK(ps_safetensors_writer_add(w, name, x, &err), err);
  }
  char *path = g_build_filename(dir, file, NULL);
  PS_CHECK_OK(ps_safetensors_writer_write(w, path, &err), err);
  return path;
}

/* ---- components ------------------------------------------------------------------ */

#define ENC_CFG                                                                                    \
  "{embed_dim: 32, depth: 4, num_heads: 2, img_size: 128, window_size: 3, "                        \
  "global_attn_indexes: [1, 3], out_chans: 16, medsam_input: false, checkpoint: '%s'}"
#define DEC_CFG                                                                                    \
  "{embed_dim: 32, image_embedding_size: 8, input_image_size: 128, mask_in_chans: 8, "             \
  "num_heads: 2, mlp_dim: 64, iou_head_hidden_dim: 32, checkpoint: '%s'}"

static void *create(const char *comp, const char *fmt, const char *path, GError **err) {
  const ps_component_desc *d = ps_registry_find(reg, comp);
  g_assert(d);
  g_autofree char *yaml = g_strdup_printf(fmt, path);
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "test", err);
  if (!cfg) return NULL;
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 7);
  return d->vtable->create(cfg, ctx, err);
}

/* Runs `comp` loaded from `path` on `input_port` = fixture input; returns a
 * copy of output `out_port`. */
static ps_tensor *run(const char *comp, const char *fmt, const char *path, const char *fx_name,
                      const char *const *ports, const char *const *fx_inputs, const char *out_port) {
  GError *err = NULL;
  const ps_component_desc *d = ps_registry_find(reg, comp);
  void *self = create(comp, fmt, path, &err);
  PS_CHECK_OK(self != NULL, err);
  if (!self) return NULL;
  g_autofree char *fxp = fixture(fx_name);
  g_autoptr(ps_safetensors) st = ps_safetensors_open(fxp, &err);
  PS_CHECK_OK(st != NULL, err);
  ps_tensor *ins[4] = {NULL};
  ps_port in_items[8], out_items[8];
  size_t ni = 0, no = 0;
  for (; d->inputs[ni].name; ni++) in_items[ni] = (ps_port){d->inputs[ni].name, NULL, FALSE};
  for (; d->outputs[no].name; no++) out_items[no] = (ps_port){d->outputs[no].name, NULL, FALSE};
  ps_ports in = {in_items, ni}, out = {out_items, no};
  for (int i = 0; ports[i]; i++) {
    ins[i] = ps_safetensors_get_f32(st, fx_inputs[i], &err);
    PS_CHECK_OK(ins[i] != NULL, err);
    ps_ports_find(&in, ports[i])->tensor = ins[i];
  }
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 7);
  ps_tensor *res = NULL;
  if (d->vtable->forward(self, ctx, &in, &out, &err)) {
    const ps_tensor *o = ps_ports_get(&out, out_port);
    res = o ? ps_tensor_copy(o, &err) : NULL;
    PS_CHECK(res != NULL);
  } else {
    PS_CHECK_OK(FALSE, err);
  }
  for (int i = 0; i < 4; i++) ps_tensor_free(ins[i]);
  d->vtable->destroy(self);
  return res;
}

static void check_close(const ps_tensor *got, const char *fx_name, const char *want_name) {
  GError *err = NULL;
  g_autofree char *fxp = fixture(fx_name);
  g_autoptr(ps_safetensors) st = ps_safetensors_open(fxp, &err);
  g_autoptr(ps_tensor) want = ps_safetensors_get_f32(st, want_name, &err);
  PS_CHECK_OK(want != NULL, err);
  if (!got || !want) return;
  PS_CHECK(ps_tensor_numel(got) == ps_tensor_numel(want));
  double worst = 0;
  const float *g = ps_f32(got), *w = ps_f32(want);
  for (int64_t i = 0; i < ps_tensor_numel(want); i++)
    worst = fmax(worst, fabs(g[i] - w[i]) / (1e-4 + 1e-3 * fabs(w[i])));
  PS_CHECK_MSG(worst <= 1.0, "%s: worst error / tolerance %.3g", want_name, worst);
}

static gboolean identical(const ps_tensor *a, const ps_tensor *b) {
  return a && b && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
}

static void test_both_namings(void) {
  ckpt_opts off = {0}, hf = {.hf = TRUE};
  g_autofree char *p_off = write_ckpt("sam_official.safetensors", &off);
  g_autofree char *p_hf = write_ckpt("sam_hf.safetensors", &hf);
  /* the HF file really is in HF names */
  GError *err = NULL;
  g_autoptr(ps_safetensors) st = ps_safetensors_open(p_hf, &err);
  PS_CHECK_OK(st != NULL, err);
  if (st) {
    PS_CHECK(ps_safetensors_has(st, "vision_encoder.layers.0.attn.qkv.weight"));
    PS_CHECK(ps_safetensors_has(st, "vision_encoder.neck.conv1.weight"));
    PS_CHECK(ps_safetensors_has(st, "shared_image_embedding.positional_embedding"));
    PS_CHECK(!ps_safetensors_has(st, "image_encoder.pos_embed"));
  }

  static const char *const enc_ports[] = {"image", NULL}, *const enc_in[] = {"input.image", NULL};
  g_autoptr(ps_tensor) e_off = run("encoder.medsam", ENC_CFG, p_off, "sam_image_encoder",
                                   enc_ports, enc_in, "embeddings");
  g_autoptr(ps_tensor) e_hf = run("encoder.medsam", ENC_CFG, p_hf, "sam_image_encoder", enc_ports,
                                  enc_in, "embeddings");
  check_close(e_off, "sam_image_encoder", "output.image_embeddings");
  PS_CHECK_MSG(identical(e_off, e_hf), "encoder outputs differ between the two namings");

  static const char *const dec_ports[] = {"image_embeddings", "text_embeds", NULL},
                           *const dec_in[] = {"input.image_embeddings", "input.text_embed", NULL};
  g_autoptr(ps_tensor) d_off = run("decoder.sam", DEC_CFG, p_off, "sam_mask_decoder", dec_ports,
                                   dec_in, "low_res_masks");
  g_autoptr(ps_tensor) d_hf = run("decoder.sam", DEC_CFG, p_hf, "sam_mask_decoder", dec_ports,
                                  dec_in, "low_res_masks");
  check_close(d_off, "sam_mask_decoder", "output.low_res_masks_text");
  PS_CHECK_MSG(identical(d_off, d_hf), "decoder outputs differ between the two namings");
  g_unlink(p_off);
  g_unlink(p_hf);
}

static void test_problems(gboolean hf) {
  ckpt_opts o = {.hf = hf,
                 .skip = "image_encoder.blocks.0.attn.proj.bias",
                 .reshape = "image_encoder.blocks.1.mlp.lin1.weight",
                 .extra = "image_encoder.blocks.2.attn.extra_scale"};
  g_autofree char *p = write_ckpt("sam_bad.safetensors", &o);
  GError *err = NULL;
  void *self = create("encoder.medsam", ENC_CFG, p, &err);
  PS_CHECK(self == NULL && err != NULL);
  if (self) ps_registry_find(reg, "encoder.medsam")->vtable->destroy(self);
  if (err) {
    g_autofree char *missing = hf ? to_hf(o.skip) : g_strdup(o.skip);
    g_autofree char *shape = hf ? to_hf(o.reshape) : g_strdup(o.reshape);
    g_autofree char *extra = hf ? to_hf(o.extra) : g_strdup(o.extra);
    g_autofree char *m1 = g_strdup_printf("missing: %s [32]", missing);
    g_autofree char *m2 = g_strdup_printf("wrong shape: %s is [4096] in the file, [128, 32]", shape);
    g_autofree char *m3 = g_strdup_printf("unexpected: %s [3]", extra);
    PS_CHECK_MSG(strstr(err->message, m1), "no '%s' in: %s", m1, err->message);
    PS_CHECK_MSG(strstr(err->message, m2), "no '%s' in: %s", m2, err->message);
    PS_CHECK_MSG(strstr(err->message, m3), "no '%s' in: %s", m3, err->message);
    PS_CHECK_MSG(strstr(err->message, "3 problems"), "%s", err->message);
    PS_CHECK(strstr(err->message, hf ? "Hugging Face names" : "official names") != NULL);
    g_clear_error(&err);
  }
  /* the decoder, loading from the same file, owns none of the three */
  void *dec = create("decoder.sam", DEC_CFG, p, &err);
  PS_CHECK_OK(dec != NULL, err);
  if (dec) ps_registry_find(reg, "decoder.sam")->vtable->destroy(dec);
  g_unlink(p);
}

static void test_hf_names(void) {
  static const char *const pairs[][2] = {
      {"image_encoder.blocks.0.attn.qkv.weight", "vision_encoder.layers.0.attn.qkv.weight"},
      {"image_encoder.blocks.11.norm2.bias", "vision_encoder.layers.11.layer_norm2.bias"},
      {"image_encoder.neck.0.weight", "vision_encoder.neck.conv1.weight"},
      {"image_encoder.neck.3.bias", "vision_encoder.neck.layer_norm2.bias"},
      {"image_encoder.patch_embed.proj.weight", "vision_encoder.patch_embed.projection.weight"},
      {"image_encoder.pos_embed", "vision_encoder.pos_embed"},
      {"image_encoder.blocks.2.attn.rel_pos_h", "vision_encoder.layers.2.attn.rel_pos_h"},
      {"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
       "prompt_encoder.shared_embedding.positional_embedding"},
      {"prompt_encoder.point_embeddings.3.weight", "prompt_encoder.point_embed.3.weight"},
      {"prompt_encoder.mask_downscaling.4.weight", "prompt_encoder.mask_embed.layer_norm2.weight"},
      {"prompt_encoder.no_mask_embed.weight", "prompt_encoder.no_mask_embed.weight"},
      {"mask_decoder.transformer.layers.1.norm4.weight",
       "mask_decoder.transformer.layers.1.layer_norm4.weight"},
      {"mask_decoder.transformer.norm_final_attn.bias",
       "mask_decoder.transformer.layer_norm_final_attn.bias"},
      {"mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight",
       "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"},
      {"mask_decoder.output_upscaling.1.weight", "mask_decoder.upscale_layer_norm.weight"},
      {"mask_decoder.output_hypernetworks_mlps.2.layers.0.weight",
       "mask_decoder.output_hypernetworks_mlps.2.proj_in.weight"},
      {"mask_decoder.output_hypernetworks_mlps.1.layers.1.bias",
       "mask_decoder.output_hypernetworks_mlps.1.layers.0.bias"},
      {"mask_decoder.output_hypernetworks_mlps.0.layers.2.bias",
       "mask_decoder.output_hypernetworks_mlps.0.proj_out.bias"},
      {"mask_decoder.iou_prediction_head.layers.1.weight",
       "mask_decoder.iou_prediction_head.layers.0.weight"},
      {"mask_decoder.iou_prediction_head.layers.2.weight",
       "mask_decoder.iou_prediction_head.proj_out.weight"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(pairs); i++) {
    g_autofree char *h = sam_hf_name(pairs[i][0]);
    PS_CHECK_MSG(strcmp(h, pairs[i][1]) == 0, "%s -> %s, want %s", pairs[i][0], h, pairs[i][1]);
  }
}

int main(void) {
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  GError *err = NULL;
  dir = g_dir_make_tmp("sam-weights-XXXXXX", &err);
  PS_CHECK_OK(dir != NULL, err);
  test_hf_names();
  test_both_namings();
  test_problems(FALSE);
  test_problems(TRUE);
  g_rmdir(dir);
  g_free(dir);
  ps_registry_free(reg);
  return ps_test_finish();
}
