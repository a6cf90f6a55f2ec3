/* synth_names.c — the vocabulary of the synthetic generator: names of
 * labels, targets, morphologies and stain styles, which labels make up each
 * target, which morphologies can show it, and which items are held out for
 * the zero-shot split. Kept apart from the drawing code so that the text
 * side (annotators, docs) has one place to read. */
#include <string.h>

#include "synth.h"

#define BIT(x) (1u << (x))

static const char *const label_names[PS_SYNTH_LABEL_COUNT] = {
    "background",
    "stroma",
    "stroma_nucleus",
    "lymphocyte",
    "epithelium",
    "epithelial_nucleus",
    "lumen",
    "tumour_epithelium",
    "tumour_nucleus",
    "tumour_lumen",
    "tumour_stroma",
    "mucin",
    "necrosis",
    "tumour_stroma_nucleus",
    "tumour_lymphocyte",
    "tumour_necrosis",
};

static const char *const target_names[PS_SYNTH_TARGET_COUNT] = {
    "gland", "tumour", "nuclei", "necrosis", "lumen", "stroma",
};

static const char *const morphology_names[PS_SYNTH_MORPHOLOGY_COUNT] = {
    "normal", "tubular_adenocarcinoma", "cribriform", "mucinous", "signet_ring", "solid",
};

static const char *const stain_names[PS_SYNTH_STAIN_COUNT] = {
    "he_classic", "he_eosin_rich", "he_haem_rich", "he_faded", "he_warm", "ihc_dab",
};

static const int magnifications[PS_SYNTH_MAG_COUNT] = {5, 10, 20, 40};

uint32_t ps_synth_target_labels(ps_synth_target target) {
  switch (target) {
  case PS_SYNTH_T_GLAND:
    return BIT(PS_SYNTH_EPITHELIUM) | BIT(PS_SYNTH_EPI_NUCLEUS) | BIT(PS_SYNTH_LUMEN) |
           BIT(PS_SYNTH_TUMOUR_EPITHELIUM) | BIT(PS_SYNTH_TUMOUR_NUCLEUS) |
           BIT(PS_SYNTH_TUMOUR_LUMEN);
  case PS_SYNTH_T_TUMOUR:
    return BIT(PS_SYNTH_TUMOUR_EPITHELIUM) | BIT(PS_SYNTH_TUMOUR_NUCLEUS) |
           BIT(PS_SYNTH_TUMOUR_LUMEN) | BIT(PS_SYNTH_TUMOUR_STROMA) | BIT(PS_SYNTH_MUCIN) |
           BIT(PS_SYNTH_TUMOUR_STROMA_NUCLEUS) | BIT(PS_SYNTH_TUMOUR_LYMPHOCYTE) |
           BIT(PS_SYNTH_TUMOUR_NECROSIS);
  case PS_SYNTH_T_NUCLEI:
    return BIT(PS_SYNTH_STROMA_NUCLEUS) | BIT(PS_SYNTH_LYMPHOCYTE) | BIT(PS_SYNTH_EPI_NUCLEUS) |
           BIT(PS_SYNTH_TUMOUR_NUCLEUS) | BIT(PS_SYNTH_TUMOUR_STROMA_NUCLEUS) |
           BIT(PS_SYNTH_TUMOUR_LYMPHOCYTE);
  case PS_SYNTH_T_NECROSIS:
    return BIT(PS_SYNTH_NECROSIS) | BIT(PS_SYNTH_TUMOUR_NECROSIS);
  case PS_SYNTH_T_LUMEN:
    return BIT(PS_SYNTH_LUMEN) | BIT(PS_SYNTH_TUMOUR_LUMEN);
  case PS_SYNTH_T_STROMA:
    return BIT(PS_SYNTH_STROMA) | BIT(PS_SYNTH_STROMA_NUCLEUS) | BIT(PS_SYNTH_LYMPHOCYTE) |
           BIT(PS_SYNTH_TUMOUR_STROMA) | BIT(PS_SYNTH_TUMOUR_STROMA_NUCLEUS) |
           BIT(PS_SYNTH_TUMOUR_LYMPHOCYTE);
  default:
    return 0;
  }
}

