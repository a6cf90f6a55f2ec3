/* test_bleu.c — sacreBLEU-compatible BLEU against sacreBLEU's own outputs
 * (tests/fixtures/bleu.safetensors: corpus scores, statistics, precisions,
 * sentence scores with effective order), the 13a tokenizer against outputs
 * of sacreBLEU's regexes run in Python, and the edge cases: empty
 * hypothesis, no match at all (BLEU 0), closest reference length ties,
 * clipping by the max over references, smoothing methods, effective order. */
#include <string.h>

#include "fixture_util.h"
#include "text_metric.h"

typedef struct corpus {
  const char **hyps, **refs; /* refs[r * n + i] */
  size_t n, n_refs;
} corpus;

/* The fixture's `corpora` metadata; strings borrowed from the parser. */
static corpus *load_corpora(ps_safetensors *st, JsonParser *p, size_t *count) {
  const char *text = ps_safetensors_metadata(st, "corpora");
  if (!text || !json_parser_load_from_data(p, text, -1, NULL)) {
    fprintf(stderr, "bleu fixture: no readable 'corpora' metadata\n");
    exit(1);
  }
  JsonArray *arr = json_node_get_array(json_parser_get_root(p));
  *count = json_array_get_length(arr);
  corpus *cs = g_new0(corpus, *count);
  for (size_t c = 0; c < *count; c++) {
    JsonObject *o = json_array_get_object_element(arr, (guint)c);
    JsonArray *h = json_object_get_array_member(o, "hyps");
    JsonArray *r = json_object_get_array_member(o, "refs");
    cs[c].n = json_array_get_length(h);
    cs[c].n_refs = json_array_get_length(r);
    cs[c].hyps = g_new0(const char *, cs[c].n);
    cs[c].refs = g_new0(const char *, cs[c].n *cs[c].n_refs);
    for (size_t i = 0; i < cs[c].n; i++) cs[c].hyps[i] = json_array_get_string_element(h, (guint)i);
    for (size_t k = 0; k < cs[c].n_refs; k++) {
      JsonArray *s = json_array_get_array_element(r, (guint)k);
      for (size_t i = 0; i < cs[c].n; i++)
        cs[c].refs[k * cs[c].n + i] = json_array_get_string_element(s, (guint)i);
    }
  }
  return cs;
}

static void test_fixture(void) {
  g_autoptr(ps_safetensors) st = fx_open("bleu.safetensors");
  fx_tolerance tol = fx_tol(st);
  g_autoptr(JsonParser) parser = json_parser_new();
  size_t C = 0;
  corpus *cs = load_corpora(st, parser, &C);
  PS_CHECK(C == 3);
  const size_t n = cs[0].n;
  ps_bleu_options opt, sent;
  ps_bleu_options_default(&opt);
  sent = opt;
  sent.effective_order = TRUE;

  g_autofree float *bleu = g_new0(float, C), *bp = g_new0(float, C), *prec = g_new0(float, C * 4);
  g_autofree float *sb = g_new0(float, C *n), *f1 = g_new0(float, C *n);
  g_autofree int64_t *w_counts = fx_i64(st, "output.counts", NULL);
  g_autofree int64_t *w_totals = fx_i64(st, "output.totals", NULL);
  g_autofree int64_t *w_sys = fx_i64(st, "output.sys_len", NULL);
  g_autofree int64_t *w_ref = fx_i64(st, "output.ref_len", NULL);
  for (size_t c = 0; c < C; c++) {
    PS_CHECK(cs[c].n == n);
    ps_bleu_score s;
    GError *error = NULL;
    PS_CHECK_OK(ps_bleu_corpus(&opt, cs[c].hyps, n, cs[c].refs, cs[c].n_refs, &s, &error), error);
    bleu[c] = (float)s.score;
    bp[c] = (float)s.bp;
    PS_CHECK_MSG(s.stats.sys_len == w_sys[c], "corpus %zu sys_len %ld want %ld", c,
                 (long)s.stats.sys_len, (long)w_sys[c]);
    PS_CHECK_MSG(s.stats.ref_len == w_ref[c], "corpus %zu ref_len %ld want %ld", c,
                 (long)s.stats.ref_len, (long)w_ref[c]);
    for (int k = 0; k < 4; k++) {
      prec[c * 4 + k] = (float)s.precisions[k];
      PS_CHECK_MSG(s.stats.correct[k] == w_counts[c * 4 + k], "corpus %zu counts[%d] %ld want %ld",
                   c, k, (long)s.stats.correct[k], (long)w_counts[c * 4 + k]);
      PS_CHECK_MSG(s.stats.total[k] == w_totals[c * 4 + k], "corpus %zu totals[%d] %ld want %ld", c,
                   k, (long)s.stats.total[k], (long)w_totals[c * 4 + k]);
    }
    const char **seg = g_new0(const char *, cs[c].n_refs);
    for (size_t i = 0; i < n; i++) {
      for (size_t r = 0; r < cs[c].n_refs; r++) seg[r] = cs[c].refs[r * n + i];
      ps_bleu_score ss;
      PS_CHECK_OK(ps_bleu_sentence(&sent, cs[c].hyps[i], seg, cs[c].n_refs, &ss, &error), error);
      sb[c * n + i] = (float)ss.score;
      f1[c * n + i] = (float)ps_token_f1_max(cs[c].hyps[i], seg, cs[c].n_refs);
    }
    g_free(seg);
  }
  fx_compare(st, "output.bleu", bleu, C, tol);
  fx_compare(st, "output.bp", bp, C, tol);
  fx_compare(st, "output.precisions", prec, C * 4, tol);
  fx_compare(st, "output.sentence_bleu", sb, C * n, tol);
  fx_compare(st, "output.f1", f1, C * n, tol);
  for (size_t c = 0; c < C; c++) {
    g_free(cs[c].hyps);
    g_free(cs[c].refs);
  }
  g_free(cs);
}

