/* annotate.c — the template annotator: varied phrasing, location words and
 * the diagnostic vocabulary of each tissue class, with articles and verbs
 * that agree with the target noun (annotate.h). */
#include "annotate.h"

#include <string.h>

static const char *pick(ps_rng *rng, const char *const *options, size_t n) {
  return options[ps_rng_below(rng, n)];
}
#define PICK(rng, arr) pick((rng), (arr), G_N_ELEMENTS(arr))

typedef struct {
  const char *name;     /* target key */
  const char *noun;     /* how sentences name it */
  gboolean plural;      /* the noun is plural ("glands"), else singular or mass ("stroma") */
  const char *what;     /* a definition clue used in reasoning */
} target_words;

static const target_words targets[] = {
    {"gland", "glands", TRUE, "glandular structures lined by columnar epithelium around a lumen"},
    {"tumour", "tumour", FALSE, "malignant epithelium with crowded, atypical nuclei"},
    {"nuclei", "nuclei", TRUE, "round to oval haematoxylin-dense bodies"},
    {"necrosis", "necrotic areas", TRUE, "eosinophilic debris with fragmented nuclear dust"},
    {"lumen", "gland lumina", TRUE, "the pale central spaces enclosed by glandular epithelium"},
    {"stroma", "stroma", FALSE, "the fibrous supporting tissue between the epithelial structures"},
};

static const target_words *find_target(const char *name) {
  for (size_t i = 0; i < G_N_ELEMENTS(targets); i++)
    if (g_strcmp0(targets[i].name, name) == 0) return &targets[i];
  return NULL;
}

const char *ps_template_target_noun(const char *target) {
  const target_words *tw = find_target(target);
  return tw ? tw->noun : target ? target : "target";
}

/* A free phrase ("normal glands", "normal tissue", "high-grade
 * intraepithelial neoplasia") is plural when its last word is: an irregular
 * Latin plural, or a word ending in -s that is not a singular in -sis, -ss,
 * -us. Everything else (mass nouns, singular count nouns) takes "is". */
gboolean ps_template_target_plural(const char *target) {
  const target_words *tw = find_target(target);
  if (tw) return tw->plural;
  if (!target || !*target) return FALSE;
  const char *last = strrchr(target, ' ');
  last = last ? last + 1 : target;
  static const char *const latin_plurals[] = {"nuclei", "lumina", "villi", "foci", "mitoses", NULL};
  for (size_t i = 0; latin_plurals[i]; i++)
    if (g_ascii_strcasecmp(last, latin_plurals[i]) == 0) return TRUE;
  size_t n = strlen(last);
  if (n < 2 || g_ascii_tolower(last[n - 1]) != 's') return FALSE;
  return !(g_str_has_suffix(last, "sis") || g_str_has_suffix(last, "ss") || g_str_has_suffix(last, "us"));
}

/* "a" or "an" before `word` (by its first letter; good for our vocabulary). */
static const char *article(const char *word) {
  return word && strchr("aeiouAEIOU", word[0]) ? "an" : "a";
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

char *ps_template_query(const ps_annotation_input *in, ps_rng *rng) {
  const char *noun = ps_template_target_noun(in->target);
  /* Same number of forms in both lists: the RNG stream does not depend on
   * the noun's number. */
  static const char *const plural_forms[] = {
      "Segment the %s in this image.",
      "Where are the %s? Please outline them.",
      "Please find and segment all %s.",
      "Can you delineate the %s in this section?",
      "Identify the %s and give me a mask.",
      "Highlight all of the %s.",
  };
  static const char *const singular_forms[] = {
      "Segment the %s in this image.",
      "Where is the %s? Please outline it.",
      "Please find and segment the %s.",
      "Can you delineate the %s in this section?",
      "Identify the %s and give me a mask.",
      "Highlight every area of %s.",
  };
  G_STATIC_ASSERT(G_N_ELEMENTS(plural_forms) == G_N_ELEMENTS(singular_forms));
  gboolean plural = ps_template_target_plural(in->target);
  return g_strdup_printf(plural ? PICK(rng, plural_forms) : PICK(rng, singular_forms), noun);
}

char *ps_template_reasoning(const ps_annotation_input *in, ps_rng *rng) {
  const target_words *tw = find_target(in->target);
  const char *noun = ps_template_target_noun(in->target);
  const gboolean plural = ps_template_target_plural(in->target);
  const ps_descriptors *d = in->d;

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
    g_string_append_printf(r, PICK(rng, def), noun, tw->what);
  }
  if (d->area_fraction <= 0) {
    g_string_append_printf(r, " No %s %s visible here, so the mask is empty.", noun, plural ? "are" : "is");
  } else {
    static const char *const where[] = {
        " The involvement is %s, covering about %.0f%% of the field, mostly in the %s.",
        " %s distribution is %s (about %.0f%% of the tile), mostly in the %s.",
        " I see %s involvement, roughly %.0f%% of the area, concentrated in the %s."};
    size_t w = ps_rng_below(rng, G_N_ELEMENTS(where));
    if (w == 1)
      g_string_append_printf(r, where[w], plural ? "Their" : "Its", d->extent, 100 * d->area_fraction, d->location);
    else
      g_string_append_printf(r, where[w], d->extent, 100 * d->area_fraction, d->location);
    if (d->components > 1)
      g_string_append_printf(r, " There are %d separate regions with %s outlines.", d->components, d->shape);
    else if (d->components == 1)
      g_string_append_printf(r, " %s a single region with %s %s outline.", plural ? "They form" : "It forms",
                             article(d->shape), d->shape);
    g_string_append_printf(r, " The target is %s relative to its surroundings.", d->colour);
  }
  static const char *const closers[] = {" The segmentation is %s.", " So the mask of the %s is %s.",
                                        " Here is the result: %s."};
  size_t c = ps_rng_below(rng, G_N_ELEMENTS(closers));
  if (c == 1)
    g_string_append_printf(r, closers[c], noun, PS_SEG_TOKEN);
  else
    g_string_append_printf(r, closers[c], PS_SEG_TOKEN);
  return g_string_free(r, FALSE);
}

void ps_template_annotate(const ps_annotation_input *in, ps_rng *rng, char **query, char **reasoning) {
  *query = ps_template_query(in, rng);
  *reasoning = ps_template_reasoning(in, rng);
}

char *ps_template_chain(const ps_annotator_item *item) {
  ps_annotation_input in = {item->target, item->morphology, item->stain, item->organ, item->magnification,
                            item->descriptors};
  ps_rng rng;
  ps_rng_seed(&rng, item->seed);
  g_free(ps_template_query(&in, &rng));
  return ps_template_reasoning(&in, &rng);
}
