/* test_synth_generator.c — the synthetic tile generator (plugins/synthetic/
 * synth.h) called directly: determinism, exact masks, presence of every
 * target, colour statistics of the stain styles, magnification scaling,
 * held-out flags, sizes, descriptors and spec errors.
 *
 * The reference facts (which labels make up a target, which items are held
 * out) are written out here by name, independently of synth_names.c, so a
 * wrong table there fails. */
#include <string.h>

#include "ps_test.h"
#include "synth.h"

#define N_MAX (512 * 512)

static uint8_t rgb[N_MAX * 3], rgb2[N_MAX * 3], mask[N_MAX], mask2[N_MAX], labels[N_MAX],
    labels2[N_MAX];

static ps_synth_spec spec_of(int size) {
  ps_synth_spec s = {size, size, 0, 0, 0, 0, 0.2};
  return s;
}

static gboolean tile(const ps_synth_spec *spec, uint64_t seed, ps_synth_scratch *scratch,
                     ps_synth_info *info) {
  GError *err = NULL;
  gboolean ok = ps_synth_tile(spec, seed, scratch, rgb, mask, labels, info, &err);
  PS_CHECK_OK(ok, err);
  return ok;
}

/* ---------------------------------------------------------------------- */

static void test_determinism(ps_synth_scratch *scratch) {
  ps_synth_spec spec = spec_of(128);
  spec.artefact_probability = 0.5;
  size_t n = 128 * 128;
  for (uint64_t seed = 1; seed <= 12; seed++) {
    ps_synth_info a, b;
    GError *err = NULL;
    if (!tile(&spec, seed, scratch, &a)) return;
    /* A fresh scratch after a big tile in the shared one: no state leaks. */
    ps_synth_spec big = spec_of(512);
    PS_CHECK_OK(ps_synth_tile(&big, seed + 1000, scratch, rgb2, NULL, NULL, NULL, &err), err);
    PS_CHECK_OK(ps_synth_tile(&spec, seed, NULL, rgb2, mask2, labels2, &b, &err), err);
    PS_CHECK_MSG(memcmp(rgb, rgb2, n * 3) == 0, "seed %d: rgb differs between two runs", (int)seed);
    PS_CHECK(memcmp(mask, mask2, n) == 0);
    PS_CHECK(memcmp(labels, labels2, n) == 0);
    PS_CHECK(a.target == b.target && a.morphology == b.morphology && a.stain == b.stain &&
             a.magnification == b.magnification && a.components == b.components &&
             a.area_fraction == b.area_fraction);
    /* Another seed: another picture. */
    PS_CHECK_OK(ps_synth_tile(&spec, seed + 77, scratch, rgb2, NULL, NULL, NULL, &err), err);
    size_t same = 0;
    for (size_t i = 0; i < n * 3; i++) same += rgb[i] == rgb2[i];
    PS_CHECK_MSG(same < n * 3 / 2, "seed %d and %d share %zu of %zu bytes", (int)seed,
                 (int)seed + 77, same, n * 3);
  }
  /* Tile seeds: a pure function of (seed, split, index), distinct across them. */
  PS_CHECK(ps_synth_tile_seed(3, "train", 5) == ps_synth_tile_seed(3, "train", 5));
  PS_CHECK(ps_synth_tile_seed(3, "train", 5) != ps_synth_tile_seed(3, "train", 6));
  PS_CHECK(ps_synth_tile_seed(3, "train", 5) != ps_synth_tile_seed(3, "val", 5));
  PS_CHECK(ps_synth_tile_seed(3, "train", 5) != ps_synth_tile_seed(4, "train", 5));
  PS_CHECK(ps_synth_tile_seed(3, "zeroshot", 5) != ps_synth_tile_seed(3, "other", 5));
}

/* ---------------------------------------------------------------------- */

