/* pipeline.c — finding and loading pipeline files: `extends` chains (deep
 * merged, base first, relative to the extending file, cycles and depth
 * refused), `--set` overrides, then validation (pipeline_build.c).
 *
 * Each file's merged tree is computed once per load and reused, so a diamond
 * of bases sharing one file costs one parse, not one per path to it. */
#include "yaml_doc.h"

#include <string.h>

#include <pathseg/error.h>

#define PS_MAX_EXTENDS 16

typedef struct {
  GHashTable *cache;      /* canonical path -> merged tree (owned) */
  GPtrArray *chain;       /* canonical paths being loaded, outermost first */
  GPtrArray *chain_shown; /* the same, as the user wrote them */
  GHashTable *real_files; /* node file names that are files on disk */
} loader;

static void loader_init(loader *L) {
  L->cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)ps_ynode_free);
  L->chain = g_ptr_array_new_with_free_func(g_free);
  L->chain_shown = g_ptr_array_new_with_free_func(g_free);
  L->real_files = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

static void loader_clear(loader *L) {
  g_hash_table_destroy(L->cache);
  g_ptr_array_free(L->chain, TRUE);
  g_ptr_array_free(L->chain_shown, TRUE);
  g_hash_table_destroy(L->real_files);
}

static gboolean fail_at(GError **error, const ps_ynode *at, int code, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static gboolean fail_at(GError **error, const ps_ynode *at, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_autofree char *where = ps_ynode_where(at);
  g_set_error(error, PS_ERROR, code, "%s: %s", where, msg);
  return FALSE;
}

/* The names in `extends` (a string or a list of strings), in order. */
static gboolean extends_list(const ps_ynode *ext, GPtrArray *out, GError **error) {
  if (!ext || ps_ynode_is_null(ext))
    return TRUE;
  if (ext->kind == PS_YNODE_SCALAR) {
    g_ptr_array_add(out, (gpointer)ext);
  } else if (ext->kind == PS_YNODE_SEQUENCE) {
    for (size_t i = 0; i < ps_ynode_size(ext); i++)
      g_ptr_array_add(out, ps_ynode_value_at(ext, i));
  } else {
    return fail_at(error, ext, PS_ERROR_INVALID, "extends: expected a file name or a list of them, got a mapping");
  }
  for (guint i = 0; i < out->len; i++) {
    const ps_ynode *n = g_ptr_array_index(out, i);
    if (n->kind != PS_YNODE_SCALAR || ps_ynode_is_null(n)) {
      g_autofree char *got = ps_ynode_describe(n);
      return fail_at(error, n, PS_ERROR_INVALID, "extends: expected a file name, got %s", got);
    }
  }
  return TRUE;
}

static ps_ynode *load_file(loader *L, const char *shown, const ps_ynode *from, GError **error);

/* Merges the bases named by `extends` of `root` and then `root` itself. */
static ps_ynode *merge_document(loader *L, const ps_ynode *root, const char *shown, gboolean allow_extends,
                                GError **error) {
  if (ps_ynode_is_null(root))
    return ps_ynode_new_mapping(root->file, root->line, root->col);
  if (root->kind != PS_YNODE_MAPPING) {
    g_autofree char *got = ps_ynode_describe(root);
    fail_at(error, root, PS_ERROR_INVALID, "the top level of a pipeline must be a mapping, got %s", got);
    return NULL;
  }
  const ps_ynode *ext = ps_ynode_get(root, "extends");
  g_autoptr(GPtrArray) bases = g_ptr_array_new();
  if (!extends_list(ext, bases, error))
    return NULL;
  if (bases->len && !allow_extends) {
    fail_at(error, ext, PS_ERROR_INVALID, "extends: not available for a pipeline given as text; load it from a file");
    return NULL;
  }
  g_autoptr(ps_ynode) merged = ps_ynode_new_mapping(root->file, root->line, root->col);
  g_autofree char *dir = g_path_get_dirname(shown);
  for (guint i = 0; i < bases->len; i++) {
    const ps_ynode *b = g_ptr_array_index(bases, i);
    g_autofree char *path = g_path_is_absolute(b->value) || strcmp(dir, ".") == 0
                                ? g_strdup(b->value)
                                : g_build_filename(dir, b->value, NULL);
    g_autoptr(ps_ynode) base = load_file(L, path, b, error);
    if (!base)
      return NULL;
    ps_ynode_merge(merged, base);
  }
  g_autoptr(ps_ynode) own = ps_ynode_copy(root);
  ps_ynode_map_remove(own, "extends");
  ps_ynode_merge(merged, own);
  return g_steal_pointer(&merged);
}

static ps_ynode *load_file(loader *L, const char *shown, const ps_ynode *from, GError **error) {
  g_autofree char *canonical = g_canonicalize_filename(shown, NULL);
  for (guint i = 0; i < L->chain->len; i++) {
    if (strcmp(g_ptr_array_index(L->chain, i), canonical) != 0)
      continue;
    GString *cycle = g_string_new(NULL);
    for (guint j = i; j < L->chain_shown->len; j++)
      g_string_append_printf(cycle, "%s -> ", (const char *)g_ptr_array_index(L->chain_shown, j));
    g_string_append(cycle, shown);
    fail_at(error, from, PS_ERROR_INVALID, "extends: cycle: %s", cycle->str);
    g_string_free(cycle, TRUE);
    return NULL;
  }
  if (L->chain->len >= PS_MAX_EXTENDS) {
    fail_at(error, from, PS_ERROR_INVALID, "extends: more than %d levels of extends (at %s)", PS_MAX_EXTENDS,
            shown);
    return NULL;
  }
  const ps_ynode *cached = g_hash_table_lookup(L->cache, canonical);
  if (cached)
    return ps_ynode_copy(cached);

  g_autoptr(GError) local = NULL;
  g_autoptr(ps_ynode) root = ps_yaml_parse_file(shown, &local);
  if (!root) {
    if (from)
      fail_at(error, from, local->code, "extends: %s", local->message);
    else
      g_propagate_error(error, g_steal_pointer(&local));
    return NULL;
  }
  g_hash_table_add(L->real_files, g_strdup(shown));
  g_ptr_array_add(L->chain, g_strdup(canonical));
  g_ptr_array_add(L->chain_shown, g_strdup(shown));
  ps_ynode *merged = merge_document(L, root, shown, TRUE, error);
  g_ptr_array_set_size(L->chain, L->chain->len - 1);
  g_ptr_array_set_size(L->chain_shown, L->chain_shown->len - 1);
  if (merged)
    g_hash_table_insert(L->cache, g_steal_pointer(&canonical), ps_ynode_copy(merged));
  return merged;
}

static void forget_positions(ps_ynode *n) {
  n->line = 0;
  for (size_t i = 0; i < ps_ynode_size(n); i++) {
    if (n->kind == PS_YNODE_MAPPING)
      ((ps_ynode *)ps_ynode_key_at(n, i))->line = 0;
    forget_positions(ps_ynode_value_at(n, i));
  }
}

static gboolean apply_override(ps_ynode *tree, const char *spec, GError **error) {
  const char *eq = strchr(spec, '=');
  g_autofree char *key = eq ? g_strstrip(g_strndup(spec, (gsize)(eq - spec))) : NULL;
  if (!eq || !*key) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "bad --set '%s': expected KEY.PATH=VALUE (e.g. stages.sft.steps=10)", spec);
    return FALSE;
  }
  g_autofree char *origin = g_strdup_printf("--set '%s'", spec);
  g_autoptr(GError) local = NULL;
  ps_ynode *value = ps_yaml_parse_string(eq + 1, -1, origin, &local);
  if (!value) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "bad --set '%s': the value is not valid YAML: %s", spec,
                local->message);
    return FALSE;
  }
  forget_positions(value);
  if (!ps_ynode_set_path(tree, key, value, &local)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "bad --set '%s': %s", spec, local->message);
    return FALSE;
  }
  return TRUE;
}

