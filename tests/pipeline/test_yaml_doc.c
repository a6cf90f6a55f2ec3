/* test_yaml_doc.c — the YAML node tree: positions, quoting, caps (depth,
 * aliases, nodes, bytes) at their exact boundaries, duplicate keys, deep
 * merge, dotted set, emit/re-parse round trip, edit distance. */
#include "yaml_doc.h"

#include <ps_test.h>

/* Structural equality: kind, scalar text and quoting, keys, order. */
static gboolean same_tree(const ps_ynode *a, const ps_ynode *b) {
  if (a->kind != b->kind)
    return FALSE;
  if (a->kind == PS_YNODE_SCALAR) {
    /* Null may be spelt "" or "~"; anything else must keep text and quoting. */
    if (ps_ynode_is_null(a) || ps_ynode_is_null(b))
      return ps_ynode_is_null(a) && ps_ynode_is_null(b);
    return strcmp(a->value, b->value) == 0 && a->quoted == b->quoted;
  }
  if (ps_ynode_size(a) != ps_ynode_size(b))
    return FALSE;
  for (size_t i = 0; i < ps_ynode_size(a); i++) {
    if (a->kind == PS_YNODE_MAPPING &&
        strcmp(ps_ynode_key_at(a, i)->value, ps_ynode_key_at(b, i)->value) != 0)
      return FALSE;
    if (!same_tree(ps_ynode_value_at(a, i), ps_ynode_value_at(b, i)))
      return FALSE;
  }
  return TRUE;
}

static char *nested(int depth) {
  GString *s = g_string_new(NULL);
  for (int i = 0; i < depth; i++)
    g_string_append_c(s, '[');
  for (int i = 0; i < depth; i++)
    g_string_append_c(s, ']');
  return g_string_free(s, FALSE);
}

static void test_positions_and_quoting(void) {
  GError *err = NULL;
  const char *text = "a: 1\nb:\n  c: \"3\"\n  d: ~\n  e: 'x'\n  f:\n  g: |\n    block\n";
  g_autoptr(ps_ynode) root = ps_yaml_parse_string(text, -1, "t.yaml", &err);
  PS_CHECK_OK(root != NULL, err);
  if (!root)
    return;
  PS_CHECK(root->kind == PS_YNODE_MAPPING && ps_ynode_size(root) == 2);
  const ps_ynode *b = ps_ynode_get(root, "b");
  PS_CHECK(b && b->kind == PS_YNODE_MAPPING && b->line == 3 && b->col == 3);
  const ps_ynode *c = ps_ynode_get(b, "c");
  PS_CHECK(c && c->quoted && strcmp(c->value, "3") == 0 && c->line == 3 && c->col == 6);
  PS_CHECK(ps_ynode_is_null(ps_ynode_get(b, "d")));
  PS_CHECK(!ps_ynode_is_null(ps_ynode_get(b, "e")) && ps_ynode_get(b, "e")->quoted);
  PS_CHECK(ps_ynode_is_null(ps_ynode_get(b, "f"))); /* empty value */
  PS_CHECK(ps_ynode_get(b, "g")->quoted && strcmp(ps_ynode_get(b, "g")->value, "block\n") == 0);
  g_autofree char *where = ps_ynode_where(ps_ynode_key_at(b, 1));
  PS_CHECK_MSG(strcmp(where, "t.yaml:4:3") == 0, "%s", where);
  PS_CHECK(ps_ynode_count(root) == 1 + 2 + 1 /* a's value */ + 1 + 2 * 5);

  g_autoptr(ps_ynode) empty = ps_yaml_parse_string("# nothing\n", -1, "e.yaml", &err);
  PS_CHECK_OK(empty && ps_ynode_is_null(empty), err);
  g_autoptr(ps_ynode) str_tag = ps_yaml_parse_string("!!str 12", -1, "s", &err);
  PS_CHECK_OK(str_tag && str_tag->quoted, err);
}