/* Expected strings: sacreBLEU's TokenizerRegexp regexes and Tokenizer13a
 * replacements, run in Python 3 on these inputs. */
static void test_tokenizer(void) {
  static const struct {
    const char *in, *want;
  } cases[] = {
      {"Hello, world.", "Hello , world ."},
      {"The tumour is 3.5 cm and 1,200 cells.", "The tumour is 3.5 cm and 1,200 cells ."},
      {"&quot;hot spot&quot; &amp;quot; &lt;b&gt;", "\" hot spot \" & quot ; < b >"},
      {"Ki-67 3-5 (3+) don't", "Ki-67 3 - 5 ( 3 + ) don't"},
      {"x.,y a..b 1.,2 .5 5. ,3", "x . , y a . . b 1 . , 2 . 5 5 . , 3"},
      {"caf\xc3\xa9. na\xc3\xafve,x 1\xe2\x80\x93"
       "2 \xc3\xbc-3",
       "caf\xc3\xa9 . na\xc3\xafve , x 1\xe2\x80\x93"
       "2 \xc3\xbc-3"},
      {"<skipped>co-\noperate\nline\ttab", "cooperate line tab"},
      {"{a|b}~[c\\d]^_`e!#$%f*g=h?i@j/k;l:m",
       "{ a | b } ~ [ c \\ d ] ^ _ ` e ! # $ % f * g = h ? i @ j / k ; l : m"},
      {"", ""},
      {"  ", ""},
      {". , .", ". , ."},
      {"1.2.3 1,2,3 a1.b2,c3", "1.2.3 1,2,3 a1 . b2 , c3"},
      {"\xe2\x82\xac"
       "5.00 \xc2\xbd.x",
       "\xe2\x82\xac"
       "5.00 \xc2\xbd . x"},
  };
  /* Invalid UTF-8 is carried through byte for byte, never read past. */
  g_autofree char *bad = ps_bleu_tokenize_13a("\xff\xfe.x \xc3");
  PS_CHECK(strcmp(bad, "\xff\xfe . x \xc3") == 0);
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *got = ps_bleu_tokenize_13a(cases[i].in);
    PS_CHECK_MSG(strcmp(got, cases[i].want) == 0, "13a(\"%s\") = \"%s\", want \"%s\"", cases[i].in,
                 got, cases[i].want);
  }
}

static double bleu1(const ps_bleu_options *opt, const char *hyp, const char *const *refs,
                    size_t n_refs, ps_bleu_score *out) {
  GError *error = NULL;
  PS_CHECK_OK(ps_bleu_sentence(opt, hyp, refs, n_refs, out, &error), error);
  return out->score;
}

