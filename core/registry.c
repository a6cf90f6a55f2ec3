/* registry.c — plugin discovery, loading and the ABI checks (see registry.h). */
#include <dlfcn.h>
#include <pathseg/registry.h>
#include <string.h>

#include "build_config.h"

typedef struct {
  char *file;
  const ps_plugin_desc *desc;
} loaded_plugin;

struct ps_registry {
  GArray *plugins;        /* loaded_plugin */
  GHashTable *components; /* name -> index into plugins (GUINT_TO_POINTER(i + 1)) */
  GHashTable *descs;      /* name -> const ps_component_desc* */
  GHashTable *files;      /* realpath -> TRUE, so a file seen twice loads once */
};

ps_registry *ps_registry_new(void) {
  ps_registry *reg = g_new0(ps_registry, 1);
  reg->plugins = g_array_new(FALSE, TRUE, sizeof(loaded_plugin));
  reg->components = g_hash_table_new(g_str_hash, g_str_equal);
  reg->descs = g_hash_table_new(g_str_hash, g_str_equal);
  reg->files = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  return reg;
}

void ps_registry_free(ps_registry *reg) {
  if (!reg) return;
  for (guint i = 0; i < reg->plugins->len; i++)
    g_free(g_array_index(reg->plugins, loaded_plugin, i).file);
  g_array_free(reg->plugins, TRUE);
  g_hash_table_destroy(reg->components);
  g_hash_table_destroy(reg->descs);
  g_hash_table_destroy(reg->files);
  g_free(reg);
}