/* Which labels make up each target, by name. */
static const char *const target_members[PS_SYNTH_TARGET_COUNT][10] = {
    [PS_SYNTH_T_GLAND] = {"epithelium", "epithelial_nucleus", "lumen", "tumour_epithelium",
                          "tumour_nucleus", "tumour_lumen"},
    [PS_SYNTH_T_TUMOUR] = {"tumour_epithelium", "tumour_nucleus", "tumour_lumen", "tumour_stroma",
                           "mucin", "tumour_stroma_nucleus", "tumour_lymphocyte",
                           "tumour_necrosis"},
    [PS_SYNTH_T_NUCLEI] = {"stroma_nucleus", "lymphocyte", "epithelial_nucleus", "tumour_nucleus",
                           "tumour_stroma_nucleus", "tumour_lymphocyte"},
    [PS_SYNTH_T_NECROSIS] = {"necrosis", "tumour_necrosis"},
    [PS_SYNTH_T_LUMEN] = {"lumen", "tumour_lumen"},
    [PS_SYNTH_T_STROMA] = {"stroma", "stroma_nucleus", "lymphocyte", "tumour_stroma",
                           "tumour_stroma_nucleus", "tumour_lymphocyte"},
};

static gboolean member(int target, int label) {
  for (int k = 0; k < 10 && target_members[target][k]; k++)
    if (strcmp(target_members[target][k], ps_synth_label_name((ps_synth_label)label)) == 0)
      return TRUE;
  return FALSE;
}

static double luma(const uint8_t *p) {
  return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
}

static void test_masks_exact_and_presence(ps_synth_scratch *scratch) {
  const int size = 96;
  const size_t n = (size_t)size * size;
  int label_seen[PS_SYNTH_LABEL_COUNT] = {0};
  for (int t = 0; t < PS_SYNTH_TARGET_COUNT; t++) {
    ps_synth_spec spec = spec_of(size);
    spec.targets = 1u << t;
    spec.artefact_probability = 0;
    int nonempty = 0, tiles = 40;
    double in_luma = 0, out_luma = 0;
    size_t in_n = 0, out_n = 0;
    for (int k = 0; k < tiles; k++) {
      ps_synth_info info;
      if (!tile(&spec, ps_synth_tile_seed(11, ps_synth_target_name(t), k), scratch, &info)) return;
      PS_CHECK(info.target == (ps_synth_target)t);
      size_t bad = 0, area = 0, bad_label = 0;
      for (size_t i = 0; i < n; i++) {
        if (labels[i] >= PS_SYNTH_LABEL_COUNT) {
          bad_label++;
          continue;
        }
        label_seen[labels[i]]++;
        bad += mask[i] != (member(t, labels[i]) ? 1 : 0);
        area += mask[i];
        if (labels[i] == PS_SYNTH_BACKGROUND) continue;
        if (mask[i]) {
          in_luma += luma(rgb + i * 3);
          in_n++;
        } else {
          out_luma += luma(rgb + i * 3);
          out_n++;
        }
      }
      PS_CHECK(bad_label == 0);
      PS_CHECK_MSG(bad == 0, "target %s, tile %d: %zu mask pixels disagree with the labels",
                   ps_synth_target_name(t), k, bad);
      nonempty += area > 0;
    }
    /* Every target is visible in most of the tiles that ask for it. */
    PS_CHECK_MSG(nonempty >= tiles * 19 / 20, "target %s present in only %d of %d tiles",
                 ps_synth_target_name(t), nonempty, tiles);
    /* The mask sits on the right pixels: nuclei are dark, lumina are bright. */
    if (in_n && out_n) {
      in_luma /= (double)in_n;
      out_luma /= (double)out_n;
      if (t == PS_SYNTH_T_NUCLEI)
        PS_CHECK_MSG(in_luma < out_luma - 40, "nuclei luma %.1f vs rest %.1f", in_luma, out_luma);
      if (t == PS_SYNTH_T_LUMEN)
        PS_CHECK_MSG(in_luma > out_luma + 30, "lumen luma %.1f vs rest %.1f", in_luma, out_luma);
    }
  }
  for (int l = 0; l < PS_SYNTH_LABEL_COUNT; l++)
    PS_CHECK_MSG(label_seen[l] > 0, "label %s never drawn", ps_synth_label_name((ps_synth_label)l));
}

/* ---------------------------------------------------------------------- */