static ps_pipeline *finish(loader *L, ps_ynode *tree, const char *path, const char *const *overrides,
                           ps_component_lookup lookup, void *user, GError **error) {
  for (size_t i = 0; overrides && overrides[i]; i++)
    if (!apply_override(tree, overrides[i], error))
      return NULL;
  return ps_pipeline_build(tree, path, L->real_files, lookup, user, error);
}

ps_pipeline *ps_pipeline_load(const char *path, const char *const *overrides, ps_component_lookup lookup,
                              void *user, GError **error) {
  g_return_val_if_fail(path && lookup, NULL);
  loader L;
  loader_init(&L);
  g_autoptr(ps_ynode) tree = load_file(&L, path, NULL, error);
  g_autofree char *resolved = g_canonicalize_filename(path, NULL);
  ps_pipeline *p = tree ? finish(&L, tree, resolved, overrides, lookup, user, error) : NULL;
  loader_clear(&L);
  return p;
}

ps_pipeline *ps_pipeline_load_string(const char *text, gssize length, const char *origin,
                                     const char *const *overrides, ps_component_lookup lookup, void *user,
                                     GError **error) {
  g_return_val_if_fail(lookup, NULL);
  if (!origin)
    origin = "<string>";
  loader L;
  loader_init(&L);
  ps_pipeline *p = NULL;
  g_autoptr(ps_ynode) root = ps_yaml_parse_string(text, length, origin, error);
  g_autoptr(ps_ynode) tree = root ? merge_document(&L, root, origin, FALSE, error) : NULL;
  if (tree)
    p = finish(&L, tree, origin, overrides, lookup, user, error);
  loader_clear(&L);
  return p;
}

