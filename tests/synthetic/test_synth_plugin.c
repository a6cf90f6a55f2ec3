/* test_synth_plugin.c — dataset.synthetic as the host sees it: loaded from
 * the built plugin, created from YAML config, batches through the "dataset"
 * capability, descriptions through "synthetic_info"; splits, held-out items,
 * determinism and configuration errors. */
#include <string.h>

#include <pathseg/dataset.h>
#include <pathseg/host.h>

#include "ps_test.h"
#include "synth.h"

static const ps_component_desc *load(ps_registry *reg) {
  const char *dir = g_getenv("PATHSEG_PLUGIN_PATH");
  g_autofree char *path = g_build_filename(dir ? dir : "plugins", "pathseg-synthetic.so", NULL);
  GError *err = NULL;
  PS_CHECK_OK(ps_registry_load_file(reg, path, &err), err);
  return ps_registry_find(reg, "dataset.synthetic");
}

/* A component from YAML, or NULL with the error in *err (not counted). */
static ps_component *try_make(const ps_component_desc *d, ps_context *ctx, const char *yaml,
                              GError **err) {
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "test", err);
  if (!cfg) return NULL;
  return ps_component_new(d, cfg, "data", ctx, err);
}

static ps_component *make(const ps_component_desc *d, ps_context *ctx, const char *yaml) {
  GError *err = NULL;
  ps_component *c = try_make(d, ctx, yaml, &err);
  PS_CHECK_OK(c != NULL, err);
  return c;
}

typedef struct {
  const ps_dataset_iface *ds;
  const ps_synth_info_iface *info;
  void *self;
} handle;

static handle handle_of(ps_component *c) {
  handle h = {ps_component_capability(c, "dataset"), ps_component_capability(c, "synthetic_info"),
              ps_component_self(c)};
  PS_CHECK(h.ds != NULL && h.info != NULL);
  return h;
}

static const ps_ports *batch(handle h, const char *split, const int64_t *idx, size_t n) {
  GError *err = NULL;
  ps_rng rng;
  ps_rng_seed(&rng, 0);
  const ps_ports *b = h.ds->batch(h.self, split, idx, n, &rng, &err);
  PS_CHECK_OK(b != NULL, err);
  return b;
}