static void test_colours(ps_synth_scratch *scratch) {
  const int size = 128;
  const size_t n = (size_t)size * size;
  for (int st = 0; st < PS_SYNTH_STAIN_COUNT; st++) {
    ps_synth_spec spec = spec_of(size);
    spec.stains = 1u << st;
    spec.artefact_probability = 0;
    double tissue[3] = {0}, stroma[3] = {0}, nuc[3] = {0}, epi[3] = {0};
    size_t nt = 0, ns = 0, nn = 0, ne = 0;
    for (int k = 0; k < 24; k++) {
      ps_synth_info info;
      if (!tile(&spec, ps_synth_tile_seed(5, ps_synth_stain_name(st), k), scratch, &info)) return;
      PS_CHECK(info.stain == (ps_synth_stain)st);
      for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgb + i * 3, l = labels[i];
        if (l == PS_SYNTH_BACKGROUND) continue;
        for (int c = 0; c < 3; c++) tissue[c] += p[c];
        nt++;
        if (l == PS_SYNTH_STROMA || l == PS_SYNTH_TUMOUR_STROMA) {
          for (int c = 0; c < 3; c++) stroma[c] += p[c];
          ns++;
        } else if (l == PS_SYNTH_EPI_NUCLEUS || l == PS_SYNTH_TUMOUR_NUCLEUS ||
                   l == PS_SYNTH_LYMPHOCYTE || l == PS_SYNTH_TUMOUR_LYMPHOCYTE) {
          for (int c = 0; c < 3; c++) nuc[c] += p[c];
          nn++;
        } else if (l == PS_SYNTH_EPITHELIUM || l == PS_SYNTH_TUMOUR_EPITHELIUM) {
          for (int c = 0; c < 3; c++) epi[c] += p[c];
          ne++;
        }
      }
    }
    PS_CHECK(nt && ns && nn && ne);
    if (!nt || !ns || !nn || !ne) continue;
    for (int c = 0; c < 3; c++) {
      tissue[c] /= (double)nt;
      stroma[c] /= (double)ns;
      nuc[c] /= (double)nn;
      epi[c] /= (double)ne;
    }
    const char *name = ps_synth_stain_name(st);
    printf("%-14s tissue %3.0f %3.0f %3.0f  stroma %3.0f %3.0f %3.0f  nuclei %3.0f %3.0f %3.0f  "
           "epithelium %3.0f %3.0f %3.0f\n",
           name, tissue[0], tissue[1], tissue[2], stroma[0], stroma[1], stroma[2], nuc[0], nuc[1],
           nuc[2], epi[0], epi[1], epi[2]);
    /* Nuclei are much darker than stroma in every style. */
    PS_CHECK_MSG((nuc[0] + nuc[1] + nuc[2]) < (stroma[0] + stroma[1] + stroma[2]) - 150,
                 "%s: nuclei not darker than stroma", name);
    if (strncmp(name, "he_", 3) == 0) {
      /* H&E: pink-purple tissue (green absorbed most), eosinophilic stroma
       * (red well above green, blue not above red by much: pink to lilac in
       * a haematoxylin-heavy style), purple-blue nuclei (blue > red). */
      PS_CHECK_MSG(tissue[0] > tissue[1] + 20 && tissue[2] > tissue[1] + 10,
                   "%s: tissue not pink/purple", name);
      PS_CHECK_MSG(stroma[0] > stroma[1] + 20 && stroma[2] < stroma[0] + 8, "%s: stroma not pink",
                   name);
      PS_CHECK_MSG(nuc[2] > nuc[0] + 15 && nuc[2] > nuc[1] + 30, "%s: nuclei not purple-blue",
                   name);
      PS_CHECK_MSG(tissue[0] > 150 && tissue[0] < 245, "%s: tissue red %.0f implausible", name,
                   tissue[0]);
    } else {
      /* IHC: brown (DAB) epithelium, blue haematoxylin nuclei, nearly colourless stroma. */
      PS_CHECK_MSG(epi[0] > epi[2] + 25 && epi[0] > epi[1], "%s: epithelium not brown", name);
      PS_CHECK_MSG(nuc[2] > nuc[0] + 20, "%s: nuclei not blue", name);
      PS_CHECK_MSG(stroma[1] > 200 && stroma[2] >= stroma[0] - 5, "%s: stroma not pale blue-grey",
                   name);
    }
  }
}

/* ---------------------------------------------------------------------- */

