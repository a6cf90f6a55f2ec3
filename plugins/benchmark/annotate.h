/* annotate.h — the template annotator: turning descriptors into a question
 * and a reasoning chain.
 *
 * It gets what is known about a tile (target, tissue morphology, stain,
 * magnification, and the descriptors measured from its mask) and writes the
 * user's query and the assistant's reasoning chain, which ends with the
 * <SEG> token whose hidden state becomes the mask prompt. Deterministic given
 * its RNG: the query is drawn first, then the chain, from the same stream,
 * so ps_template_annotate(in, rng) equals ps_template_query then
 * ps_template_reasoning on one RNG. Sentences agree in number with the
 * target ("Where are the nuclei?", "Where is the normal tissue?").
 *
 * This file and annotate.c are compiled into the converters and preprocess
 * plugins as well; they need GLib and pathseg/rng.h only. The component
 * `annotator.template` (annotator_template.c) serves the same chains through
 * the public "annotator" capability (pathseg/annotator.h). */
#pragma once

#include <glib.h>
#include <pathseg/rng.h>

#include "describe.h"

typedef struct ps_annotation_input {
  const char *target;      /* "gland", "tumour", "nuclei", "necrosis", "lumen", "stroma", or a free phrase */
  const char *morphology;  /* "normal", "tubular", "cribriform", ... or NULL */
  const char *stain;       /* "he_classic", "ihc_dab", ... or NULL */
  const char *organ;       /* "colon" or NULL */
  int magnification;       /* 0 when unknown */
  const ps_descriptors *d;
} ps_annotation_input;

/* g_free both results. */
void ps_template_annotate(const ps_annotation_input *in, ps_rng *rng, char **query, char **reasoning);
/* The two halves of ps_template_annotate (g_free each). */
char *ps_template_query(const ps_annotation_input *in, ps_rng *rng);
char *ps_template_reasoning(const ps_annotation_input *in, ps_rng *rng);

/* How the template names a target in a sentence ("gland" -> "glands",
 * "tumour" -> "tumour", unknown phrases as given), and whether that noun
 * phrase is plural (verb and pronoun agreement). */
const char *ps_template_target_noun(const char *target);
gboolean ps_template_target_plural(const char *target);

/* The chain of a public annotator item (pathseg/annotator.h), as the
 * `annotator.template` component writes it: an RNG seeded with item->seed
 * draws the query (discarded; the stage drew the same one) and then the
 * chain, so the pair equals ps_template_annotate on that seed. g_free. */
char *ps_template_chain(const ps_annotator_item *item);