static void test_parse_errors(void) {
  GError *err = NULL;
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("a: 1\nb: 2\na: 3\n", -1, "d.yaml", &err), err,
                      "d.yaml:3:1: duplicate key 'a' in one mapping (first at line 1, column 1)");
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("a:\n\tb: 1\n", -1, "tab.yaml", &err), err,
                      "tabs cannot indent YAML");
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("a: [1, 2\n", -1, "m.yaml", &err), err, "m.yaml:2:1: malformed YAML");
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("a: 1\n---\nb: 2\n", -1, "two.yaml", &err), err,
                      "two.yaml:2:1: more than one YAML document");
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("? [a]\n: 1\n", -1, "k.yaml", &err), err,
                      "k.yaml:1:3: a mapping key must be a scalar");
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("a: *x\n", -1, "u.yaml", &err), err, "u.yaml:1:4: alias '*x'");
  /* An anchor is usable only once its node is complete: no self-reference. */
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("a: &x [*x]\n", -1, "self.yaml", &err), err, "alias '*x'");
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("a: \"x\\0y\"\n", -1, "nul.yaml", &err), err, "NUL character");
}

static void test_caps(void) {
  GError *err = NULL;
  /* Depth: exactly 64 nested lists parse, 65 do not. */
  g_autofree char *d64 = nested(PS_YAML_MAX_DEPTH);
  g_autofree char *d65 = nested(PS_YAML_MAX_DEPTH + 1);
  g_autoptr(ps_ynode) ok = ps_yaml_parse_string(d64, -1, "d64", &err);
  PS_CHECK_OK(ok != NULL, err);
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string(d65, -1, "d65", &err), err, "d65:1:65: nesting deeper than 64 levels");
  /* An alias may not carry a deep anchor past the depth cap either. */
  {
    g_autofree char *deep = nested(60);
    g_autofree char *text = g_strdup_printf("a: &x %s\nb: [[[[[*x]]]]]\n", deep);
    PS_CHECK_FAILS_WITH(ps_yaml_parse_string(text, -1, "da", &err), err, "nests deeper than 64 levels");
  }

  /* Aliases: exactly 1000 are fine, 1001 are refused. */
  GString *s = g_string_new("a: &x 1\nl: [");
  for (int i = 0; i < PS_YAML_MAX_ALIASES; i++)
    g_string_append(s, i ? ",*x" : "*x");
  g_string_append(s, "]\n");
  g_autoptr(ps_ynode) many = ps_yaml_parse_string(s->str, -1, "al", &err);
  PS_CHECK_OK(many && ps_ynode_size(ps_ynode_get(many, "l")) == PS_YAML_MAX_ALIASES, err);
  g_string_truncate(s, s->len - 2);
  g_string_append(s, ",*x]\n");
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string(s->str, -1, "al", &err), err, "more than 1000 aliases");
  g_string_free(s, TRUE);

  /* Nodes: a flat list of 199,998 items plus the list and the document's
   * mapping key... count exactly: root mapping 1 + key 1 + list 1 + items. */
  GString *big = g_string_new("l: [");
  const int items_ok = PS_YAML_MAX_NODES - 3;
  for (int i = 0; i < items_ok; i++)
    g_string_append(big, i ? ",0" : "0");
  g_string_append(big, "]\n");
  g_autoptr(ps_ynode) full = ps_yaml_parse_string(big->str, -1, "n", &err);
  PS_CHECK_OK(full && ps_ynode_count(full) == PS_YAML_MAX_NODES, err);
  g_string_truncate(big, big->len - 2);
  g_string_append(big, ",0]\n");
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string(big->str, -1, "n", &err), err, "more than 200000 nodes");
  g_string_free(big, TRUE);

  /* Billion laughs: stopped when an alias would cross the node cap, long
   * before anything of that size is built. */
  GString *bomb = g_string_new("a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
  for (char c = 'b'; c <= 'i'; c++) {
    g_string_append_printf(bomb, "%c: &%c [", c, c);
    for (int i = 0; i < 10; i++)
      g_string_append_printf(bomb, "%s*%c", i ? "," : "", c - 1);
    g_string_append(bomb, "]\n");
  }
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string(bomb->str, -1, "bomb", &err), err, "an alias bomb?");
  g_string_free(bomb, TRUE);

  /* Bytes. */
  g_autofree char *huge = g_malloc(PS_YAML_MAX_BYTES + 2);
  memset(huge, '#', PS_YAML_MAX_BYTES + 1);
  huge[PS_YAML_MAX_BYTES + 1] = '\0';
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string(huge, -1, "huge", &err), err, "over the limit of 4 MiB");
  huge[PS_YAML_MAX_BYTES] = '\0'; /* exactly at the limit: a comment, parses */
  g_autoptr(ps_ynode) at_limit = ps_yaml_parse_string(huge, -1, "huge", &err);
  PS_CHECK_OK(at_limit != NULL, err);
}

