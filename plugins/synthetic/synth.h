/* synth.h — the procedural H&E-like tile generator behind dataset.synthetic.
 *
 * A tile is a pure function of (spec, seed): ps_synth_tile() draws every
 * random choice from a ps_rng seeded with `seed` and from hash noise keyed by
 * values drawn from it, so the same call gives the same bytes on every run.
 * It paints a label map of fine tissue classes (ps_synth_label) first and
 * renders colour from it through a Beer–Lambert optical-density model, so the
 * masks are exact: the mask of a query target is precisely the pixels whose
 * label belongs to that target (ps_synth_target_labels).
 *
 * The header is self-contained (glib + pathseg/rng.h) so that other plugins
 * (the benchmark builder, annotators) can compile synth.c in and call it. */
#pragma once

#include <glib.h>
#include <pathseg/rng.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Fine tissue classes of the label map (one byte per pixel). */
typedef enum {
  PS_SYNTH_BACKGROUND,            /* glass */
  PS_SYNTH_STROMA,                /* collagenous stroma / lamina propria */
  PS_SYNTH_STROMA_NUCLEUS,        /* fibroblast nuclei */
  PS_SYNTH_LYMPHOCYTE,            /* lymphocyte nuclei */
  PS_SYNTH_EPITHELIUM,            /* normal gland epithelium (cytoplasm, goblet cells) */
  PS_SYNTH_EPI_NUCLEUS,           /* normal epithelial nuclei */
  PS_SYNTH_LUMEN,                 /* lumen of a normal gland */
  PS_SYNTH_TUMOUR_EPITHELIUM,     /* tumour cell cytoplasm (incl. signet-ring vacuoles) */
  PS_SYNTH_TUMOUR_NUCLEUS,        /* tumour nuclei */
  PS_SYNTH_TUMOUR_LUMEN,          /* lumina of tumour glands, cribriform spaces */
  PS_SYNTH_TUMOUR_STROMA,         /* desmoplastic stroma inside the tumour region */
  PS_SYNTH_MUCIN,                 /* extracellular mucin pools */
  PS_SYNTH_NECROSIS,              /* necrosis outside the tumour region */
  PS_SYNTH_TUMOUR_STROMA_NUCLEUS, /* fibroblast nuclei in desmoplastic stroma */
  PS_SYNTH_TUMOUR_LYMPHOCYTE,     /* tumour-infiltrating lymphocytes */
  PS_SYNTH_TUMOUR_NECROSIS, /* necrosis in the tumour region, dirty necrosis in tumour lumina */
  PS_SYNTH_LABEL_COUNT
} ps_synth_label;

/* Query targets: each is a set of labels (ps_synth_target_labels). */
typedef enum {
  PS_SYNTH_T_GLAND,    /* "gland": epithelium + nuclei + lumen, normal and tumour */
  PS_SYNTH_T_TUMOUR,   /* "tumour": the tumour region (tumour cells, lumina, stroma and its
                          cells, mucin, tumour necrosis) */
  PS_SYNTH_T_NUCLEI,   /* "nuclei": every nucleus */
  PS_SYNTH_T_NECROSIS, /* "necrosis" */
  PS_SYNTH_T_LUMEN,    /* "lumen": gland lumina, normal and tumour */
  PS_SYNTH_T_STROMA,   /* "stroma": stroma with its own cells, normal and desmoplastic */
  PS_SYNTH_TARGET_COUNT
} ps_synth_target;

typedef enum {
  PS_SYNTH_M_NORMAL,      /* regular crypts, basal nuclei, goblet cells, lamina propria */
  PS_SYNTH_M_TUBULAR,     /* tubular adenocarcinoma: crowded, irregular, fused glands */
  PS_SYNTH_M_CRIBRIFORM,  /* large glands with punched-out lumina (held out) */
  PS_SYNTH_M_MUCINOUS,    /* tumour glands floating in mucin pools */
  PS_SYNTH_M_SIGNET_RING, /* discohesive signet-ring cells in stroma (held out) */
  PS_SYNTH_M_SOLID,       /* solid nests without lumina */
  PS_SYNTH_MORPHOLOGY_COUNT
} ps_synth_morphology;

typedef enum {
  PS_SYNTH_S_HE_CLASSIC,
  PS_SYNTH_S_HE_EOSIN_RICH,
  PS_SYNTH_S_HE_HAEM_RICH, /* held out */
  PS_SYNTH_S_HE_FADED,
  PS_SYNTH_S_HE_WARM,
  PS_SYNTH_S_IHC_DAB, /* held out: haematoxylin counterstain + DAB in epithelium */
  PS_SYNTH_STAIN_COUNT
} ps_synth_stain;

#define PS_SYNTH_MAG_COUNT 4 /* 5x, 10x, 20x, 40x */
#define PS_SYNTH_MIN_SIZE 16
#define PS_SYNTH_MAX_SIZE 2048

