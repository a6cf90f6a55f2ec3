/* test_config.c — ps_config built from YAML against a schema: type rules,
 * inclusive ranges at their boundaries, choices, lists, defaults, required
 * and optional keys, flattening, unknown-key suggestions, a plugin's broken
 * default, formatting, and that misused getters abort naming the key. */
#define _POSIX_C_SOURCE 200809L
#include "yaml_doc.h"

#include <sys/wait.h>
#include <unistd.h>

#include <ps_test.h>

static const ps_config_key schema[] = {
    {"depth", PS_TYPE_INT, "4", 1, 64, NULL, "blocks"},
    {"lr", PS_TYPE_FLOAT, "1e-4", 0, 1, NULL, "learning rate"},
    {"eps", PS_TYPE_FLOAT, "1e-8", PS_NO_RANGE, NULL, "epsilon"},
    {"flag", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL, "a switch"},
    {"mode", PS_TYPE_ENUM, "gae", PS_NO_RANGE, "gae|group|none", "estimator"},
    {"name", PS_TYPE_STRING, "\"\"", PS_NO_RANGE, NULL, "a name"},
    {"lora.r", PS_TYPE_INT, "0", 0, 256, NULL, "rank"},
    {"lora.targets", PS_TYPE_STRING_LIST, "[q, v]", PS_NO_RANGE, NULL, "targets"},
    {"sizes", PS_TYPE_INT_LIST, "[]", 1, 8, NULL, "sizes"},
    {"weights", PS_TYPE_FLOAT_LIST, "[0.5, 0.5]", PS_NO_RANGE, NULL, "weights"},
    {"big", PS_TYPE_INT, "0", PS_NO_RANGE, NULL, "no range"},
    {"opt", PS_TYPE_STRING, "~", PS_NO_RANGE, NULL, "optional, unset by default"},
    {"need", PS_TYPE_INT, NULL, PS_NO_RANGE, NULL, "required"},
    {0},
};

static ps_config *parse(const char *text, GError **err) {
  return ps_config_parse(schema, text, "cfg.yaml", err);
}

static void test_values_and_defaults(void) {
  GError *err = NULL;
  g_autoptr(ps_config) c =
      parse("need: 7\ndepth: 64\nlora: {r: 16}\nsizes: [1, 8]\nweights: [1, 2.5e-1, -.5]\nmode: group\n"
            "name: 2024-run\nflag: true\nlr: 1\nbig: -9223372036854775808\n",
            &err);
  PS_CHECK_OK(c != NULL, err);
  if (!c)
    return;
  PS_CHECK(ps_config_int(c, "need") == 7);
  PS_CHECK(ps_config_int(c, "depth") == 64);
  PS_CHECK(ps_config_int(c, "lora.r") == 16);
  PS_CHECK(ps_config_bool(c, "flag") == TRUE);
  PS_CHECK(strcmp(ps_config_string(c, "mode"), "group") == 0);
  PS_CHECK(strcmp(ps_config_string(c, "name"), "2024-run") == 0);
  PS_CHECK(ps_config_float(c, "lr") == 1.0);      /* an int literal is a float */
  PS_CHECK(ps_config_float(c, "depth") == 64.0);  /* float getter reads ints */
  PS_CHECK(ps_config_float(c, "eps") == 1e-8);    /* default */
  PS_CHECK(ps_config_int(c, "big") == INT64_MIN);
  size_t n = 0;
  const int64_t *sizes = ps_config_int_list(c, "sizes", &n);
  PS_CHECK(n == 2 && sizes[0] == 1 && sizes[1] == 8);
  const double *w = ps_config_float_list(c, "weights", &n);
  PS_CHECK(n == 3 && w[0] == 1.0 && w[1] == 0.25 && w[2] == -0.5);
  const char *const *t = ps_config_string_list(c, "lora.targets", &n);
  PS_CHECK(n == 2 && strcmp(t[0], "q") == 0 && strcmp(t[1], "v") == 0 && t[2] == NULL);
  PS_CHECK(ps_config_has(c, "depth") && !ps_config_has(c, "opt"));
  PS_CHECK(ps_config_string(c, "opt") == NULL);

  g_autofree char *text = ps_config_format(c);
  const char *want = "depth: 64\nlr: 1\neps: 1e-08\nflag: true\nmode: group\nname: 2024-run\nlora.r: 16\n"
                     "lora.targets: [q, v]\nsizes: [1, 8]\nweights: [1, 0.25, -0.5]\n"
                     "big: -9223372036854775808\nopt: ~\nneed: 7\n";
  PS_CHECK_MSG(strcmp(text, want) == 0, "got:\n%s", text);

  /* The dotted spelling is the same key; a null leaves the default. */
  g_autoptr(ps_config) d = parse("{need: 1, lora.r: 3, depth: ~}", &err);
  PS_CHECK_OK(d != NULL, err);
  PS_CHECK(d && ps_config_int(d, "lora.r") == 3 && ps_config_int(d, "depth") == 4);
  /* An empty text sets nothing: the required key is missing. */
  PS_CHECK_FAILS_WITH(parse("", &err), err, "cfg.yaml:1:1: config: missing required key 'need'");
}

