/* test_annotate_grammar.c — the template annotator's sentences: verbs,
 * pronouns and articles agree with the target ("Where are the nuclei?",
 * "Where is the normal tissue?", "an irregular outline"), every sentence
 * starts with a capital and ends with punctuation, the chain ends with one
 * <SEG>, the query and chain are the two halves of ps_template_annotate,
 * and annotator.template's chain equals the template on the item's seed. */
#include <pathseg/rng.h>

#include "annotate.h"
#include "ps_test.h"

/* Targets of the synthetic generator and of the converters, with the number
 * an English reader expects. */
static const struct {
  const char *target;
  gboolean plural;
} targets[] = {
    {"gland", TRUE},
    {"nuclei", TRUE},
    {"necrosis", TRUE}, /* named "necrotic areas" */
    {"lumen", TRUE},    /* named "gland lumina" */
    {"tumour", FALSE},
    {"stroma", FALSE},
    {"normal tissue", FALSE},
    {"normal glands", TRUE},
    {"adenocarcinoma", FALSE},
    {"high-grade intraepithelial neoplasia", FALSE},
    {"polyp", FALSE},
    {"serrated adenoma", FALSE},
    {"metastasis", FALSE},
    {"tumour cells", TRUE},
    {"mitoses", TRUE},
};

static ps_descriptors descriptors(int variant) {
  ps_descriptors d = {0};
  static const char *const shapes[] = {"smooth", "slightly irregular", "irregular", "highly irregular"};
  static const char *const extents[] = {"focal", "patchy", "extensive", "diffuse"};
  d.area_fraction = variant == 0 ? 0 : 0.02 + 0.2 * (variant % 4);
  d.components = variant == 0 ? 0 : 1 + variant % 3;
  d.location = variant == 0 ? "nowhere" : "upper left";
  d.extent = variant == 0 ? "absent" : extents[variant % 4];
  d.colour = variant == 0 ? "none" : "eosinophilic (pink)";
  d.shape = variant == 0 ? "none" : shapes[variant % 4];
  return d;
}

/* Every sentence starts upper-case and ends with . ? or !, no double spaces. */
static gboolean well_formed(const char *text) {
  if (strstr(text, "  ") || !g_ascii_isupper(text[0])) return FALSE;
  size_t n = strlen(text);
  if (!strchr(".?!", text[n - 1])) return FALSE;
  for (const char *p = text; *p; p++)
    if (strchr(".?!", *p) && p[1] == ' ' && !g_ascii_isupper(p[2]) && p[2] != '<') return FALSE;
  return TRUE;
}

/* " a " before a vowel or " an " before a consonant. */
static gboolean articles_ok(const char *text) {
  for (const char *p = strstr(text, " a "); p; p = strstr(p + 1, " a "))
    if (strchr("aeiou", p[3])) return FALSE;
  for (const char *p = strstr(text, " an "); p; p = strstr(p + 1, " an "))
    if (!strchr("aeiou", p[4])) return FALSE;
  return TRUE;
}

static void test_number(void) {
  for (size_t t = 0; t < G_N_ELEMENTS(targets); t++)
    PS_CHECK_MSG(ps_template_target_plural(targets[t].target) == targets[t].plural, "%s", targets[t].target);
  PS_CHECK(strcmp(ps_template_target_noun("gland"), "glands") == 0);
  PS_CHECK(strcmp(ps_template_target_noun("normal tissue"), "normal tissue") == 0);
}

