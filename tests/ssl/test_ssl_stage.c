/* test_ssl_stage.c — stage.ssl_pretrain end to end on a few synthetic H&E
 * tiles (dataset.synthetic) with the real encoder.medsam (SAM ViT at a tiny
 * size), ssl.mae_decoder and two augmenter.randstainna views:
 *   - the MAE loss falls;
 *   - alpha 0 (monitor on) and alpha > 0 start from the same state (equal
 *     first-step MAE loss and stain distance), alpha 0 logs stain_loss 0 and
 *     total = mae_loss, alpha > 0 logs stain_loss = alpha * stain_dist, and
 *     training with the term brings the two views' features closer than
 *     training without it;
 *   - the variance guard keeps alpha > 0 from collapsing the encoder: with
 *     it the tokens' per-channel standard deviation ends well above where
 *     the same run without it ends, and total = mae + stain + var;
 *   - the checkpoint holds the decoder's and the encoder's parameters;
 *   - a stop and --resume continue bit-exactly;
 *   - ssl.mae (the plain MAE ViT) pre-trains under stage.fit;
 *   - wiring mistakes fail with messages that say what to fix. */
#include <pathseg/host.h>
#include <pathseg/run.h>
#include <pathseg/safetensors.h>

#include "ps_test.h"

static ps_registry *reg;

static const char *pipeline_text =
    "name: ssl_test\n"
    "seed: 3\n"
    "device: cpu\n"
    "components:\n"
    "  tiles:\n"
    "    plugin: dataset.synthetic\n"
    "    with: {tile_size: 64, train_size: 8, val_size: 0, test_size: 0, zeroshot_size: 0,\n"
    "           seed: 5, artefact_probability: 0.0}\n"
    "  stain_a:\n"
    "    plugin: augmenter.randstainna\n"
    "    with: {seed: 9, stream: 0}\n"
    "    inputs: {image: data.image_rgb}\n"
    "  stain_b:\n"
    "    plugin: augmenter.randstainna\n"
    "    with: {seed: 9, stream: 1}\n"
    "    inputs: {image: data.image_rgb}\n"
    "  medsam:\n"
    "    plugin: encoder.medsam\n"
    "    with: {preset: tiny, img_size: 64, patch_size: 16, embed_dim: 32, depth: 2,\n"
    "           num_heads: 2, window_size: 2, global_attn_indexes: [1], out_chans: 16}\n"
    "    inputs: {image: data.image}\n"
    "  mae_decoder:\n"
    "    plugin: ssl.mae_decoder\n"
    "    with: {in_dim: 16, embed_dim: 32, depth: 1, num_heads: 2, patch_size: 16}\n"
    "    inputs: {features: medsam.embeddings, mask: data.mae_mask}\n"
    "stages:\n"
    "  ssl:\n"
    "    plugin: stage.ssl_pretrain\n"
    "    dataset: tiles\n"
    "    encoder: medsam\n"
    "    decoder: mae_decoder\n"
    "    views: [stain_a, stain_b]\n"
    "    steps: 30\n"
    "    batch_size: 4\n"
    "    lr: 1.0e-3\n"
    "    schedule: constant\n"
    "    weight_decay: 0.0\n";

static gboolean run_file(const char *path, const char *run_dir, const char *const *extra_sets,
                         const char *resume, char **dir_out, GError **error) {
  g_autoptr(GPtrArray) sets = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(sets, g_strdup_printf("run_dir=%s", run_dir));
  g_ptr_array_add(sets, g_strdup("threads=1"));
  for (size_t i = 0; extra_sets && extra_sets[i]; i++)
    g_ptr_array_add(sets, g_strdup(extra_sets[i]));
  g_ptr_array_add(sets, NULL);
  g_autoptr(ps_pipeline) p =
      ps_pipeline_load(path, (const char *const *)sets->pdata, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.resume_dir = resume, .quiet = TRUE};
  return ps_run_execute(p, reg, &opts, dir_out, error);
}