static void test_magnification(ps_synth_scratch *scratch) {
  /* Nuclei (and everything else) grow with the magnification: the mean area
   * of a nucleus component at 40x is several times that at 10x. */
  double per[2] = {0};
  const int mags[2] = {1, 3}; /* 10x, 40x */
  for (int m = 0; m < 2; m++) {
    ps_synth_spec spec = spec_of(128);
    spec.targets = 1u << PS_SYNTH_T_NUCLEI;
    spec.magnifications = 1u << mags[m];
    spec.artefact_probability = 0;
    double area = 0, comps = 0;
    for (int k = 0; k < 12; k++) {
      ps_synth_info info;
      if (!tile(&spec, 100 + k, scratch, &info)) return;
      PS_CHECK(info.magnification == ps_synth_magnification(mags[m]));
      PS_CHECK_NEAR(info.microns_per_pixel, 10.0 / info.magnification, 1e-12);
      area += info.area_fraction * 128 * 128;
      comps += info.components;
    }
    per[m] = comps > 0 ? area / comps : 0;
  }
  PS_CHECK_MSG(per[1] > 4 * per[0], "nucleus area 10x %.1f px, 40x %.1f px", per[0], per[1]);
  PS_CHECK(ps_synth_magnification_index(20) == 2 && ps_synth_magnification_index(15) == -1);
}

/* ---------------------------------------------------------------------- */

static void test_held_out(ps_synth_scratch *scratch) {
  /* Held out, by name: cribriform and signet_ring; he_haem_rich and ihc_dab. */
  for (int m = 0; m < PS_SYNTH_MORPHOLOGY_COUNT; m++) {
    const char *name = ps_synth_morphology_name(m);
    gboolean want = strcmp(name, "cribriform") == 0 || strcmp(name, "signet_ring") == 0;
    PS_CHECK_MSG(ps_synth_morphology_held_out(m) == want, "morphology %s", name);
    PS_CHECK(ps_synth_morphology_from_name(name) == m);
  }
  for (int s = 0; s < PS_SYNTH_STAIN_COUNT; s++) {
    const char *name = ps_synth_stain_name(s);
    gboolean want = strcmp(name, "he_haem_rich") == 0 || strcmp(name, "ihc_dab") == 0;
    PS_CHECK_MSG(ps_synth_stain_held_out(s) == want, "stain %s", name);
    PS_CHECK(ps_synth_stain_from_name(name) == s);
  }
  PS_CHECK(ps_synth_target_from_name("glands") == PS_SYNTH_T_GLAND);
  PS_CHECK(ps_synth_target_from_name("tumor") == PS_SYNTH_T_TUMOUR);
  PS_CHECK(ps_synth_target_from_name("banana") == -1);
  /* Tiles report the flags of what they show, and obey the spec's sets. */
  ps_synth_spec spec = spec_of(64);
  spec.morphologies = ~ps_synth_held_out_morphologies() & ((1u << PS_SYNTH_MORPHOLOGY_COUNT) - 1);
  spec.stains = ~ps_synth_held_out_stains() & ((1u << PS_SYNTH_STAIN_COUNT) - 1);
  int ho = 0;
  for (int k = 0; k < 30; k++) {
    ps_synth_info info;
    if (!tile(&spec, 900 + k, scratch, &info)) return;
    ho += info.held_out_morphology || info.held_out_stain;
  }
  PS_CHECK(ho == 0);
  spec.morphologies = ps_synth_held_out_morphologies();
  spec.stains = ps_synth_held_out_stains();
  for (int k = 0; k < 30; k++) {
    ps_synth_info info;
    if (!tile(&spec, 900 + k, scratch, &info)) return;
    PS_CHECK(info.held_out_morphology && info.held_out_stain);
  }
}

/* ---------------------------------------------------------------------- */

/* Union-find for the reference component count (8-connectivity). */
static int find_root(int *parent, int i) {
  while (parent[i] != i) i = parent[i] = parent[parent[i]];
  return i;
}

