/* registry.h — finding, loading and checking plugins (host side).
 *
 * Search order: directories given by the caller (`--plugin-path`), then
 * each directory of PATHSEG_PLUGIN_PATH (colon-separated), then the build
 * tree's plugin directory (when it exists), then the installed plugin
 * directory. Every file named `pathseg-*.so` is opened with
 * RTLD_NOW | RTLD_LOCAL, so an unresolved symbol fails at load time, and
 * never closed again. A plugin is refused — with a message naming the file
 * and the reason — when it has no ps_plugin_query, another abi_major, a newer
 * abi_minor, a too small descriptor, a component name another file already
 * registered (both files named), or an init() that fails. A refused plugin
 * does not stop the others from loading. */
#pragma once

#include <glib.h>
#include <pathseg/plugin.h>

G_BEGIN_DECLS

typedef struct ps_registry ps_registry;

ps_registry *ps_registry_new(void);
void ps_registry_free(ps_registry *reg); /* forgets; never dlcloses */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_registry, ps_registry_free)

/* Loads one plugin file. FALSE with the reason when it is refused. */
gboolean ps_registry_load_file(ps_registry *reg, const char *path, GError **error);

/* Scans the search path. Each refusal is appended to `problems` (char *,
 * g_free) when it is non-NULL. Returns the number of plugins loaded. */
size_t ps_registry_scan(ps_registry *reg, const char *const *extra_dirs, GPtrArray *problems);

/* The directories ps_registry_scan would search, in order (g_strfreev). */
char **ps_registry_search_path(const char *const *extra_dirs);

const ps_component_desc *ps_registry_find(const ps_registry *reg, const char *name);
/* The file that registered `name`, or NULL. */
const char *ps_registry_file_of(const ps_registry *reg, const char *name);
/* The plugin descriptor that registered `name`, or NULL. */
const ps_plugin_desc *ps_registry_plugin_of(const ps_registry *reg, const char *name);
/* The registered name closest to `name` by edit distance, or NULL. */
const char *ps_registry_closest(const ps_registry *reg, const char *name);

/* Loaded plugins, in load order. */
size_t ps_registry_plugin_count(const ps_registry *reg);
const ps_plugin_desc *ps_registry_plugin(const ps_registry *reg, size_t index, const char **file);

/* Every registered component, sorted by name; free the array with g_free. */
const ps_component_desc **ps_registry_components(const ps_registry *reg, size_t *count);

/* The component whose "fixture" capability handles `fixture_component`. */
const ps_component_desc *ps_registry_find_fixture(const ps_registry *reg,
                                                  const char *fixture_component,
                                                  const ps_fixture_iface **iface);

/* Adapter for ps_pipeline_load's lookup callback (user = the registry). */
const ps_component_desc *ps_registry_lookup(const char *name, void *registry);

/* `relative` resolved against the directory that holds libpathseg.so, so
 * that an installation can move as a whole (g_free the result). */
char *ps_install_dir(const char *relative);

/* TRUE when this libpathseg is the build tree's, not an installed copy. */
gboolean ps_running_from_build_tree(void);

/* Levenshtein distance, used for "did you mean" suggestions everywhere. */
size_t ps_edit_distance(const char *a, const char *b);

G_END_DECLS
