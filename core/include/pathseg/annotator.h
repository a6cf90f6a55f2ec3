/* annotator.h — capability "annotator": writes the reasoning chain of one
 * benchmark item.
 *
 * When stage.build_benchmark makes a triplet (image, mask, query, chain), it
 * measures descriptors from the tile and its mask, writes the user's query
 * (template phrasing), and then asks an annotator for the assistant's
 * reasoning chain: the text the LLM learns to say before emitting <SEG>,
 * the token whose hidden state becomes the mask prompt.
 *
 * Writing an annotator
 * --------------------
 * An annotator is an ordinary component (plugin.h) that answers the
 * capability name "annotator" with a static ps_annotator_iface:
 *
 *     static const ps_annotator_iface iface = {sizeof(ps_annotator_iface), my_annotate};
 *     static const void *capability(const char *name) {
 *       return strcmp(name, "annotator") == 0 ? &iface : NULL;
 *     }
 *
 * Register it with kind PS_KIND_ANNOTATOR (the host finds annotators by their
 * capability; the kind is what `pipeline plugins` shows) and a dotted name
 * starting with "annotator." ("annotator.template", "annotator.http"). A
 * pipeline instantiates it under `components:` and the stage names the
 * instance:
 *
 *     components:
 *       chains: {plugin: annotator.http, with: {url: "http://127.0.0.1:8080", model: qwen}}
 *     stages:
 *       build: {plugin: stage.build_benchmark, annotator: chains, ...}
 *
 * Contract of annotate():
 *   - It returns the chain as a newly allocated UTF-8 string (the caller
 *     g_free()s it), or NULL with `error` set. An error is not fatal to the
 *     build: the stage logs "skipped IMAGE: MESSAGE" and goes on without the
 *     item, so the message should say what failed and where (an endpoint's
 *     URL, an HTTP status, a timeout).
 *   - The chain contains PS_SEG_TOKEN exactly once, in its last sentence
 *     ("... so the mask of the glands is <SEG>."); only closing punctuation
 *     may follow it. The stage refuses (skips) chains that break this.
 *   - The chain is written from `item` alone: the descriptors are measured
 *     facts about the target in this tile, the words (location, extent,
 *     colour, shape) are ready to use in a sentence. Say "no X here" when
 *     area_fraction is 0 (such items exist when a source keeps empty masks).
 *   - Same item (including `seed`) and same configuration should give the
 *     same chain, so that rebuilding a benchmark reproduces it; a remote
 *     model gets `seed` as its sampling seed.
 *   - The stage calls annotate() from one thread, one item at a time, in
 *     the benchmark's order; `self` is the component's instance.
 *   - All pointers in `item` are borrowed for the duration of the call.
 *     Strings may be NULL where marked. Read fields only up to
 *     item->struct_size: later hosts may add fields at the end. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* The token that ends every reasoning chain. */
#define PS_SEG_TOKEN "<SEG>"

/* Facts measured from a tile's RGB pixels and its binary target mask. */
typedef struct ps_image_descriptors {
  double area_fraction;     /* mask pixels / all pixels, in [0, 1] */
  int components;           /* 8-connected pieces of at least min_component pixels */
  int largest_component;    /* pixels of the largest piece (specks included) */
  double irregularity;      /* perimeter^2 / (4 pi area) of the whole mask; 1 = a disc, 0 when empty */
  double centroid_x, centroid_y; /* centre of mass in [0, 1] (x right, y down); -1 when empty */
  double mean_rgb[3];       /* mean 0..255 colour inside the mask; 0 when empty */
  double background_rgb[3]; /* mean 0..255 colour outside the mask */
  const char *location;     /* a cell of a 3x3 grid: "upper left", "centre", "lower centre", ...; "nowhere" */
  const char *extent;       /* "absent", "focal" (<5%), "patchy" (<25%), "extensive" (<60%), "diffuse" */
  const char *colour;       /* "basophilic (purple)", "eosinophilic (pink)", "pale", "brown (DAB-positive)",
                               "bluish", "amphophilic"; "none" when empty */
  const char *shape;        /* outline per piece: "smooth", "slightly irregular", "irregular",
                               "highly irregular"; "none" when empty */
} ps_image_descriptors;

/* One item to annotate. */
typedef struct ps_annotator_item {
  uint32_t struct_size;     /* sizeof(ps_annotator_item) as the host was built */
  const char *image;        /* the tile's path relative to the benchmark (for messages); never NULL */
  const char *query;        /* the user's question the chain answers; never NULL */
  const char *target;       /* what is segmented: "gland", "tumour", "nuclei", "normal tissue", ...; never NULL */
  gboolean target_plural;   /* the target is a plural noun ("nuclei", "glands"); FALSE for a singular or
                               mass noun ("tumour", "stroma", "normal tissue") — for verb agreement */
  const char *morphology;   /* tissue class / diagnosis: "normal", "tubular", "adenocarcinoma", ...; or NULL */
  const char *stain;        /* "he", "he_classic", "ihc_dab", ...; or NULL when unknown */
  const char *organ;        /* word for the organ: "colonic", "lung", "lymph node"; or NULL */
  const char *source;       /* where the tile came from: "synthetic", "glas", "wsi", ...; or NULL */
  int magnification;        /* nominal objective (5, 10, 20, 40); 0 when unknown */
  int width, height;        /* tile size in pixels */
  const ps_image_descriptors *descriptors; /* never NULL */
  uint64_t seed;            /* per-item seed for any sampling */
} ps_annotator_item;

typedef struct ps_annotator_iface {
  uint32_t struct_size; /* sizeof(ps_annotator_iface) the plugin was built with */
  /* The reasoning chain for `item` (g_free), or NULL with `error` set. */
  char *(*annotate)(void *self, const ps_annotator_item *item, GError **error);
} ps_annotator_iface;

G_END_DECLS