static void test_merge(void) {
  GError *err = NULL;
  g_autoptr(ps_ynode) base = ps_yaml_parse_string(
      "s: 1\nm: {x: 1, y: {p: 1, q: 2}}\nl: [1, 2, 3]\ngone: {a: 1}\nkeep: k\n", -1, "base", &err);
  g_autoptr(ps_ynode) over = ps_yaml_parse_string(
      "s: two\nm: {y: {q: 3, r: 4}, z: [9]}\nl: [5]\ngone: ~\nnew: {a: 1, b: ~}\nabsent: ~\n", -1, "over", &err);
  g_autoptr(ps_ynode) want = ps_yaml_parse_string(
      "s: two\nm: {x: 1, y: {p: 1, q: 3, r: 4}, z: [9]}\nl: [5]\nkeep: k\nnew: {a: 1}\n", -1, "want", &err);
  PS_CHECK_OK(base && over && want, err);
  if (!base || !over || !want)
    return;
  ps_ynode_merge(base, over);
  PS_CHECK(same_tree(base, want));
  /* The replaced scalar now points at the file that set it. */
  PS_CHECK(strcmp(ps_ynode_get(base, "s")->file, "over") == 0);
  PS_CHECK(strcmp(ps_ynode_get(ps_ynode_get(base, "m"), "x")->file, "base") == 0);
}

static void test_set_path(void) {
  GError *err = NULL;
  g_autoptr(ps_ynode) t = ps_yaml_parse_string("a: {b: 1}\ns: 3\n", -1, "t", &err);
  PS_CHECK_OK(ps_ynode_set_path(t, "a.c.d", ps_ynode_new_scalar("5", FALSE, "o", 0, 0), &err), err);
  PS_CHECK_OK(ps_ynode_set_path(t, "a.b", ps_ynode_new_scalar("x", TRUE, "o", 0, 0), &err), err);
  PS_CHECK_OK(ps_ynode_set_path(t, "s", ps_ynode_new_scalar("~", FALSE, "o", 0, 0), &err), err);
  PS_CHECK_OK(ps_ynode_set_path(t, "no.such", ps_ynode_new_scalar("", FALSE, "o", 0, 0), &err), err);
  g_autoptr(ps_ynode) want = ps_yaml_parse_string("a: {b: 'x', c: {d: 5}}\n", -1, "w", &err);
  PS_CHECK(same_tree(t, want));
  PS_CHECK_FAILS_WITH(ps_ynode_set_path(t, "a.b.c", ps_ynode_new_scalar("1", FALSE, "o", 0, 0), &err), err,
                      "'a.b' is the string 'x' (at o), not a mapping");
  PS_CHECK_FAILS_WITH(ps_ynode_set_path(t, "a..b", ps_ynode_new_scalar("1", FALSE, "o", 0, 0), &err), err,
                      "empty key");
}