uint32_t ps_synth_target_morphologies(ps_synth_target target) {
  const uint32_t all = BIT(PS_SYNTH_MORPHOLOGY_COUNT) - 1;
  switch (target) {
  case PS_SYNTH_T_TUMOUR:
    return all & ~BIT(PS_SYNTH_M_NORMAL);
  case PS_SYNTH_T_GLAND:
  case PS_SYNTH_T_LUMEN:
    /* Solid nests and signet-ring cells form no glands. */
    return all & ~(BIT(PS_SYNTH_M_SOLID) | BIT(PS_SYNTH_M_SIGNET_RING));
  default:
    return all;
  }
}

const char *ps_synth_label_name(ps_synth_label l) {
  return (unsigned)l < PS_SYNTH_LABEL_COUNT ? label_names[l] : "?";
}
const char *ps_synth_target_name(ps_synth_target t) {
  return (unsigned)t < PS_SYNTH_TARGET_COUNT ? target_names[t] : "?";
}
const char *ps_synth_morphology_name(ps_synth_morphology m) {
  return (unsigned)m < PS_SYNTH_MORPHOLOGY_COUNT ? morphology_names[m] : "?";
}
const char *ps_synth_stain_name(ps_synth_stain s) {
  return (unsigned)s < PS_SYNTH_STAIN_COUNT ? stain_names[s] : "?";
}

static int find(const char *const *names, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (g_ascii_strcasecmp(names[i], name) == 0) return i;
  return -1;
}

int ps_synth_target_from_name(const char *name) {
  static const struct {
    const char *alias;
    int value;
  } aliases[] = {
      {"glands", PS_SYNTH_T_GLAND},         {"tumor", PS_SYNTH_T_TUMOUR},
      {"tumour region", PS_SYNTH_T_TUMOUR}, {"tumor region", PS_SYNTH_T_TUMOUR},
      {"nucleus", PS_SYNTH_T_NUCLEI},       {"lumina", PS_SYNTH_T_LUMEN},
  };
  int i = find(target_names, PS_SYNTH_TARGET_COUNT, name);
  for (size_t a = 0; i < 0 && a < G_N_ELEMENTS(aliases); a++)
    if (g_ascii_strcasecmp(aliases[a].alias, name) == 0) i = aliases[a].value;
  return i;
}

int ps_synth_morphology_from_name(const char *name) {
  return find(morphology_names, PS_SYNTH_MORPHOLOGY_COUNT, name);
}

int ps_synth_stain_from_name(const char *name) {
  return find(stain_names, PS_SYNTH_STAIN_COUNT, name);
}

int ps_synth_magnification_index(int m) {
  for (int i = 0; i < PS_SYNTH_MAG_COUNT; i++)
    if (magnifications[i] == m) return i;
  return -1;
}

int ps_synth_magnification(int index) {
  return index >= 0 && index < PS_SYNTH_MAG_COUNT ? magnifications[index] : 0;
}

uint32_t ps_synth_held_out_morphologies(void) {
  return BIT(PS_SYNTH_M_CRIBRIFORM) | BIT(PS_SYNTH_M_SIGNET_RING);
}

uint32_t ps_synth_held_out_stains(void) {
  return BIT(PS_SYNTH_S_HE_HAEM_RICH) | BIT(PS_SYNTH_S_IHC_DAB);
}

gboolean ps_synth_morphology_held_out(ps_synth_morphology m) {
  return (unsigned)m < 32 && (ps_synth_held_out_morphologies() & BIT(m)) != 0;
}

gboolean ps_synth_stain_held_out(ps_synth_stain s) {
  return (unsigned)s < 32 && (ps_synth_held_out_stains() & BIT(s)) != 0;
}

uint64_t ps_synth_tile_seed(uint64_t seed, const char *split, int64_t index) {
  /* Known splits get small fixed ids; any other name hashes (FNV-1a), so a
   * new split never collides with the tiles of the standard ones by design. */
  uint64_t id;
  if (strcmp(split, "train") == 0)
    id = 1;
  else if (strcmp(split, "val") == 0)
    id = 2;
  else if (strcmp(split, "test") == 0)
    id = 3;
  else if (strcmp(split, "zeroshot") == 0)
    id = 4;
  else {
    id = 1469598103934665603ull;
    for (const char *p = split; *p; p++) id = (id ^ (uint8_t)*p) * 1099511628211ull;
    id |= 1ull << 20; /* never one of the ids above */
  }
  ps_rng base;
  ps_rng_seed(&base, seed);
  ps_rng tile = ps_rng_fork(&base, (id & 0xffffffull) << 40 ^ (uint64_t)index);
  return ps_rng_u64(&tile);
}
