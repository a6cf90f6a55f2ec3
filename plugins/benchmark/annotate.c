/* annotate.c — the template annotator: varied phrasing, location words and
 * the diagnostic vocabulary of each tissue class (annotate.h). */
#include "annotate.h"

#include <string.h>

static const char *pick(ps_rng *rng, const char *const *options, size_t n) {
  return options[ps_rng_below(rng, n)];
}
#define PICK(rng, arr) pick((rng), (arr), G_N_ELEMENTS(arr))

typedef struct {
  const char *name;     /* target key */
  const char *plural;   /* how the query names it */
  const char *what;     /* a definition clue used in reasoning */
} target_words;

static const target_words targets[] = {
    {"gland", "glands", "glandular structures lined by columnar epithelium around a lumen"},
    {"tumour", "tumour region", "malignant epithelium with crowded, atypical nuclei"},
    {"nuclei", "nuclei", "round to oval haematoxylin-dense bodies"},
    {"necrosis", "necrotic areas", "eosinophilic debris with fragmented nuclear dust"},
    {"lumen", "gland lumina", "the pale central spaces enclosed by glandular epithelium"},
    {"stroma", "stroma", "the fibrous supporting tissue between the epithelial structures"},
};

static const target_words *find_target(const char *name) {
  for (size_t i = 0; i < G_N_ELEMENTS(targets); i++)
    if (g_strcmp0(targets[i].name, name) == 0) return &targets[i];
  return NULL;
}

static const char *morphology_sentence(const char *m, ps_rng *rng) {
  if (!m) return NULL;
  if (strcmp(m, "normal") == 0) {
    static const char *const s[] = {
        "The crypts are regular and evenly spaced, with basally placed nuclei and goblet cells.",
        "Architecture is preserved: test-tube crypts with orderly basal nuclei.",
        "The mucosa looks benign, with uniform crypts and mucin-filled goblet cells."};
    return PICK(rng, s);
  }
  if (g_str_has_prefix(m, "tubular")) {
    static const char *const s[] = {
        "Glands are crowded, irregular and partly fused, lined by stratified atypical nuclei.",
        "The architecture is distorted by back-to-back irregular glands, consistent with adenocarcinoma.",
        "Angulated, fused tubules with hyperchromatic pleomorphic nuclei suggest a tubular adenocarcinoma."};
    return PICK(rng, s);
  }
  if (strcmp(m, "cribriform") == 0) {
    static const char *const s[] = {
        "Large epithelial nests are perforated by punched-out lumina in a cribriform pattern.",
        "A sieve-like cribriform architecture with multiple back-to-back lumina is present."};
    return PICK(rng, s);
  }
  if (strcmp(m, "mucinous") == 0) {
    static const char *const s[] = {
        "Pools of extracellular mucin contain floating strips of malignant epithelium.",
        "Abundant pale mucin lakes surround detached tumour glands, a mucinous pattern."};
    return PICK(rng, s);
  }
  if (strcmp(m, "signet_ring") == 0 || strcmp(m, "signet-ring") == 0) {
    static const char *const s[] = {
        "Discohesive cells with intracytoplasmic mucin push their nuclei aside, like signet rings.",
        "Single infiltrating cells with crescent nuclei and clear vacuoles suggest signet-ring morphology."};
    return PICK(rng, s);
  }
  if (strcmp(m, "solid") == 0) {
    static const char *const s[] = {
        "Sheets and solid nests of tumour cells without gland formation are seen.",
        "The tumour grows in solid nests with little lumen formation."};
    return PICK(rng, s);
  }
  return NULL;
}

static const char *stain_phrase(const char *stain) {
  if (!stain) return "stained";
  if (g_str_has_prefix(stain, "ihc")) return "immunohistochemically stained (DAB with haematoxylin counterstain)";
  if (g_str_has_prefix(stain, "he")) return "H&E-stained";
  return "stained";
}

void ps_template_annotate(const ps_annotation_input *in, ps_rng *rng, char **query, char **reasoning) {
  const target_words *tw = find_target(in->target);
  const char *plural = tw ? tw->plural : in->target;
  const ps_descriptors *d = in->d;

  static const char *const q_forms[] = {
      "Segment the %s in this image.",
      "Where are the %s? Please outline them.",
      "Please find and segment all %s.",
      "Can you delineate the %s in this section?",
      "Identify the %s and give me a mask.",
      "Highlight every region of %s.",
  };
  *query = g_strdup_printf(pick(rng, q_forms, G_N_ELEMENTS(q_forms)), plural);

  GString *r = g_string_new(NULL);
  static const char *const openers[] = {
      "This is %s tissue%s.", "The image shows %s tissue%s.", "We are looking at %s tissue%s."};
  g_autofree char *mag = in->magnification ? g_strdup_printf(" at about %dx", in->magnification) : g_strdup("");
  g_autofree char *stain_organ = g_strdup_printf("%s %s", stain_phrase(in->stain), in->organ ? in->organ : "colonic");
  g_string_append_printf(r, PICK(rng, openers), stain_organ, mag);
  const char *ms = morphology_sentence(in->morphology, rng);
  if (ms) g_string_append_printf(r, " %s", ms);
  if (tw) {
    static const char *const def[] = {" The %s: %s.", " I look for %s: %s.", " Key feature of the %s: %s."};
    g_string_append_printf(r, PICK(rng, def), plural, tw->what);
  }
  if (d->area_fraction <= 0) {
    g_string_append_printf(r, " No %s are visible here, so the mask is empty.", plural);
  } else {
    static const char *const where[] = {
        " The involvement is %s, covering about %.0f%% of the field, centred in the %s.",
        " Their extent is %s (about %.0f%% of the tile), mostly in the %s.",
        " I see %s involvement, roughly %.0f%% of the area, concentrated in the %s."};
    g_string_append_printf(r, PICK(rng, where), d->extent, 100 * d->area_fraction, d->location);
    if (d->components > 1)
      g_string_append_printf(r, " There are %d separate regions with %s outlines.", d->components, d->shape);
    else if (d->components == 1)
      g_string_append_printf(r, " It forms a single region with a %s outline.", d->shape);
    g_string_append_printf(r, " The target is %s relative to its surroundings.", d->colour);
  }
  static const char *const closers[] = {" The segmentation is %s.", " So the mask of the %s is %s.",
                                        " Here is the result: %s."};
  size_t c = ps_rng_below(rng, G_N_ELEMENTS(closers));
  if (c == 1)
    g_string_append_printf(r, closers[c], plural, PS_SEG_TOKEN);
  else
    g_string_append_printf(r, closers[c], PS_SEG_TOKEN);
  *reasoning = g_string_free(r, FALSE);
}