static void test_emit_round_trip(void) {
  GError *err = NULL;
  const char *text = "name: \"3\"\nflag: 'true'\nnum: 3\nnull_str: '~'\ncolon: 'a: b'\n"
                     "multi: \"line1\\nline2\"\nempty_map: {}\nempty_list: []\nuni: \"µm\"\n"
                     "nested: {a: [1, {b: c}], 'key with space': -1}\nhash: 'a #b'\nlead: ' x'\nnulls: [~, '', null]\n";
  g_autoptr(ps_ynode) a = ps_yaml_parse_string(text, -1, "a", &err);
  PS_CHECK_OK(a != NULL, err);
  g_autofree char *out = a ? ps_ynode_emit(a, &err) : NULL;
  PS_CHECK_OK(out != NULL, err);
  g_autoptr(ps_ynode) b = out ? ps_yaml_parse_string(out, -1, "b", &err) : NULL;
  PS_CHECK_OK(b != NULL, err);
  PS_CHECK_MSG(a && b && same_tree(a, b), "emitted:\n%s", out ? out : "");
  /* The quoted "3" must stay a string after the round trip. */
  PS_CHECK(b && ps_ynode_get(b, "name")->quoted && !ps_ynode_get(b, "num")->quoted);
}

static void test_merge_keys(void) {
  GError *err = NULL;
  g_autoptr(ps_ynode) t = ps_yaml_parse_string("base: &b {depth: 3, preset: base, lora: {r: 2}}\n"
                                               "other: &o {width: 9, depth: 100}\n"
                                               "m:\n  <<: [*b, *o]\n  preset: large\n"
                                               "one: {<<: *o}\n"
                                               "quoted: {'<<': 1}\n",
                                               -1, "mk", &err);
  PS_CHECK_OK(t != NULL, err);
  g_autoptr(ps_ynode) want = ps_yaml_parse_string(
      "{preset: large, depth: 3, lora: {r: 2}, width: 9}", -1, "w", &err);
  g_autoptr(ps_ynode) want_one = ps_yaml_parse_string("{width: 9, depth: 100}", -1, "w", &err);
  /* Explicit keys win, then earlier sources over later ones. */
  PS_CHECK(t && same_tree(ps_ynode_get(t, "m"), want));
  PS_CHECK(t && same_tree(ps_ynode_get(t, "one"), want_one));
  PS_CHECK(t && ps_ynode_get(ps_ynode_get(t, "quoted"), "<<") != NULL); /* a quoted '<<' is a plain key */
  /* An anchor on the merged value stays usable after the merge. */
  g_autoptr(ps_ynode) kept = ps_yaml_parse_string("m: {<<: &x {a: 1}}\nn: *x\no: {<<: [&y {b: 2}]}\np: *y\n", -1,
                                                  "mk", &err);
  g_autoptr(ps_ynode) kept_want = ps_yaml_parse_string("{m: {a: 1}, n: {a: 1}, o: {b: 2}, p: {b: 2}}", -1, "w", &err);
  PS_CHECK_OK(kept && same_tree(kept, kept_want), err);
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("m: {<<: 1}\n", -1, "mk", &err), err,
                      "mk:1:9: a merge key '<<' takes a mapping or a list of mappings");
  PS_CHECK_FAILS_WITH(ps_yaml_parse_string("a: &a {x: 1}\nm: {<<: *a, <<: *a}\n", -1, "mk", &err), err,
                      "duplicate key '<<'");
}

static void test_edit_distance(void) {
  PS_CHECK(ps_edit_distance("kitten", "sitting") == 3);
  PS_CHECK(ps_edit_distance("dpeth", "depth") == 1); /* a transposition */
  PS_CHECK(ps_edit_distance("", "abc") == 3);
  PS_CHECK(ps_edit_distance("abc", "abc") == 0);
  PS_CHECK(ps_edit_distance("ca", "abc") == 3); /* OSA, not full Damerau (2) */
  const char *names[] = {"depth", "width", "dropout"};
  PS_CHECK(g_strcmp0(ps_closest_name("dpeth", names, 3), "depth") == 0);
  PS_CHECK(g_strcmp0(ps_closest_name("widht", names, 3), "width") == 0);
  PS_CHECK(ps_closest_name("zzzzzz", names, 3) == NULL);
}

int main(void) {
  test_positions_and_quoting();
  test_parse_errors();
  test_caps();
  test_merge();
  test_set_path();
  test_emit_round_trip();
  test_merge_keys();
  test_edit_distance();
  return ps_test_finish();
}