/* The descriptor fields a plugin must fill, checked before anything uses them. */
static gboolean check_descriptor(const char *path, const ps_plugin_desc *d, GError **error) {
  if (d->abi_major != PS_ABI_MAJOR) {
    g_set_error(error, PS_ERROR, PS_ERROR_ABI,
                "%s: built for plugin ABI %u.%u, this pathseg has ABI %u.%u (major versions differ; "
                "rebuild the plugin against this pathseg)",
                path, d->abi_major, d->abi_minor, PS_ABI_MAJOR, PS_ABI_MINOR);
    return FALSE;
  }
  if (d->abi_minor > PS_ABI_MINOR) {
    g_set_error(error, PS_ERROR, PS_ERROR_ABI,
                "%s: built for plugin ABI %u.%u, newer than this pathseg's %u.%u (upgrade pathseg "
                "or rebuild the plugin against this version)",
                path, d->abi_major, d->abi_minor, PS_ABI_MAJOR, PS_ABI_MINOR);
    return FALSE;
  }
  if (d->struct_size < offsetof(ps_plugin_desc, init)) {
    g_set_error(error, PS_ERROR, PS_ERROR_ABI,
                "%s: plugin descriptor is %u bytes, smaller than any ABI %u descriptor", path,
                d->struct_size, PS_ABI_MAJOR);
    return FALSE;
  }
  const char *missing = !d->name || !*d->name         ? "name"
                        : !d->version || !*d->version ? "version"
                        : !d->license || !*d->license ? "license"
                        : !d->components              ? "components"
                                                      : NULL;
  if (missing) {
    g_set_error(error, PS_ERROR, PS_ERROR_ABI, "%s: plugin descriptor has no %s", path, missing);
    return FALSE;
  }
  for (size_t i = 0; d->components[i]; i++) {
    const ps_component_desc *c = d->components[i];
    if (c->struct_size < offsetof(ps_component_desc, capability) || !c->name || !*c->name ||
        (unsigned)c->kind >= PS_KIND_COUNT || !c->vtable) {
      g_set_error(error, PS_ERROR, PS_ERROR_ABI,
                  "%s: component #%zu (%s) has an incomplete descriptor (name, kind, vtable)", path,
                  i, c->name ? c->name : "unnamed");
      return FALSE;
    }
    const ps_component_vtable *v = c->vtable;
    if (v->struct_size < offsetof(ps_component_vtable, params) || !v->create || !v->destroy) {
      g_set_error(error, PS_ERROR, PS_ERROR_ABI,
                  "%s: component '%s' has no create/destroy in its vtable", path, c->name);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean ps_registry_load_file(ps_registry *reg, const char *path, GError **error) {
  g_autofree char *real = realpath(path, NULL);
  if (!real) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "%s: no such plugin file", path);
    return FALSE;
  }
  if (g_hash_table_contains(reg->files, real)) return TRUE;

  dlerror();
  void *handle = dlopen(real, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    g_set_error(error, PS_ERROR, PS_ERROR_ABI, "%s: cannot load: %s", path, dlerror());
    return FALSE;
  }
  /* Plugins are never closed: a component may still be in use and plugins
   * may register state with libraries that cannot be unloaded safely. */
  ps_plugin_query_fn query = NULL;
  *(void **)&query = dlsym(handle, "ps_plugin_query");
  if (!query) {
    g_set_error(error, PS_ERROR, PS_ERROR_ABI,
                "%s: not a pathseg plugin (no exported symbol ps_plugin_query)", path);
    return FALSE;
  }
  const ps_plugin_desc *desc = query();
  if (!desc) {
    g_set_error(error, PS_ERROR, PS_ERROR_ABI, "%s: ps_plugin_query() returned NULL", path);
    return FALSE;
  }
  if (!check_descriptor(path, desc, error)) return FALSE;

  for (size_t i = 0; desc->components[i]; i++) {
    const char *name = desc->components[i]->name;
    const char *other = ps_registry_file_of(reg, name);
    for (size_t j = 0; !other && j < i; j++)
      if (strcmp(desc->components[j]->name, name) == 0) other = path;
    if (other) {
      g_set_error(error, PS_ERROR, PS_ERROR_ABI,
                  "%s: component '%s' is already registered by %s; refusing the second copy", path,
                  name, other);
      return FALSE;
    }
  }
  if (desc->init) {
    GError *init_error = NULL;
    if (!desc->init(&init_error)) {
      g_set_error(error, PS_ERROR, PS_ERROR_ABI, "%s: plugin '%s' failed to initialise: %s", path,
                  desc->name, init_error ? init_error->message : "(no reason given)");
      g_clear_error(&init_error);
      return FALSE;
    }
  }
  loaded_plugin lp = {g_strdup(path), desc};
  g_array_append_val(reg->plugins, lp);
  guint index = reg->plugins->len;
  for (size_t i = 0; desc->components[i]; i++) {
    g_hash_table_insert(reg->components, (gpointer)desc->components[i]->name,
                        GUINT_TO_POINTER(index));
    g_hash_table_insert(reg->descs, (gpointer)desc->components[i]->name,
                        (gpointer)desc->components[i]);
  }
  g_hash_table_add(reg->files, g_steal_pointer(&real));
  return TRUE;
}

/* TRUE when this libpathseg is the one in the build tree (not an installed
 * copy): only then are the build tree's plugins on the search path. */
gboolean ps_running_from_build_tree(void) {
  Dl_info info;
  if (!dladdr((void *)ps_registry_search_path, &info) || !info.dli_fname) return FALSE;
  g_autofree char *lib = realpath(info.dli_fname, NULL);
  g_autofree char *build = realpath(PS_BUILD_DIR, NULL);
  return lib && build && g_str_has_prefix(lib, build);
}

char *ps_install_dir(const char *relative) {
  Dl_info info;
  g_autofree char *libdir = NULL;
  if (dladdr((void *)ps_install_dir, &info) && info.dli_fname) {
    g_autofree char *lib = realpath(info.dli_fname, NULL);
    libdir = g_path_get_dirname(lib ? lib : info.dli_fname);
  } else {
    libdir = g_strdup(".");
  }
  g_autofree char *joined = g_build_filename(libdir, relative, NULL);
  g_autofree char *canonical = realpath(joined, NULL);
  return g_strdup(canonical ? canonical : joined);
}

char **ps_registry_search_path(const char *const *extra_dirs) {
  GPtrArray *dirs = g_ptr_array_new();
  for (size_t i = 0; extra_dirs && extra_dirs[i]; i++) g_ptr_array_add(dirs, g_strdup(extra_dirs[i]));
  const char *env = g_getenv("PATHSEG_PLUGIN_PATH");
  if (env && *env) {
    g_auto(GStrv) parts = g_strsplit(env, ":", -1);
    for (size_t i = 0; parts[i]; i++)
      if (*parts[i]) g_ptr_array_add(dirs, g_strdup(parts[i]));
  }
  if (ps_running_from_build_tree() && g_file_test(PS_BUILD_PLUGIN_DIR, G_FILE_TEST_IS_DIR))
    g_ptr_array_add(dirs, g_strdup(PS_BUILD_PLUGIN_DIR));
  g_ptr_array_add(dirs, ps_install_dir(PS_LIB_TO_PLUGINS));
  g_ptr_array_add(dirs, NULL);
  return (char **)g_ptr_array_free(dirs, FALSE);
}

static gint compare_strings(gconstpointer a, gconstpointer b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t ps_registry_scan(ps_registry *reg, const char *const *extra_dirs, GPtrArray *problems) {
  g_auto(GStrv) dirs = ps_registry_search_path(extra_dirs);
  size_t loaded = 0;
  for (size_t d = 0; dirs[d]; d++) {
    GDir *dir = g_dir_open(dirs[d], 0, NULL);
    if (!dir) continue;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *entry;
    while ((entry = g_dir_read_name(dir)))
      if (g_str_has_prefix(entry, "pathseg-") && g_str_has_suffix(entry, ".so"))
        g_ptr_array_add(names, g_strdup(entry));
    g_dir_close(dir);
    g_ptr_array_sort(names, compare_strings); /* deterministic load order */
    for (guint i = 0; i < names->len; i++) {
      g_autofree char *path = g_build_filename(dirs[d], g_ptr_array_index(names, i), NULL);
      GError *error = NULL;
      guint before = reg->plugins->len;
      if (ps_registry_load_file(reg, path, &error)) {
        loaded += reg->plugins->len - before;
      } else {
        if (problems) g_ptr_array_add(problems, g_strdup(error->message));
        g_clear_error(&error);
      }
    }
  }
  return loaded;
}

const ps_component_desc *ps_registry_find(const ps_registry *reg, const char *name) {
  return name ? g_hash_table_lookup(reg->descs, name) : NULL;
}

const ps_component_desc *ps_registry_lookup(const char *name, void *registry) {
  return ps_registry_find(registry, name);
}

static const loaded_plugin *owner(const ps_registry *reg, const char *name) {
  guint index = GPOINTER_TO_UINT(g_hash_table_lookup(reg->components, name));
  return index ? &g_array_index(reg->plugins, loaded_plugin, index - 1) : NULL;
}

const char *ps_registry_file_of(const ps_registry *reg, const char *name) {
  const loaded_plugin *lp = owner(reg, name);
  return lp ? lp->file : NULL;
}

const ps_plugin_desc *ps_registry_plugin_of(const ps_registry *reg, const char *name) {
  const loaded_plugin *lp = owner(reg, name);
  return lp ? lp->desc : NULL;
}

size_t ps_registry_plugin_count(const ps_registry *reg) { return reg->plugins->len; }

const ps_plugin_desc *ps_registry_plugin(const ps_registry *reg, size_t index, const char **file) {
  if (index >= reg->plugins->len) return NULL;
  const loaded_plugin *lp = &g_array_index(reg->plugins, loaded_plugin, index);
  if (file) *file = lp->file;
  return lp->desc;
}

static gint compare_descs(gconstpointer a, gconstpointer b) {
  const ps_component_desc *x = *(const ps_component_desc *const *)a;
  const ps_component_desc *y = *(const ps_component_desc *const *)b;
  return strcmp(x->name, y->name);
}

const ps_component_desc **ps_registry_components(const ps_registry *reg, size_t *count) {
  guint n = g_hash_table_size(reg->descs);
  gpointer *values = g_new0(gpointer, n + 1);
  GHashTableIter it;
  gpointer value;
  guint i = 0;
  g_hash_table_iter_init(&it, reg->descs);
  while (g_hash_table_iter_next(&it, NULL, &value)) values[i++] = value;
  qsort(values, n, sizeof(gpointer), (int (*)(const void *, const void *))compare_descs);
  if (count) *count = n;
  return (const ps_component_desc **)values;
}

const ps_component_desc *ps_registry_find_fixture(const ps_registry *reg,
                                                  const char *fixture_component,
                                                  const ps_fixture_iface **iface) {
  size_t n = 0;
  g_autofree const ps_component_desc **all = ps_registry_components(reg, &n);
  for (size_t i = 0; i < n; i++) {
    if (!all[i]->capability) continue;
    const ps_fixture_iface *fi = all[i]->capability("fixture");
    if (!fi || !fi->components || !fi->run) continue;
    for (size_t k = 0; fi->components[k]; k++) {
      if (strcmp(fi->components[k], fixture_component) == 0) {
        if (iface) *iface = fi;
        return all[i];
      }
    }
  }
  return NULL;
}

/* ps_edit_distance lives in yaml_doc.c (optimal string alignment). */

const char *ps_registry_closest(const ps_registry *reg, const char *name) {
  size_t n = 0;
  g_autofree const ps_component_desc **all = ps_registry_components(reg, &n);
  const char *best = NULL;
  size_t best_d = (size_t)-1;
  for (size_t i = 0; i < n; i++) {
    size_t d = ps_edit_distance(name, all[i]->name);
    if (d < best_d) {
      best_d = d;
      best = all[i]->name;
    }
  }
  /* Suggest only what is plausibly a typo. */
  return best && best_d <= MAX((size_t)2, strlen(name) / 3) ? best : NULL;
}