static void test_edges(void) {
  ps_bleu_options opt;
  ps_bleu_options_default(&opt);
  ps_bleu_score s;
  const char *ref[1] = {"the cat sat on the mat"};

  /* Empty hypothesis: no n-grams, bp 0, BLEU 0. */
  PS_CHECK(bleu1(&opt, "", ref, 1, &s) == 0.0);
  PS_CHECK(s.bp == 0.0 && s.stats.sys_len == 0 && s.stats.ref_len == 6 && s.stats.total[0] == 0);
  /* No match at all: BLEU 0 and precisions 0 (sacreBLEU #141), bp still set. */
  PS_CHECK(bleu1(&opt, "dogs bark loudly here now tonight", ref, 1, &s) == 0.0);
  for (int k = 0; k < 4; k++) PS_CHECK(s.precisions[k] == 0.0);
  PS_CHECK(s.bp == 1.0 && s.stats.total[0] == 6);
  /* Identity: 100. */
  PS_CHECK_NEAR(bleu1(&opt, "the cat sat on the mat", ref, 1, &s), 100.0, 1e-9);

  /* Exp smoothing by hand: correct [3,2,1,0], totals [5,4,3,2]; the first
   * zero-match order gets 100 / (2 * 2). */
  const char *r2[1] = {"a b c x y"};
  bleu1(&opt, "a b c d e", r2, 1, &s);
  PS_CHECK(s.stats.correct[0] == 3 && s.stats.correct[3] == 0 && s.stats.total[3] == 2);
  PS_CHECK_NEAR(s.precisions[3], 25.0, 1e-12);
  const double want = exp((log(60.0) + log(50.0) + log(100.0 / 3.0) + log(25.0)) / 4.0);
  PS_CHECK_NEAR(s.score, want, 1e-9);
  /* Floor smoothing: 100 * 0.1 / total. */
  ps_bleu_options fl = opt;
  fl.smooth = PS_BLEU_SMOOTH_FLOOR;
  bleu1(&fl, "a b c d e", r2, 1, &s);
  PS_CHECK_NEAR(s.precisions[3], 100.0 * 0.1 / 2.0, 1e-12);
  /* add-k: +1 on correct and total for n > 1. */
  ps_bleu_options ak = opt;
  ak.smooth = PS_BLEU_SMOOTH_ADD_K;
  bleu1(&ak, "a b c d e", r2, 1, &s);
  PS_CHECK_NEAR(s.precisions[0], 60.0, 1e-12);
  PS_CHECK_NEAR(s.precisions[3], 100.0 * 1.0 / 3.0, 1e-12);
  /* none: a zero-match order makes the score ~0 (my_log(0) = -9999999999). */
  ps_bleu_options no = opt;
  no.smooth = PS_BLEU_SMOOTH_NONE;
  PS_CHECK(bleu1(&no, "a b c d e", r2, 1, &s) == 0.0);

  /* Effective order: a two-token exact match is 100 with it, 0 without
   * (orders 3-4 have no n-grams: precision 0, log -> -9999999999). */
  const char *r3[1] = {"a b"};
  ps_bleu_options eff = opt;
  eff.effective_order = TRUE;
  PS_CHECK_NEAR(bleu1(&eff, "a b", r3, 1, &s), 100.0, 1e-9);
  PS_CHECK(bleu1(&opt, "a b", r3, 1, &s) < 1e-100);

  /* Closest reference length, ties to the shorter: hyp 5, refs 4 and 6. */
  const char *r4[2] = {"a b c d e f", "a b c d"};
  bleu1(&opt, "a b c d e", r4, 2, &s);
  PS_CHECK(s.stats.ref_len == 4);
  const char *r5[2] = {"a b c", "a b c d e f g"};
  bleu1(&opt, "a b c d e", r5, 2, &s); /* distances 2 and 2: the shorter */
  PS_CHECK(s.stats.ref_len == 3);
  /* Clipping by the max count over references, not the sum. */
  const char *r6[2] = {"the cat", "the the dog"};
  bleu1(&opt, "the the the", r6, 2, &s);
  PS_CHECK(s.stats.correct[0] == 2 && s.stats.total[0] == 3);
  /* Empty / NULL references are skipped; none left is an error. */
  const char *r7[3] = {"", NULL, "the cat"};
  bleu1(&opt, "the cat", r7, 3, &s);
  PS_CHECK(s.stats.ref_len == 2);
  const char *r8[2] = {"", NULL};
  GError *error = NULL;
  PS_CHECK_FAILS_WITH(ps_bleu_sentence(&opt, "x", r8, 2, &s, &error), error, "no reference");
  /* rstrip and lowercase. */
  ps_bleu_options lc = opt;
  lc.lowercase = TRUE;
  const char *r9[1] = {"The Cat"};
  PS_CHECK_NEAR(bleu1(&lc, "the cat \t\n", r9, 1, &s), bleu1(&opt, "The Cat", r9, 1, &s), 1e-12);
  PS_CHECK(bleu1(&opt, "the cat", r9, 1, &s) == 0.0);
  /* Bad order. */
  ps_bleu_options bad = opt;
  bad.max_order = 0;
  PS_CHECK_FAILS_WITH(ps_bleu_sentence(&bad, "x", ref, 1, &s, &error), error, "max_ngram_order");

  /* Corpus statistics are sums; the corpus score is not the mean of
   * sentence scores. */
  const char *hyps[2] = {"the cat sat on the mat", "a b"};
  const char *refs[2] = {"the cat sat on the mat", "a c"};
  PS_CHECK_OK(ps_bleu_corpus(&opt, hyps, 2, refs, 1, &s, &error), error);
  PS_CHECK(s.stats.sys_len == 8 && s.stats.correct[0] == 7 && s.stats.total[0] == 8);
  PS_CHECK(s.stats.total[3] == 3 && s.stats.correct[3] == 3);
}

int main(void) {
  test_fixture();
  test_tokenizer();
  test_edges();
  return ps_test_finish();
}