static void test_sentences(void) {
  int where_is = 0, where_are = 0, empty_is = 0, empty_are = 0, single = 0;
  for (size_t t = 0; t < G_N_ELEMENTS(targets); t++) {
    const char *noun = ps_template_target_noun(targets[t].target);
    const gboolean plural = targets[t].plural;
    g_autofree char *q_are = g_strdup_printf("Where are the %s?", noun);
    g_autofree char *q_is = g_strdup_printf("Where is the %s?", noun);
    g_autofree char *no_are = g_strdup_printf("No %s are visible", noun);
    g_autofree char *no_is = g_strdup_printf("No %s is visible", noun);
    g_autofree char *all = g_strdup_printf("segment all %s.", noun);
    for (int variant = 0; variant < 5; variant++) {
      ps_descriptors d = descriptors(variant);
      ps_annotation_input in = {targets[t].target, variant % 2 ? "tubular" : "normal", "he_classic", "colonic",
                                20, &d};
      for (uint64_t seed = 0; seed < 40; seed++) {
        ps_rng rng;
        ps_rng_seed(&rng, seed * 7919 + t);
        g_autofree char *q = NULL, *r = NULL;
        ps_template_annotate(&in, &rng, &q, &r);
        PS_CHECK_MSG(well_formed(q) && articles_ok(q), "query: %s", q);
        PS_CHECK_MSG(well_formed(r) && articles_ok(r), "chain: %s", r);
        /* Agreement in both directions. */
        PS_CHECK_MSG(plural ? !strstr(q, q_is) : !strstr(q, q_are), "query: %s", q);
        PS_CHECK_MSG(plural || !strstr(q, all), "query: %s", q);
        PS_CHECK_MSG(plural ? !strstr(q, "outline it.") : !strstr(q, "outline them."), "query: %s", q);
        PS_CHECK_MSG(plural ? !strstr(r, no_is) : !strstr(r, no_are), "chain: %s", r);
        PS_CHECK_MSG(plural ? !strstr(r, " Its distribution") && !strstr(r, "It forms")
                            : !strstr(r, " Their distribution") && !strstr(r, "They form"),
                     "chain: %s", r);
        where_is += strstr(q, q_is) != NULL;
        where_are += strstr(q, q_are) != NULL;
        empty_is += strstr(r, no_is) != NULL;
        empty_are += strstr(r, no_are) != NULL;
        single += strstr(r, "single region with") != NULL;
        /* One <SEG>, in the last sentence, followed by its full stop only. */
        const char *seg = strstr(r, "<SEG>");
        PS_CHECK_MSG(seg && !strstr(seg + 1, "<SEG>") && strcmp(seg, "<SEG>.") == 0, "chain: %s", r);
      }
    }
  }
  /* The forms under test did occur. */
  PS_CHECK(where_is > 0 && where_are > 0 && empty_is > 0 && empty_are > 0 && single > 0);

  /* The examples of the issue, exactly. */
  ps_descriptors d = descriptors(0);
  ps_annotation_input in = {"normal tissue", NULL, "he", "lung", 0, &d};
  gboolean seen = FALSE;
  for (uint64_t seed = 0; seed < 64 && !seen; seed++) {
    ps_rng rng;
    ps_rng_seed(&rng, seed);
    g_autofree char *q = ps_template_query(&in, &rng);
    seen = strcmp(q, "Where is the normal tissue? Please outline it.") == 0;
  }
  PS_CHECK(seen);
  ps_descriptors irregular = descriptors(2); /* one piece, "irregular" */
  irregular.components = 1;
  ps_annotation_input in2 = {"tumour", NULL, "he", "colonic", 20, &irregular};
  for (uint64_t seed = 0; seed < 16; seed++) {
    ps_rng rng;
    ps_rng_seed(&rng, seed);
    g_autofree char *r = ps_template_reasoning(&in2, &rng);
    PS_CHECK_MSG(strstr(r, "It forms a single region with an irregular outline."), "%s", r);
  }
}

/* ps_template_annotate is query then chain on one stream; ps_template_chain
 * (annotator.template) reproduces the chain from the item's seed. */
static void test_halves(void) {
  ps_descriptors d = descriptors(3);
  ps_annotation_input in = {"gland", "cribriform", "ihc_dab", "colonic", 10, &d};
  for (uint64_t seed = 1; seed < 20; seed++) {
    ps_rng a, b;
    ps_rng_seed(&a, seed);
    ps_rng_seed(&b, seed);
    g_autofree char *q = NULL, *r = NULL;
    ps_template_annotate(&in, &a, &q, &r);
    g_autofree char *q2 = ps_template_query(&in, &b);
    g_autofree char *r2 = ps_template_reasoning(&in, &b);
    PS_CHECK(strcmp(q, q2) == 0 && strcmp(r, r2) == 0);
    ps_annotator_item item = {sizeof item, "x.png", q, "gland", TRUE, "cribriform", "ihc_dab", "colonic",
                              "synthetic", 10, 64, 64, &d, seed};
    g_autofree char *chain = ps_template_chain(&item);
    PS_CHECK(strcmp(chain, r) == 0);
    PS_CHECK(strstr(r, "immunohistochemically stained") && strstr(r, "at about 10x"));
  }
}

int main(void) {
  test_number();
  test_sentences();
  test_halves();
  return ps_test_finish();
}
