/* test_ssl_stage_device.c — stage.ssl_pretrain with `device: cuda` on the
 * CUDA emulator against the same run with `device: cpu`: three steps of MAE
 * plus Eq. 1 plus the variance guard with the real encoder.medsam,
 * ssl.mae_decoder and two RandStainNA views must log the same losses,
 * statistics and gradient norms and end with bitwise equal parameters in the
 * checkpoint. The emulator faults on any host access to device memory, so
 * this also shows that the stage reads what lives on the device (pred, the
 * feature map) only through the kernel table and tensor copies. */
#include <pathseg/host.h>
#include <pathseg/run.h>
#include <glib/gstdio.h>
#include <pathseg/safetensors.h>

#include "emu_device.h"
#include "ps_test.h"

static const char *pipeline_text =
    "name: ssl_device\n"
    "seed: 3\n"
    "device: %s\n"
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
    "    steps: 3\n"
    "    batch_size: 4\n"
    "    lr: 1.0e-3\n"
    "    schedule: constant\n"
    "    alpha: 20\n"
    "    variance_weight: 1\n";

/* Runs the pipeline on `device`; the run directory in *dir. */
static gboolean run(ps_registry *reg, const char *tmp, const char *device, char **dir,
                    GError **error) {
  g_autofree char *yaml = g_strdup_printf("%s/ssl_%s.yaml", tmp, device);
  g_autofree char *text = g_strdup_printf(pipeline_text, device);
  g_autofree char *run_dir = g_strdup_printf("run_dir=%s", tmp);
  if (!g_file_set_contents(yaml, text, -1, error)) return FALSE;
  const char *sets[] = {run_dir, "threads=1", NULL};
  g_autoptr(ps_pipeline) p = ps_pipeline_load(yaml, sets, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.quiet = TRUE};
  return ps_run_execute(p, reg, &opts, dir, error);
}

/* metrics.jsonl without its time stamps, one string per step. */
static GPtrArray *metric_lines(const char *dir) {
  GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
  g_autofree char *path = g_build_filename(dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return out;
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (size_t i = 0; lines[i]; i++) {
    const char *at = strstr(lines[i], "\"mae_loss\"");
    if (at) g_ptr_array_add(out, g_strdup(at));
  }
  return out;
}

static int finish(const char *tmp) {
  ps_test_rm_tree(tmp);
  return ps_test_finish();
}

int main(void) {
  ps_test_use_cuda_emulator();
  GError *error = NULL;
  g_autoptr(ps_registry) reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  g_autofree char *tmp = g_dir_make_tmp("ps-ssl-device-XXXXXX", NULL);
  g_autofree char *dir_cpu = NULL, *dir_dev = NULL;
  PS_CHECK_OK(run(reg, tmp, "cpu", &dir_cpu, &error), error);
  PS_CHECK_OK(run(reg, tmp, "cuda", &dir_dev, &error), error);
  if (!dir_cpu || !dir_dev) return finish(tmp);

  /* the same metrics, step by step (the file prints 9 significant digits) */
  g_autoptr(GPtrArray) mc = metric_lines(dir_cpu), md = metric_lines(dir_dev);
  PS_CHECK_MSG(mc->len == 3 && md->len == 3, "%u and %u metric lines", mc->len, md->len);
  for (guint i = 0; i < mc->len && i < md->len; i++) {
    const char *a = g_ptr_array_index(mc, i), *b = g_ptr_array_index(md, i);
    PS_CHECK_MSG(strcmp(a, b) == 0, "step %u:\n  cpu  %s\n  cuda %s", i + 1, a, b);
    PS_CHECK(strstr(a, "\"var_loss\"") && strstr(a, "\"stain_dist\""));
  }
  /* the same parameters after three optimizer steps, bit for bit */
  g_autofree char *pc = g_build_filename(dir_cpu, "checkpoints", "last.safetensors", NULL);
  g_autofree char *pd = g_build_filename(dir_dev, "checkpoints", "last.safetensors", NULL);
  g_autoptr(ps_safetensors) sc = ps_safetensors_open(pc, &error);
  PS_CHECK_OK(sc != NULL, error);
  g_autoptr(ps_safetensors) sd = ps_safetensors_open(pd, &error);
  PS_CHECK_OK(sd != NULL, error);
  if (!sc || !sd) return finish(tmp);
  const size_t n = ps_safetensors_count(sc);
  size_t same = 0, decoder = 0, encoder = 0;
  PS_CHECK(ps_safetensors_count(sd) == n);
  for (size_t i = 0; i < n; i++) {
    const char *name = ps_safetensors_name(sc, i);
    const ps_tensor *a = ps_safetensors_get(sc, name, NULL);
    const ps_tensor *b = ps_safetensors_get(sd, name, NULL);
    gboolean eq = a && b && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
    PS_CHECK_MSG(eq, "checkpoint tensor %s differs between cpu and cuda", name);
    same += eq;
    decoder += g_str_has_prefix(name, "mae_decoder/");
    encoder += g_str_has_prefix(name, "medsam/");
  }
  printf("%zu of %zu checkpoint tensors equal (%zu decoder, %zu encoder)\n", same, n, decoder,
         encoder);
  PS_CHECK(n > 0 && decoder > 0 && encoder > 0);
  return finish(tmp);
}