typedef struct {
  const char *text;
  const char *needle;
} bad_case;

static void test_errors(void) {
  static const bad_case cases[] = {
      /* type rules */
      {"need: 1\ndepth: 2.0", "cfg.yaml:2:8: depth: expected an int, got the float '2.0'"},
      {"need: 1\ndepth: \"3\"", "cfg.yaml:2:8: depth: expected an int, got the string '3'"},
      {"need: 1\ndepth: 9223372036854775808", "depth: '9223372036854775808' is beyond the range of a 64-bit int"},
      {"need: 1\ndepth: [1]", "depth: expected an int, got a list"},
      {"need: 1\nflag: yes", "cfg.yaml:2:7: flag: expected a bool (true or false), got 'yes'"},
      {"need: 1\nflag: 1", "expected a bool (true or false), got '1'"},
      {"need: 1\nlr: abc", "lr: expected a float, got 'abc'"},
      {"need: 1\nlr: .nan", "lr: expected a float, got '.nan'"},
      {"need: 1\neps: 1e999", "eps: expected a float, got '1e999'"},
      {"need: 1\nmode: grop", "mode: expected one of gae|group|none, got 'grop' (did you mean 'group'?)"},
      {"need: 1\nname: {a: 1}", "name: expected a string, got a mapping"},
      {"need: 1\nsizes: 3", "sizes: expected a list of ints ([1, 2, ...]), got '3'"},
      {"need: 1\nsizes: [1, x]", "cfg.yaml:2:12: sizes: item 2: expected an int, got 'x'"},
      {"need: 1\nlora: {targets: [q, ~]}", "lora.targets: item 2: expected a string, got null"},
      /* inclusive ranges: 1..64, 0..1, list items 1..8 */
      {"need: 1\ndepth: 0", "depth: 0 is out of range [1, 64]"},
      {"need: 1\ndepth: 65", "depth: 65 is out of range [1, 64]"},
      {"need: 1\nlr: 1.0000001", "lr: 1.0000001 is out of range [0, 1]"},
      {"need: 1\nlr: -1e-9", "lr: -1e-9 is out of range [0, 1]"},
      {"need: 1\nsizes: [1, 9]", "sizes: item 2: 9 is out of range [1, 8]"},
      /* keys */
      {"need: 1\ndpeth: 3", "cfg.yaml:2:1: unknown key 'dpeth' (did you mean 'depth'?)"},
      {"need: 1\nlora: {rr: 3}", "cfg.yaml:2:8: unknown key 'lora.rr' (did you mean 'lora.r'?)"},
      {"need: 1\nlroa: {r: 3}", "unknown key 'lroa.r' (did you mean 'lora.r'?)"},
      {"need: 1\nlora: 5", "cfg.yaml:2:7: lora: expected a mapping with keys r, targets, got '5'"},
      {"need: 1\nzzzzzzzz: 3", "unknown key 'zzzzzzzz' (known keys: depth, lr, eps,"},
      {"need: 1\nlora: {r: 1}\nlora.r: 2", "cfg.yaml:3:1: lora.r is set twice (first at cfg.yaml:2:8)"},
      {"depth: 3", "cfg.yaml:1:1: config: missing required key 'need' (int: required)"},
      {"[1, 2]", "cfg.yaml:1:1: config: expected a mapping of config keys, got a list"},
      {"need: [", "cfg.yaml:2:1: malformed YAML"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    GError *err = NULL;
    ps_config *c = parse(cases[i].text, &err);
    PS_CHECK_MSG(!c && err && strstr(err->message, cases[i].needle), "case %zu: want \"%s\", got \"%s\"", i,
                 cases[i].needle, c ? "success" : err ? err->message : "no error");
    ps_config_free(c);
    g_clear_error(&err);
  }
  /* The boundaries themselves are inside the range. */
  GError *err = NULL;
  g_autoptr(ps_config) lo = parse("{need: 1, depth: 1, lr: 0, sizes: [1, 8]}", &err);
  PS_CHECK_OK(lo != NULL, err);
}

static void test_schema_bug(void) {
  static const ps_config_key broken[] = {
      {"x", PS_TYPE_INT, "[oops", PS_NO_RANGE, NULL, "unparsable default"},
      {0},
  };
  static const ps_config_key wrong_type[] = {
      {"y", PS_TYPE_INT, "1.5", PS_NO_RANGE, NULL, "float default for an int"},
      {0},
  };
  GError *err = NULL;
  PS_CHECK_FAILS_WITH(ps_config_from_node(broken, NULL, "components.b.with", "encoder.broken", NULL, NULL, &err),
                      err, "encoder.broken has a malformed default for 'x' (\"[oops\")");
  PS_CHECK_FAILS_WITH(ps_config_from_node(wrong_type, NULL, "components.b.with", "encoder.broken", NULL, NULL,
                                          &err),
                      err, "a bug in that plugin's schema");
  g_autoptr(ps_config) none = ps_config_from_node(NULL, NULL, "components.x.with", "x", NULL, NULL, &err);
  PS_CHECK_OK(none != NULL, err);
  g_autoptr(ps_ynode) some = ps_yaml_parse_string("{a: 1}", -1, "p.yaml", &err);
  PS_CHECK_FAILS_WITH(ps_config_from_node(NULL, some, "components.x.with", "x", NULL, NULL, &err), err,
                      "unknown key 'a' in components.x.with (this component takes no configuration)");
}

/* Runs `fn` in a child; TRUE when the child died of a signal and wrote
 * `needle` on stderr. */
static gboolean dies_with(void (*fn)(void), const char *needle) {
  int fds[2];
  if (pipe(fds) != 0)
    return FALSE;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    fn();
    _exit(0);
  }
  close(fds[1]);
  GString *out = g_string_new(NULL);
  char buf[512];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0)
    g_string_append_len(out, buf, got);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  gboolean ok = WIFSIGNALED(status) && strstr(out->str, needle) != NULL;
  if (!ok)
    fprintf(stderr, "child status %d, stderr: %s\n", status, out->str);
  g_string_free(out, TRUE);
  return ok;
}

static void misuse_unknown_key(void) {
  ps_config *c = ps_config_parse(schema, "need: 1", "x", NULL);
  (void)ps_config_int(c, "no_such_key");
}

static void misuse_wrong_type(void) {
  ps_config *c = ps_config_parse(schema, "need: 1", "x", NULL);
  (void)ps_config_bool(c, "depth");
}

static void test_type_names(void) {
  PS_CHECK(strcmp(ps_type_name(PS_TYPE_BOOL), "bool") == 0);
  PS_CHECK(strcmp(ps_type_name(PS_TYPE_FLOAT_LIST), "float list") == 0);
  PS_CHECK(strcmp(ps_type_name(PS_TYPE_ENUM), "enum") == 0);
}

int main(void) {
  test_values_and_defaults();
  test_errors();
  test_schema_bug();
  test_type_names();
  PS_CHECK(dies_with(misuse_unknown_key, "no_such_key"));
  PS_CHECK(dies_with(misuse_wrong_type, "'depth'"));
  return ps_test_finish();
}
