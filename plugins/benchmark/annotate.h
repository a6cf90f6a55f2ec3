/* annotate.h — turning descriptors into a question and a reasoning chain.
 *
 * An annotator gets what is known about a tile (target, tissue morphology,
 * stain, magnification, and the descriptors measured from its mask) and
 * writes the user's query and the assistant's reasoning chain, which ends
 * with the <SEG> token whose hidden state becomes the mask prompt. The
 * template annotator here is deterministic given its RNG; other annotators
 * (an OpenAI-compatible endpoint) fill the same struct. */
#pragma once

#include <glib.h>
#include <pathseg/rng.h>

#include "describe.h"

typedef struct ps_annotation_input {
  const char *target;      /* "gland", "tumour", "nuclei", "necrosis", "lumen", "stroma", ... */
  const char *morphology;  /* "normal", "tubular", "cribriform", ... or NULL */
  const char *stain;       /* "he_classic", "ihc_dab", ... or NULL */
  const char *organ;       /* "colon" or NULL */
  int magnification;       /* 0 when unknown */
  const ps_descriptors *d;
} ps_annotation_input;

#define PS_SEG_TOKEN "<SEG>"

/* g_free both results. */
void ps_template_annotate(const ps_annotation_input *in, ps_rng *rng, char **query, char **reasoning);