static void test_descriptors_and_sizes(ps_synth_scratch *scratch) {
  static int parent[N_MAX];
  const int sizes[4][2] = {{64, 64}, {512, 512}, {100, 64}, {256, 256}};
  for (int z = 0; z < 4; z++) {
    int w = sizes[z][0], h = sizes[z][1];
    size_t n = (size_t)w * h;
    ps_synth_spec spec = spec_of(0);
    spec.width = w;
    spec.height = h;
    for (int k = 0; k < 6; k++) {
      ps_synth_info info;
      if (!tile(&spec, 4000 + z * 10 + k, scratch, &info)) return;
      size_t area = 0;
      double sx = 0, sy = 0;
      int x0 = w, y0 = h, x1 = -1, y1 = -1;
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
          int i = y * w + x;
          parent[i] = i;
          if (!mask[i]) continue;
          area++;
          sx += x + 0.5;
          sy += y + 0.5;
          x0 = MIN(x0, x), x1 = MAX(x1, x), y0 = MIN(y0, y), y1 = MAX(y1, y);
        }
      int comps = 0;
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
          int i = y * w + x;
          if (!mask[i]) continue;
          const int nb[4][2] = {{-1, 0}, {-1, -1}, {0, -1}, {1, -1}};
          for (int q = 0; q < 4; q++) {
            int qx = x + nb[q][0], qy = y + nb[q][1];
            if (qx < 0 || qy < 0 || qx >= w || !mask[qy * w + qx]) continue;
            int a = find_root(parent, i), b = find_root(parent, qy * w + qx);
            if (a != b) parent[a] = b;
          }
        }
      for (size_t i = 0; i < n; i++) comps += mask[i] && find_root(parent, (int)i) == (int)i;
      PS_CHECK_NEAR(info.area_fraction, (double)area / (double)n, 1e-12);
      PS_CHECK_MSG(info.components == comps, "%dx%d: components %d, want %d", w, h, info.components,
                   comps);
      if (area) {
        PS_CHECK_NEAR(info.centroid_x, sx / (double)area / w, 1e-9);
        PS_CHECK_NEAR(info.centroid_y, sy / (double)area / h, 1e-9);
        PS_CHECK(info.bbox[0] == x0 && info.bbox[1] == y0 && info.bbox[2] == x1 &&
                 info.bbox[3] == y1);
      } else {
        PS_CHECK(info.centroid_x == -1 && info.bbox[0] == -1);
      }
      double sum = 0;
      for (int l = 0; l < PS_SYNTH_LABEL_COUNT; l++) sum += info.label_fraction[l];
      PS_CHECK_NEAR(sum, 1.0, 1e-9);
      PS_CHECK_NEAR(info.tissue_fraction, 1.0 - info.label_fraction[PS_SYNTH_BACKGROUND], 1e-12);
    }
  }
}

static void test_spec_errors(void) {
  GError *err = NULL;
  ps_synth_spec spec = spec_of(15);
  PS_CHECK_FAILS_WITH(ps_synth_tile(&spec, 1, NULL, rgb, NULL, NULL, NULL, &err), err,
                      "size 15x15");
  spec = spec_of(64);
  spec.height = 4096;
  PS_CHECK_FAILS_WITH(ps_synth_tile(&spec, 1, NULL, rgb, NULL, NULL, NULL, &err), err, "outside");
  spec = spec_of(64);
  spec.stains = 1u << PS_SYNTH_STAIN_COUNT;
  PS_CHECK_FAILS_WITH(ps_synth_tile(&spec, 1, NULL, rgb, NULL, NULL, NULL, &err), err, "stains");
  spec = spec_of(64);
  spec.artefact_probability = 1.5;
  PS_CHECK_FAILS_WITH(ps_synth_tile(&spec, 1, NULL, rgb, NULL, NULL, NULL, &err), err,
                      "artefact_probability");
  spec = spec_of(64);
  PS_CHECK_FAILS_WITH(ps_synth_tile(&spec, 1, NULL, NULL, NULL, NULL, NULL, &err), err, "rgb");
}

int main(void) {
  g_autoptr(ps_synth_scratch) scratch = ps_synth_scratch_new();
  test_determinism(scratch);
  test_masks_exact_and_presence(scratch);
  test_colours(scratch);
  test_magnification(scratch);
  test_held_out(scratch);
  test_descriptors_and_sizes(scratch);
  test_spec_errors();
  return ps_test_finish();
}