/* Values of `key` in metrics.jsonl, in order. */
static GArray *metric(const char *dir, const char *key) {
  GArray *values = g_array_new(FALSE, FALSE, sizeof(double));
  if (!dir) return values;
  g_autofree char *path = g_build_filename(dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return values;
  g_autofree char *needle = g_strdup_printf("\"%s\": ", key);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (size_t i = 0; lines[i]; i++) {
    const char *at = strstr(lines[i], needle);
    if (!at) continue;
    double v = g_ascii_strtod(at + strlen(needle), NULL);
    g_array_append_val(values, v);
  }
  return values;
}

static double mean_range(GArray *a, guint from, guint to) {
  double s = 0;
  for (guint i = from; i < to && i < a->len; i++) s += g_array_index(a, double, i);
  return s / (double)(to - from);
}

static ps_tensor *checkpoint_tensor(const char *dir, const char *name, char **step) {
  if (!dir) return NULL;
  g_autofree char *path = g_build_filename(dir, "checkpoints", "last.safetensors", NULL);
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, NULL);
  if (!st) return NULL;
  if (step) *step = g_strdup(ps_safetensors_metadata(st, "step"));
  return ps_safetensors_get_f32(st, name, NULL);
}

int main(int argc, char **argv) {
  GError *error = NULL;
  reg = ps_registry_new();
  const char *extra[] = {argc > 1 ? argv[1] : NULL, NULL};
  ps_registry_scan(reg, extra, NULL);
  g_autofree char *tmp = g_dir_make_tmp("ps-ssl-XXXXXX", NULL);
  g_autofree char *yaml = g_build_filename(tmp, "ssl.yaml", NULL);
  g_file_set_contents(yaml, pipeline_text, -1, NULL);
  const guint N = 30;

  /* A: MAE only, the stain distance monitored. */
  const char *a_sets[] = {"stages.ssl.alpha=0", "stages.ssl.monitor_stain=true", NULL};
  g_autofree char *dir_a = NULL;
  PS_CHECK_OK(run_file(yaml, tmp, a_sets, NULL, &dir_a, &error), error);
  /* B: with the stain-invariant term. */
  const char *b_sets[] = {"stages.ssl.alpha=20", NULL};
  g_autofree char *dir_b = NULL;
  PS_CHECK_OK(run_file(yaml, tmp, b_sets, NULL, &dir_b, &error), error);

  g_autoptr(GArray) mae_a = metric(dir_a, "mae_loss");
  g_autoptr(GArray) mae_b = metric(dir_b, "mae_loss");
  g_autoptr(GArray) st_a = metric(dir_a, "stain_loss");
  g_autoptr(GArray) st_b = metric(dir_b, "stain_loss");
  g_autoptr(GArray) di_a = metric(dir_a, "stain_dist");
  g_autoptr(GArray) di_b = metric(dir_b, "stain_dist");
  g_autoptr(GArray) tot_a = metric(dir_a, "total");
  g_autoptr(GArray) tot_b = metric(dir_b, "total");
  g_autoptr(GArray) lr_a = metric(dir_a, "lr");
  g_autoptr(GArray) gn_a = metric(dir_a, "grad_norm");
  PS_CHECK_MSG(mae_a->len == N && mae_b->len == N && di_a->len == N && di_b->len == N &&
                   tot_a->len == N && tot_b->len == N && lr_a->len == N && gn_a->len == N,
               "metric lines: %u %u %u %u", mae_a->len, mae_b->len, di_a->len, di_b->len);
  if (mae_a->len == N && mae_b->len == N && di_a->len == N && di_b->len == N && st_a->len == N &&
      st_b->len == N) {
    double first_a = mean_range(mae_a, 0, 5), last_a = mean_range(mae_a, N - 5, N);
    double first_b = mean_range(mae_b, 0, 5), last_b = mean_range(mae_b, N - 5, N);
    printf("mae_loss  A %.4f -> %.4f   B %.4f -> %.4f\n", first_a, last_a, first_b, last_b);
    PS_CHECK_MSG(last_a < 0.9 * first_a, "MAE loss did not fall (alpha 0): %g -> %g", first_a,
                 last_a);
    PS_CHECK_MSG(last_b < 0.9 * first_b, "MAE loss did not fall (alpha 20): %g -> %g", first_b,
                 last_b);
    /* Same start: same weights, batches, masks and views. */
    PS_CHECK_NEAR(g_array_index(mae_a, double, 0), g_array_index(mae_b, double, 0), 1e-9);
    PS_CHECK_NEAR(g_array_index(di_a, double, 0), g_array_index(di_b, double, 0), 1e-12);
    PS_CHECK(g_array_index(di_a, double, 0) > 0);
    gboolean a_off = TRUE, b_scaled = TRUE;
    for (guint i = 0; i < N; i++) {
      a_off = a_off && g_array_index(st_a, double, i) == 0.0 &&
              g_array_index(tot_a, double, i) == g_array_index(mae_a, double, i);
      double want = 20.0 * g_array_index(di_b, double, i);
      b_scaled = b_scaled &&
                 fabs(g_array_index(st_b, double, i) - want) <= 1e-7 * fabs(want) + 1e-15 &&
                 fabs(g_array_index(tot_b, double, i) - g_array_index(mae_b, double, i) -
                      g_array_index(st_b, double, i)) <= 1e-7 * g_array_index(tot_b, double, i);
    }
    PS_CHECK_MSG(a_off, "alpha 0: stain_loss must be 0 and total = mae_loss");
    PS_CHECK_MSG(b_scaled, "alpha 20: stain_loss must be 20 * stain_dist and total = mae + stain");
    double end_a = mean_range(di_a, N - 5, N), end_b = mean_range(di_b, N - 5, N);
    printf("stain_dist  A (alpha 0) %.4g -> %.4g   B (alpha 20) %.4g -> %.4g\n",
           mean_range(di_a, 0, 5), end_a, mean_range(di_b, 0, 5), end_b);
    PS_CHECK_MSG(end_b < 0.5 * end_a, "the stain term did not pull the views together: %g vs %g",
                 end_b, end_a);
  }

  /* The variance guard. G0 logs token_std with a negligible weight, G1 has the guard. */
  const char *g0_sets[] = {"stages.ssl.alpha=20", "stages.ssl.variance_weight=1e-12", NULL};
  const char *g1_sets[] = {"stages.ssl.alpha=20", "stages.ssl.variance_weight=1", NULL};
  g_autofree char *dir_g0 = NULL, *dir_g1 = NULL;
  PS_CHECK_OK(run_file(yaml, tmp, g0_sets, NULL, &dir_g0, &error), error);
  PS_CHECK_OK(run_file(yaml, tmp, g1_sets, NULL, &dir_g1, &error), error);
  g_autoptr(GArray) sd0 = metric(dir_g0, "token_std");
  g_autoptr(GArray) sd1 = metric(dir_g1, "token_std");
  g_autoptr(GArray) var1 = metric(dir_g1, "var_loss");
  g_autoptr(GArray) mae1 = metric(dir_g1, "mae_loss");
  g_autoptr(GArray) st1 = metric(dir_g1, "stain_loss");
  g_autoptr(GArray) tot1 = metric(dir_g1, "total");
  PS_CHECK_MSG(sd0->len == N && sd1->len == N && var1->len == N && tot1->len == N,
               "guard metric lines: %u %u %u", sd0->len, sd1->len, var1->len);
  if (sd0->len == N && sd1->len == N && var1->len == N && tot1->len == N && mae1->len == N &&
      st1->len == N) {
    PS_CHECK_NEAR(g_array_index(sd0, double, 0), g_array_index(sd1, double, 0), 1e-9);
    PS_CHECK(g_array_index(var1, double, 0) > 0);
    gboolean sums = TRUE;
    for (guint i = 0; i < N; i++)
      sums = sums && fabs(g_array_index(tot1, double, i) - g_array_index(mae1, double, i) -
                          g_array_index(st1, double, i) - g_array_index(var1, double, i)) <=
                         1e-7 * g_array_index(tot1, double, i);
    PS_CHECK_MSG(sums, "with the guard: total = mae_loss + stain_loss + var_loss");
    double end0 = mean_range(sd0, N - 5, N), end1 = mean_range(sd1, N - 5, N);
    printf("token_std  without guard %.4g -> %.4g   with %.4g -> %.4g\n",
           g_array_index(sd0, double, 0), end0, g_array_index(sd1, double, 0), end1);
    PS_CHECK_MSG(end1 > 1.5 * end0, "the variance guard did not hold the tokens apart: %g vs %g",
                 end1, end0);
    PS_CHECK_MSG(mean_range(var1, N - 5, N) < 0.8 * mean_range(var1, 0, 5),
                 "var_loss did not fall");
  }

  /* The checkpoint holds both trained components. */
  g_autoptr(ps_tensor) dw = checkpoint_tensor(dir_a, "mae_decoder/decoder_pred.weight", NULL);
  g_autoptr(ps_tensor) ew =
      checkpoint_tensor(dir_a, "medsam/image_encoder.patch_embed.proj.weight", NULL);
  PS_CHECK_MSG(dw && dw->shape[0] == 16 * 16 * 3, "decoder weights in the checkpoint");
  PS_CHECK_MSG(ew != NULL, "encoder weights in the checkpoint");

  /* C: stop after 7 steps of 12, resume, compare with 12 straight steps.
   * MAE only: the augmenters' random streams are not part of a checkpoint,
   * so with the stain term a resumed run draws other views. */
  const char *c_sets[] = {"stages.ssl.steps=12", "stages.ssl.alpha=0", NULL};
  const char *c_stop[] = {"stages.ssl.steps=12", "stages.ssl.alpha=0",
                          "stages.ssl.stop_after_steps=7", NULL};
  g_autofree char *dir_c = NULL, *dir_d = NULL;
  PS_CHECK_OK(run_file(yaml, tmp, c_sets, NULL, &dir_c, &error), error);
  PS_CHECK_FAILS_WITH(run_file(yaml, tmp, c_stop, NULL, &dir_d, &error), error, "--resume");
  PS_CHECK_OK(dir_d && run_file(yaml, tmp, c_sets, dir_d, NULL, &error), error);
  g_autoptr(ps_tensor) wc = checkpoint_tensor(dir_c, "mae_decoder/decoder_embed.weight", NULL);
  g_autoptr(ps_tensor) wd = checkpoint_tensor(dir_d, "mae_decoder/decoder_embed.weight", NULL);
  g_autoptr(ps_tensor) ec =
      checkpoint_tensor(dir_c, "medsam/image_encoder.blocks.0.attn.qkv.weight", NULL);
  g_autoptr(ps_tensor) ed =
      checkpoint_tensor(dir_d, "medsam/image_encoder.blocks.0.attn.qkv.weight", NULL);
  PS_CHECK_MSG(wc && wd && wc->nbytes == wd->nbytes && memcmp(wc->data, wd->data, wc->nbytes) == 0,
               "decoder after stop + resume differs from a straight run");
  PS_CHECK_MSG(ec && ed && ec->nbytes == ed->nbytes && memcmp(ec->data, ed->data, ec->nbytes) == 0,
               "encoder after stop + resume differs from a straight run");

  /* D: the official MAE model as a graph component under stage.fit. */
  g_autofree char *fit_yaml = g_build_filename(tmp, "mae_fit.yaml", NULL);
  g_file_set_contents(fit_yaml,
                      "name: mae_fit\n"
                      "seed: 2\n"
                      "components:\n"
                      "  tiles:\n"
                      "    plugin: dataset.synthetic\n"
                      "    with: {tile_size: 64, train_size: 8, val_size: 0, test_size: 0,\n"
                      "           zeroshot_size: 0, artefact_probability: 0.0}\n"
                      "  mae:\n"
                      "    plugin: ssl.mae\n"
                      "    with: {preset: tiny, img_size: 64, patch_size: 16, embed_dim: 32}\n"
                      "    inputs: {image: data.image}\n"
                      "stages:\n"
                      "  fit: {plugin: stage.fit, dataset: tiles, loss: mae.loss, steps: 30,\n"
                      "        batch_size: 4, lr: 1.0e-3, schedule: constant, eval_batches: 0}\n",
                      -1, NULL);
  g_autofree char *dir_f = NULL;
  PS_CHECK_OK(run_file(fit_yaml, tmp, NULL, NULL, &dir_f, &error), error);
  g_autoptr(GArray) fl = metric(dir_f, "loss");
  PS_CHECK_MSG(fl->len == 30, "%u stage.fit loss lines", fl->len);
  if (fl->len == 30) {
    double first = mean_range(fl, 0, 5), last = mean_range(fl, 25, 30);
    printf("ssl.mae under stage.fit: %.4f -> %.4f\n", first, last);
    PS_CHECK_MSG(last < 0.9 * first, "ssl.mae loss did not fall: %g -> %g", first, last);
  }

  /* Wiring mistakes. */
  const char *no_views[] = {"stages.ssl.views=[]", "stages.ssl.steps=1", NULL};
  PS_CHECK_FAILS_WITH(run_file(yaml, tmp, no_views, NULL, NULL, &error), error, "no views");
  const char *bad_mask[] = {"components.mae_decoder.inputs.mask=data.image", "stages.ssl.steps=1",
                            NULL};
  PS_CHECK_FAILS_WITH(run_file(yaml, tmp, bad_mask, NULL, NULL, &error), error, "field of its own");
  const char *bad_patch[] = {"components.mae_decoder.with.patch_size=8", "stages.ssl.steps=1",
                             "stages.ssl.alpha=0", NULL};
  PS_CHECK_FAILS_WITH(run_file(yaml, tmp, bad_patch, NULL, NULL, &error), error, "patch");

  ps_registry_free(reg);
  if (ps_test_failed_ == 0) ps_test_rm_tree(tmp); /* kept for a look when a check failed */
  return ps_test_finish();
}
