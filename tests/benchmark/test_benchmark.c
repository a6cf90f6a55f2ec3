/* test_benchmark.c — building a small benchmark and reading it back:
 * manifest rows and files, masks that match the PNGs, splits grouped by
 * patient (no patient in two splits) plus a zero-shot split of held-out
 * items, chat-layout token ids with labels only on the answer and <SEG> at
 * seg_positions, a resumed build that rewrites nothing, and clear errors for
 * a corrupt tile or manifest. */
#include <glib/gstdio.h>
#include <pathseg/dataset.h>
#include <pathseg/host.h>
#include <pathseg/run.h>

#include "ps_test.h"

static ps_registry *reg;

static gboolean build(const char *dir, GError **error) {
  g_autofree char *yaml = ps_test_source_path("pipelines/build_benchmark.yaml");
  g_autofree char *out = g_strdup_printf("stages.build.out_dir=%s/bench", dir);
  g_autofree char *runs = g_strdup_printf("run_dir=%s/runs", dir);
  const char *sets[] = {out, runs, "stages.build.tiles=40", "stages.build.zeroshot_tiles=6",
                        "stages.build.patients=8", "stages.build.tile_size=64", NULL};
  g_autoptr(ps_pipeline) p = ps_pipeline_load(yaml, sets, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.quiet = TRUE};
  return ps_run_execute(p, reg, &opts, NULL, error);
}

static ps_component *dataset(const char *manifest, const char *extra, GError **error) {
  const ps_component_desc *d = ps_registry_find(reg, "dataset.benchmark");
  g_autofree char *yaml = g_strdup_printf("{manifest: \"%s\", image_tokens: 4, max_length: 320%s}", manifest, extra);
  g_autoptr(ps_config) cfg = d ? ps_config_parse(d->config, yaml, "test", error) : NULL;
  if (!cfg) return NULL;
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
  return ps_component_new(d, cfg, "bench", ctx, error);
}