static void test_batch(const ps_component_desc *d, ps_context *ctx) {
  const char *yaml =
      "{tile_size: 64, train_size: 10, val_size: 4, test_size: 3, zeroshot_size: 6, seed: 9}";
  ps_component *c = make(d, ctx, yaml), *c2 = make(d, ctx, yaml);
  ps_component *other = make(d, ctx, "{tile_size: 64, train_size: 10, seed: 10}");
  if (!c || !c2 || !other) return;
  handle h = handle_of(c), h2 = handle_of(c2), ho = handle_of(other);
  PS_CHECK(h.ds->size(h.self, "train") == 10 && h.ds->size(h.self, "val") == 4 &&
           h.ds->size(h.self, "test") == 3 && h.ds->size(h.self, "zeroshot") == 6 &&
           h.ds->size(h.self, "nope") == 0);

  const int64_t idx[3] = {0, 7, 2};
  const ps_ports *b = batch(h, "train", idx, 3);
  if (!b) return;
  ps_tensor *image = ps_ports_get(b, "image"), *rgb = ps_ports_get(b, "image_rgb");
  ps_tensor *mask = ps_ports_get(b, "mask"), *labels = ps_ports_get(b, "labels"),
            *target = ps_ports_get(b, "target");
  const int64_t s_image[4] = {3, 3, 64, 64}, s_rgb[4] = {3, 64, 64, 3}, s_mask[4] = {3, 1, 64, 64},
                s_labels[3] = {3, 64, 64}, s_target[1] = {3};
  PS_CHECK(image && image->dtype == PS_DTYPE_F32 && ps_tensor_has_shape(image, 4, s_image));
  PS_CHECK(rgb && rgb->dtype == PS_DTYPE_U8 && ps_tensor_has_shape(rgb, 4, s_rgb));
  PS_CHECK(mask && mask->dtype == PS_DTYPE_F32 && ps_tensor_has_shape(mask, 4, s_mask));
  PS_CHECK(labels && labels->dtype == PS_DTYPE_U8 && ps_tensor_has_shape(labels, 3, s_labels));
  PS_CHECK(target && target->dtype == PS_DTYPE_I32 && ps_tensor_has_shape(target, 1, s_target));
  if (!image || !rgb || !mask || !labels || !target) return;

  /* Each example is exactly the generator's tile for (seed, split, index). */
  const size_t px = 64 * 64;
  static uint8_t want_rgb[64 * 64 * 3], want_mask[64 * 64], want_labels[64 * 64];
  size_t n_info;
  const ps_synth_info *infos = h.info->last_batch(h.self, &n_info);
  PS_CHECK(infos && n_info == 3);
  for (int r = 0; r < 3; r++) {
    ps_synth_spec spec = {64, 64, 0, 0, 0, 0, 0.2};
    spec.morphologies = ((1u << PS_SYNTH_MORPHOLOGY_COUNT) - 1) & ~ps_synth_held_out_morphologies();
    spec.stains = ((1u << PS_SYNTH_STAIN_COUNT) - 1) & ~ps_synth_held_out_stains();
    ps_synth_info want;
    GError *err = NULL;
    PS_CHECK_OK(ps_synth_tile(&spec, ps_synth_tile_seed(9, "train", idx[r]), NULL, want_rgb,
                              want_mask, want_labels, &want, &err),
                err);
    PS_CHECK(memcmp(want_rgb, (uint8_t *)rgb->data + r * px * 3, px * 3) == 0);
    PS_CHECK(memcmp(want_labels, (uint8_t *)labels->data + r * px, px) == 0);
    PS_CHECK(((int32_t *)target->data)[r] == (int32_t)want.target);
    size_t bad_mask = 0, bad_image = 0;
    for (size_t i = 0; i < px; i++) {
      bad_mask += ps_f32(mask)[r * px + i] != (float)want_mask[i];
      for (int ch = 0; ch < 3; ch++)
        bad_image +=
            fabsf(ps_f32(image)[(r * 3 + ch) * px + i] - want_rgb[i * 3 + ch] / 255.0f) > 1e-6f;
    }
    PS_CHECK_MSG(bad_mask == 0 && bad_image == 0,
                 "example %d: %zu mask and %zu image values differ", r, bad_mask, bad_image);
    if (infos) {
      PS_CHECK(infos[r].target == want.target && infos[r].morphology == want.morphology &&
               infos[r].stain == want.stain && infos[r].magnification == want.magnification &&
               infos[r].area_fraction == want.area_fraction &&
               infos[r].components == want.components);
      PS_CHECK(!infos[r].held_out_morphology && !infos[r].held_out_stain);
    }
    /* The info capability describes the same example on its own. */
    ps_synth_info desc;
    PS_CHECK_OK(h.info->describe(h.self, "train", idx[r], &desc, &err), err);
    PS_CHECK(desc.target == want.target && desc.morphology == want.morphology &&
             desc.centroid_x == want.centroid_x && desc.nuclei == want.nuclei);
  }
  g_autofree uint8_t *first = g_memdup2(rgb->data, rgb->nbytes);

  /* Example 7 alone, in another instance with the same config: the same bytes. */
  const int64_t seven = 7;
  const ps_ports *b2 = batch(h2, "train", &seven, 1);
  if (b2) PS_CHECK(memcmp(ps_ports_get(b2, "image_rgb")->data, first + px * 3, px * 3) == 0);
  /* Another seed: other tiles. */
  const ps_ports *b3 = batch(ho, "train", &seven, 1);
  if (b3) PS_CHECK(memcmp(ps_ports_get(b3, "image_rgb")->data, first + px * 3, px * 3) != 0);
  /* The same index of another split: another tile. */
  const int64_t zero = 0;
  const ps_ports *b4 = batch(h2, "val", &zero, 1);
  if (b4) PS_CHECK(memcmp(ps_ports_get(b4, "image_rgb")->data, first, px * 3) != 0);

  /* Zero-shot: every tile shows a held-out morphology or stain; train/val/test none. */
  int64_t all[6] = {0, 1, 2, 3, 4, 5};
  const ps_ports *z = batch(h, "zeroshot", all, 6);
  infos = z ? h.info->last_batch(h.self, &n_info) : NULL;
  for (size_t r = 0; infos && r < n_info; r++)
    PS_CHECK_MSG(infos[r].held_out_morphology || infos[r].held_out_stain, "zeroshot %zu: %s / %s",
                 r, infos[r].morphology_name, infos[r].stain_name);
  const char *splits[3] = {"train", "val", "test"};
  for (int s = 0; s < 3; s++) {
    const ps_ports *t = batch(h, splits[s], all, 3);
    infos = t ? h.info->last_batch(h.self, &n_info) : NULL;
    for (size_t r = 0; infos && r < n_info; r++)
      PS_CHECK(!infos[r].held_out_morphology && !infos[r].held_out_stain);
  }

  /* Out of range and unknown splits are errors that say so. */
  GError *err = NULL;
  ps_rng rng;
  ps_rng_seed(&rng, 1);
  const int64_t ten = 10;
  PS_CHECK_FAILS_WITH(h.ds->batch(h.self, "train", &ten, 1, &rng, &err) != NULL, err,
                      "outside split 'train'");
  PS_CHECK_FAILS_WITH(h.ds->batch(h.self, "nope", &zero, 1, &rng, &err) != NULL, err,
                      "unknown split 'nope'");
  ps_synth_info desc;
  PS_CHECK_FAILS_WITH(h.info->describe(h.self, "test", 3, &desc, &err), err,
                      "outside split 'test'");
  ps_component_free(c);
  ps_component_free(c2);
  ps_component_free(other);
}