char *ps_pipeline_find(const char *name, const char *const *search_dirs, GError **error) {
  g_return_val_if_fail(name, NULL);
  const char *suffixes[] = {"", ".yaml", ".yml"};
  gboolean has_suffix = g_str_has_suffix(name, ".yaml") || g_str_has_suffix(name, ".yml");
  size_t n_suffixes = has_suffix ? 1 : G_N_ELEMENTS(suffixes);
  for (size_t s = 0; s < n_suffixes; s++) {
    g_autofree char *candidate = g_strconcat(name, suffixes[s], NULL);
    if (g_file_test(candidate, G_FILE_TEST_IS_REGULAR))
      return g_steal_pointer(&candidate);
  }
  GString *looked = g_string_new(".");
  for (size_t d = 0; !g_path_is_absolute(name) && search_dirs && search_dirs[d]; d++) {
    g_string_append_printf(looked, ", %s", search_dirs[d]);
    for (size_t s = 0; s < n_suffixes; s++) {
      g_autofree char *file = g_strconcat(name, suffixes[s], NULL);
      char *candidate = g_build_filename(search_dirs[d], file, NULL);
      if (g_file_test(candidate, G_FILE_TEST_IS_REGULAR)) {
        g_string_free(looked, TRUE);
        return candidate;
      }
      g_free(candidate);
    }
  }
  g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "pipeline '%s' not found (looked in: %s)", name, looked->str);
  g_string_free(looked, TRUE);
  return NULL;
}

static void component_clear(ps_pipeline_component *c) {
  g_free(c->name);
  g_free(c->plugin);
  ps_config_free(c->config);
  for (size_t i = 0; i < c->n_inputs; i++) {
    g_free(c->inputs[i].port);
    g_free(c->inputs[i].source);
    g_free(c->inputs[i].source_port);
  }
  g_free(c->inputs);
  g_free(c->weights);
  g_free(c->weights_prefix);
  for (size_t i = 0; i < c->n_roles; i++)
    g_free(c->roles[i].pattern);
  g_free(c->roles);
  g_free(c->where);
}

void ps_pipeline_free(ps_pipeline *p) {
  if (!p)
    return;
  for (size_t i = 0; i < p->n_components; i++)
    component_clear(&p->components[i]);
  g_free(p->components);
  g_free(p->order);
  for (size_t i = 0; i < p->n_stages; i++) {
    g_free(p->stages[i].name);
    g_free(p->stages[i].plugin);
    ps_config_free(p->stages[i].config);
    g_free(p->stages[i].where);
  }
  g_free(p->stages);
  g_free(p->path);
  g_free(p->name);
  g_free(p->description);
  g_free(p->run_dir);
  g_free(p->resolved_yaml);
  g_free(p);
}

const ps_pipeline_component *ps_pipeline_get_component(const ps_pipeline *p, const char *name) {
  for (size_t i = 0; p && name && i < p->n_components; i++)
    if (strcmp(p->components[i].name, name) == 0)
      return &p->components[i];
  return NULL;
}