int main(void) {
  GError *error = NULL;
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  g_autofree char *tmp = g_dir_make_tmp("ps-bench-XXXXXX", NULL);
  PS_CHECK_OK(build(tmp, &error), error);
  g_autofree char *manifest = g_build_filename(tmp, "bench", "manifest.jsonl", NULL);
  g_autofree char *text = NULL;
  PS_CHECK(g_file_get_contents(manifest, &text, NULL, NULL));
  if (!text) return ps_test_finish();
  g_auto(GStrv) lines = g_strsplit(g_strstrip(text), "\n", -1);
  PS_CHECK_MSG(g_strv_length(lines) == 46, "%u rows", g_strv_length(lines));

  /* Every row names a patient, and a patient appears in one split only. */
  g_autoptr(GHashTable) split_of = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  int zeroshot = 0, held_out_mismatch = 0, seg_rows = 0;
  for (size_t i = 0; lines[i]; i++) {
    char *p = strstr(lines[i], "\"patient\":\""), *s = strstr(lines[i], "\"split\":\"");
    PS_CHECK(p && s);
    if (!p || !s) continue;
    g_autofree char *patient = g_strndup(p + 11, strcspn(p + 11, "\""));
    g_autofree char *split = g_strndup(s + 9, strcspn(s + 9, "\""));
    const char *before = g_hash_table_lookup(split_of, patient);
    PS_CHECK_MSG(!before || strcmp(before, split) == 0, "patient %s in %s and %s", patient, before, split);
    g_hash_table_replace(split_of, g_strdup(patient), g_strdup(split));
    gboolean zs = strcmp(split, "zeroshot") == 0, held = strstr(lines[i], "\"held_out\":true") != NULL;
    zeroshot += zs;
    held_out_mismatch += zs != held;
    seg_rows += strstr(lines[i], "<SEG>") != NULL;
  }
  PS_CHECK(zeroshot == 6 && held_out_mismatch == 0);
  PS_CHECK(seg_rows == 46);

  /* Rebuilding keeps the tiles (nothing rewritten) and gives the same manifest. */
  g_autofree char *tile = g_build_filename(tmp, "bench", "images", "000003.png", NULL);
  GStatBuf before, after;
  PS_CHECK(g_stat(tile, &before) == 0);
  g_usleep(1100000);
  PS_CHECK_OK(build(tmp, &error), error);
  PS_CHECK(g_stat(tile, &after) == 0 && before.st_mtime == after.st_mtime);
  g_autofree char *text2 = NULL;
  g_file_get_contents(manifest, &text2, NULL, NULL);
  PS_CHECK(text2 && strcmp(g_strstrip(text2), text) == 0);

  /* The dataset: a tokenizer trained beside the manifest, batches in the chat layout. */
  g_autoptr(ps_component) ds = dataset(manifest, "", &error);
  PS_CHECK_OK(ds != NULL, error);
  if (!ds) return ps_test_finish();
  const ps_dataset_iface *iface = ps_component_capability(ds, "dataset");
  void *self = ps_component_self(ds);
  PS_CHECK(iface->size(self, "train") == 0); /* nothing is read before open() */
  PS_CHECK_OK(ps_dataset_open(iface, self, &error), error);
  int64_t n = iface->size(self, "train") + iface->size(self, "val") + iface->size(self, "test");
  PS_CHECK(n == 40 && iface->size(self, "zeroshot") == 6);
  g_autofree char *tok = g_build_filename(tmp, "bench", "tokenizer.json", NULL);
  PS_CHECK(g_file_test(tok, G_FILE_TEST_IS_REGULAR));
  int64_t idx[3] = {0, 1, 2};
  ps_rng rng;
  ps_rng_seed(&rng, 1);
  const ps_ports *b = iface->batch(self, "train", idx, 3, &rng, &error);
  PS_CHECK_OK(b != NULL, error);
  if (b) {
    const ps_tensor *img = ps_ports_get(b, "image"), *mask = ps_ports_get(b, "mask");
    const ps_tensor *ids = ps_ports_get(b, "input_ids"), *labels = ps_ports_get(b, "labels");
    const ps_tensor *seg = ps_ports_get(b, "seg_positions"), *lens = ps_ports_get(b, "lengths");
    const int64_t is[4] = {3, 3, 64, 64}, ms[4] = {3, 1, 64, 64}, ts[2] = {3, 320};
    PS_CHECK(img && ps_tensor_has_shape(img, 4, is) && mask && ps_tensor_has_shape(mask, 4, ms));
    PS_CHECK(ids && ids->dtype == PS_DTYPE_I32 && ps_tensor_has_shape(ids, 2, ts));
    for (int k = 0; k < 3 && ids && labels && seg && lens; k++) {
      const int32_t *row = (const int32_t *)ids->data + 320 * k, *lab = (const int32_t *)labels->data + 320 * k;
      int32_t s = ((const int32_t *)seg->data)[k], len = ((const int32_t *)lens->data)[k];
      PS_CHECK(s > 0 && s < len && len <= 320);
      /* Labels: -100 on the prompt and the padding, the ids themselves on the answer. */
      int first = -1;
      gboolean consistent = TRUE;
      for (int t = 0; t < 320; t++) {
        if (lab[t] != -100 && first < 0) first = t;
        if (lab[t] != -100 && lab[t] != row[t]) consistent = FALSE;
        if (t >= len && lab[t] != -100) consistent = FALSE;
      }
      PS_CHECK(consistent && first > 4 && first < s);
      /* <SEG> is labelled (the model must learn to emit it). */
      PS_CHECK(lab[s] == row[s]);
    }
    /* The mask is binary and not everywhere empty over the batch. */
    double sum = 0;
    gboolean binary = TRUE;
    for (int64_t i = 0; mask && i < ps_tensor_numel(mask); i++) {
      float v = ps_f32(mask)[i];
      binary = binary && (v == 0.0f || v == 1.0f);
      sum += v;
    }
    PS_CHECK(binary && sum > 0);
  }

  /* Captions for vlm_pretrain have no <SEG>. */
  g_autoptr(ps_component) cap = dataset(manifest, ", text: caption", &error);
  PS_CHECK_OK(cap != NULL, error);
  if (cap) {
    PS_CHECK_OK(ps_dataset_open(iface, ps_component_self(cap), &error), error);
    const ps_ports *cb = iface->batch(ps_component_self(cap), "train", idx, 3, &rng, &error);
    PS_CHECK(cb && ((const int32_t *)ps_ports_get(cb, "seg_positions")->data)[0] == -1);
  }

  /* A corrupt tile is an error naming the file; so is a broken manifest line. */
  g_file_set_contents(tile, "not a png", -1, NULL);
  g_autoptr(ps_component) broken = dataset(manifest, "", &error);
  PS_CHECK(broken != NULL && !ps_dataset_open(iface, ps_component_self(broken), &error));
  PS_CHECK_MSG(error && strstr(error->message, "000003.png"), "%s", error ? error->message : "no error");
  g_clear_error(&error);
  g_autofree char *bad_manifest = g_build_filename(tmp, "bench", "bad.jsonl", NULL);
  g_file_set_contents(bad_manifest, "{\"image\": \"x.png\"}\n", -1, NULL);
  g_autoptr(ps_component) bad = dataset(bad_manifest, "", &error);
  PS_CHECK(bad != NULL && !ps_dataset_open(iface, ps_component_self(bad), &error));
  PS_CHECK_MSG(error && strstr(error->message, "bad.jsonl:1") && strstr(error->message, "mask"), "%s",
               error ? error->message : "no error");
  g_clear_error(&error);

  ps_registry_free(reg);
  g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
  if (ps_test_failed_ == 0 && system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  return ps_test_finish();
}
