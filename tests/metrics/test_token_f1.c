/* test_token_f1.c — SQuAD v1.1 normalisation and token F1.  Expected
 * normalised strings come from the official normalize_answer run in Python 3
 * on these inputs; F1 values are worked by hand.  (The fixture comparison of
 * F1 over the three corpora is in test_bleu.c, which reads the same file.) */
#include <string.h>

#include "ps_test.h"
#include "text_metric.h"

static void test_normalize(void) {
  static const struct {
    const char *in, *want;
  } cases[] = {
      {"The Cat's hat!", "cats hat"},
      {"an apple a day", "apple day"},
      {"theatre the-end A-the", "theatre theend athe"},
      {"Caf\xc3\xa9 the \xc3\xa9the the_x the2 th\xc3\xa9",
       "caf\xc3\xa9 \xc3\xa9the thex the2 th\xc3\xa9"},
      {"a a a an the", ""},
      {"THE END.", "end"},
      {"x\xc2\xa0the\xe2\x80\x83"
       "an y",
       "x y"},
      {"", ""},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *got = ps_squad_normalize(cases[i].in);
    PS_CHECK_MSG(strcmp(got, cases[i].want) == 0, "normalize(\"%s\") = \"%s\", want \"%s\"",
                 cases[i].in, got, cases[i].want);
  }
}

static void test_f1(void) {
  /* pred {cat, sat}, gold {cat, sat, on, mat}: P 1, R 1/2, F1 2/3. */
  PS_CHECK_NEAR(ps_token_f1("The cat sat.", "the cat sat on the mat"), 2.0 / 3.0, 1e-12);
  /* Multisets: pred {x, x, x}, gold {x, y}: one common, P 1/3, R 1/2, F1 0.4. */
  PS_CHECK_NEAR(ps_token_f1("x x x", "x y"), 0.4, 1e-12);
  PS_CHECK_NEAR(ps_token_f1("x x y", "y x x"), 1.0, 1e-12);
  /* No overlap, empty prediction, empty reference, articles only: 0. */
  PS_CHECK(ps_token_f1("dog", "cat") == 0.0);
  PS_CHECK(ps_token_f1("", "cat") == 0.0);
  PS_CHECK(ps_token_f1("cat", "") == 0.0);
  PS_CHECK(ps_token_f1("the a", "an") == 0.0);
  /* Case and punctuation do not matter. */
  PS_CHECK(ps_token_f1("CAT!", "cat") == 1.0);
  /* Max over references; NULL ones skipped. */
  const char *refs[3] = {"dog", NULL, "black cat"};
  PS_CHECK_NEAR(ps_token_f1_max("cat", refs, 3), 2.0 / 3.0, 1e-12);
  PS_CHECK(ps_token_f1_max("cat", refs, 0) == 0.0);
  PS_CHECK(ps_exact_match("The  Cat!", "cat"));
  /* Invalid UTF-8 does not crash and still matches itself. */
  PS_CHECK(ps_token_f1("\xff the \xc3", "\xff \xc3") == 1.0);
  PS_CHECK(!ps_exact_match("cats", "cat"));
}

int main(void) {
  test_normalize();
  test_f1();
  return ps_test_finish();
}