static void test_config(const ps_component_desc *d, ps_context *ctx) {
  /* held_out: false serves everything in every split and no zeroshot split. */
  ps_component *c = make(d, ctx,
                         "{tile_size: 64, train_size: 40, held_out: false, "
                         "morphologies: [cribriform, signet_ring], stain_styles: [ihc_dab]}");
  if (c) {
    handle h = handle_of(c);
    PS_CHECK(h.ds->size(h.self, "zeroshot") == 0);
    int64_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    size_t n;
    const ps_synth_info *infos = batch(h, "train", idx, 8) ? h.info->last_batch(h.self, &n) : NULL;
    for (size_t r = 0; infos && r < n; r++)
      PS_CHECK(infos[r].held_out_morphology && infos[r].stain == PS_SYNTH_S_IHC_DAB);
    ps_component_free(c);
  }
  /* Targets, magnifications and size from the config. */
  c = make(d, ctx, "{tile_size: 96, train_size: 8, targets: [nuclei], magnifications: [40]}");
  if (c) {
    handle h = handle_of(c);
    int64_t idx[4] = {0, 1, 2, 3};
    size_t n;
    const ps_ports *b = batch(h, "train", idx, 4);
    const ps_synth_info *infos = b ? h.info->last_batch(h.self, &n) : NULL;
    for (size_t r = 0; infos && r < n; r++) {
      PS_CHECK(infos[r].target == PS_SYNTH_T_NUCLEI && infos[r].magnification == 40);
      PS_CHECK(((int32_t *)ps_ports_get(b, "target")->data)[r] == PS_SYNTH_T_NUCLEI);
    }
    if (b) PS_CHECK(ps_ports_get(b, "image")->shape[3] == 96);
    ps_component_free(c);
  }
  /* Bad configs: clear errors naming the key. */
  GError *err = NULL;
  PS_CHECK_FAILS_WITH(try_make(d, ctx, "{tile_size: 63}", &err) != NULL, err, "tile_size");
  PS_CHECK_FAILS_WITH(try_make(d, ctx, "{tile_size: 513}", &err) != NULL, err, "out of range");
  PS_CHECK_FAILS_WITH(try_make(d, ctx, "{targets: [gland, banana]}", &err) != NULL, err,
                      "targets: unknown name 'banana'");
  PS_CHECK_FAILS_WITH(try_make(d, ctx, "{stain_styles: [he_purple]}", &err) != NULL, err,
                      "stain_styles");
  PS_CHECK_FAILS_WITH(try_make(d, ctx, "{magnifications: [20, 7]}", &err) != NULL, err,
                      "7 is not one of 5, 10, 20, 40");
  PS_CHECK_FAILS_WITH(try_make(d, ctx, "{stain_styles: [ihc_dab]}", &err) != NULL, err, "held out");
  PS_CHECK_FAILS_WITH(try_make(d, ctx, "{artefact_probability: 2}", &err) != NULL, err,
                      "artefact_probability");
}

int main(void) {
  g_autoptr(ps_registry) reg = ps_registry_new();
  const ps_component_desc *d = load(reg);
  PS_CHECK(d != NULL && d->kind == PS_KIND_DATASET);
  if (!d) return ps_test_finish();
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 2, 1);
  test_batch(d, ctx);
  test_config(d, ctx);
  return ps_test_finish();
}