/* What to draw. Each set is a bit mask over its enum (bit i = value i; for
 * magnifications bit i = {5, 10, 20, 40}[i]); 0 means "all". A tile draws its
 * target first, then a morphology compatible with it from `morphologies`. */
typedef struct ps_synth_spec {
  int width, height; /* PS_SYNTH_MIN_SIZE..PS_SYNTH_MAX_SIZE */
  uint32_t targets, morphologies, stains, magnifications;
  double artefact_probability; /* chance of a frozen-section look (holes, fold, blur) */
} ps_synth_spec;

/* What was drawn, and descriptors of the target mask for the text side. */
typedef struct ps_synth_info {
  ps_synth_target target;
  ps_synth_morphology morphology;
  ps_synth_stain stain;
  const char *target_name, *morphology_name, *stain_name; /* static strings */
  int magnification;                                      /* 5, 10, 20 or 40 */
  double microns_per_pixel;                               /* 10 / magnification */
  gboolean held_out_morphology, held_out_stain;
  gboolean frozen; /* frozen-section artefacts were applied */
  gboolean ice_crystals, fold, blur;
  gboolean tissue_edge; /* glass is visible */
  /* Descriptors of the target mask. */
  double area_fraction;          /* mask pixels / all pixels */
  int components;                /* 8-connected components of the mask */
  double centroid_x, centroid_y; /* in [0, 1] of width/height; -1 when the mask is empty */
  int bbox[4];                   /* x0, y0, x1, y1 (inclusive); all -1 when empty */
  double tissue_fraction;        /* non-background pixels / all pixels */
  double label_fraction[PS_SYNTH_LABEL_COUNT];
  int glands, nuclei; /* glands / solid nests and nuclei with pixels on the tile */
} ps_synth_info;

/* Working memory of the generator. It grows to the largest tile it has seen
 * and is reused, so a loop over tiles allocates nothing after the first.
 * One per thread. */
typedef struct ps_synth_scratch ps_synth_scratch;
ps_synth_scratch *ps_synth_scratch_new(void);
void ps_synth_scratch_free(ps_synth_scratch *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_synth_scratch, ps_synth_scratch_free)

/* Draws one tile. rgb: (H, W, 3) u8, required. mask: (H, W) u8 in {0, 1}, the
 * target's pixels, may be NULL. labels: (H, W) u8 ps_synth_label, may be NULL.
 * info may be NULL. scratch may be NULL (a temporary one is made). FALSE with
 * an error for a bad spec (size out of range, an empty choice). */
gboolean ps_synth_tile(const ps_synth_spec *spec, uint64_t seed, ps_synth_scratch *scratch,
                       uint8_t *rgb, uint8_t *mask, uint8_t *labels, ps_synth_info *info,
                       GError **error);

/* The seed of tile `index` of `split` ("train", "val", "test", "zeroshot" or
 * any other name) for a dataset seed: a pure function of the three. */
uint64_t ps_synth_tile_seed(uint64_t seed, const char *split, int64_t index);

/* Bit mask of the labels that make up `target`. */
uint32_t ps_synth_target_labels(ps_synth_target target);
/* Bit mask of the morphologies that can show `target`. */
uint32_t ps_synth_target_morphologies(ps_synth_target target);

const char *ps_synth_label_name(ps_synth_label label);
const char *ps_synth_target_name(ps_synth_target target);
const char *ps_synth_morphology_name(ps_synth_morphology m);
const char *ps_synth_stain_name(ps_synth_stain s);
/* Names to values; also accept a few aliases ("glands", "tumor", ...). -1 if unknown. */
int ps_synth_target_from_name(const char *name);
int ps_synth_morphology_from_name(const char *name);
int ps_synth_stain_from_name(const char *name);
/* 5, 10, 20, 40 -> 0..3; -1 otherwise. */
int ps_synth_magnification_index(int magnification);
int ps_synth_magnification(int index);

gboolean ps_synth_morphology_held_out(ps_synth_morphology m);
gboolean ps_synth_stain_held_out(ps_synth_stain s);
/* Bit masks of the held-out morphologies and stains. */
uint32_t ps_synth_held_out_morphologies(void);
uint32_t ps_synth_held_out_stains(void);

/* ---------------------------------------------------------------------- */
/* Capability "synthetic_info" of dataset.synthetic: the text side of each
 * example, for the query / reasoning-chain annotator. */

typedef struct ps_synth_info_iface {
  uint32_t struct_size;
  /* What example `index` of `split` shows (draws the tile again; about a
   * hundredth of a second at 256 px). */
  gboolean (*describe)(void *self, const char *split, int64_t index, ps_synth_info *out,
                       GError **error);
  /* The infos of the examples of the last batch() call, in batch order;
   * `*n` is the batch size (0 and NULL before the first batch). */
  const ps_synth_info *(*last_batch)(void *self, size_t *n);
} ps_synth_info_iface;

G_END_DECLS
