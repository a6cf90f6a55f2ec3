/* test_registry.c — the registry loads good plugins and refuses bad ones
 * with a message naming the file and the reason. argv[1] is the directory of
 * the test plugins built from abi/abi_plugin.c. */
#include <pathseg/host.h>
#include <pathseg/registry.h>

#include "ps_test.h"

static char *plugin(const char *dir, const char *name) {
  g_autofree char *file = g_strdup_printf("pathseg-%s.so", name);
  return g_build_filename(dir, file, NULL);
}

/* Loading `name` alone must fail with both the file name and `reason` in the message. */
static void expect_refused(const char *dir, const char *name, const char *reason) {
  g_autoptr(ps_registry) reg = ps_registry_new();
  g_autofree char *path = plugin(dir, name);
  GError *error = NULL;
  gboolean ok = ps_registry_load_file(reg, path, &error);
  PS_CHECK_MSG(!ok, "%s was accepted", name);
  PS_CHECK_MSG(error && strstr(error->message, path), "%s: message does not name the file: %s", name,
               error ? error->message : "none");
  PS_CHECK_MSG(error && strstr(error->message, reason), "%s: expected '%s' in: %s", name, reason,
               error ? error->message : "none");
  PS_CHECK(ps_registry_plugin_count(reg) == 0);
  g_clear_error(&error);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_registry ABI_PLUGIN_DIR\n");
    return 2;
  }
  const char *dir = argv[1];
  GError *error = NULL;

  /* A good plugin loads, and its component is found by name. */
  {
    g_autoptr(ps_registry) reg = ps_registry_new();
    g_autofree char *path = plugin(dir, "abi_ok");
    PS_CHECK_OK(ps_registry_load_file(reg, path, &error), error);
    const ps_component_desc *d = ps_registry_find(reg, "test.ok");
    PS_CHECK(d && d->kind == PS_KIND_METRIC);
    PS_CHECK(g_strcmp0(ps_registry_file_of(reg, "test.ok"), path) == 0);
    /* Loading the same file twice is harmless. */
    PS_CHECK_OK(ps_registry_load_file(reg, path, &error), error);
    PS_CHECK(ps_registry_plugin_count(reg) == 1);
    /* A typo gets a suggestion; a different word does not. */
    PS_CHECK(g_strcmp0(ps_registry_closest(reg, "test.okk"), "test.ok") == 0);
    PS_CHECK(ps_registry_closest(reg, "encoder.medsam") == NULL);
    /* Instances are created through the vtable. */
    g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
    g_autoptr(ps_component) c = ps_component_new(d, NULL, "x", ctx, &error);
    PS_CHECK(c != NULL);
    g_clear_error(&error);
  }

  expect_refused(dir, "abi_major", "major versions differ");
  expect_refused(dir, "abi_minor", "newer than this pathseg");
  expect_refused(dir, "abi_noquery", "no exported symbol ps_plugin_query");
  expect_refused(dir, "abi_missing", "ps_symbol_no_library_defines");
  expect_refused(dir, "abi_init", "failed to initialise: the test device is not present");
  {
    g_autoptr(ps_registry) reg = ps_registry_new();
    g_autofree char *path = g_build_filename(dir, "pathseg-does-not-exist.so", NULL);
    PS_CHECK_FAILS_WITH(ps_registry_load_file(reg, path, &error), error, "no such plugin file");
  }

  /* A duplicate component name refuses the second file and names both. */
  {
    g_autoptr(ps_registry) reg = ps_registry_new();
    g_autofree char *a = plugin(dir, "abi_dup_a");
    g_autofree char *b = plugin(dir, "abi_dup_b");
    PS_CHECK_OK(ps_registry_load_file(reg, a, &error), error);
    gboolean ok = ps_registry_load_file(reg, b, &error);
    PS_CHECK(!ok);
    PS_CHECK_MSG(error && strstr(error->message, a) && strstr(error->message, b) &&
                     strstr(error->message, "test.duplicate"),
                 "%s", error ? error->message : "no error");
    g_clear_error(&error);
  }

  /* Scanning the directory loads the good ones, reports every bad one, and
   * continues past each refusal. PATHSEG_PLUGIN_PATH is ignored here. */
  {
    g_setenv("PATHSEG_PLUGIN_PATH", "", TRUE);
    g_autoptr(ps_registry) reg = ps_registry_new();
    g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
    const char *dirs[] = {dir, NULL};
    ps_registry_scan(reg, dirs, problems);
    PS_CHECK(ps_registry_find(reg, "test.ok") != NULL);
    PS_CHECK(ps_registry_find(reg, "test.duplicate") != NULL);
    PS_CHECK(ps_registry_find(reg, "test.major") == NULL);
    PS_CHECK(ps_registry_find(reg, "test.minor") == NULL);
    PS_CHECK(ps_registry_find(reg, "test.init") == NULL);
    /* major, minor, noquery, missing, dup_b, init (other directories on the
     * search path may hold other plugins; only ours are counted). */
    guint ours = 0;
    for (guint i = 0; i < problems->len; i++)
      if (strstr(g_ptr_array_index(problems, i), dir)) ours++;
    PS_CHECK_MSG(ours == 6, "%u problems reported for %s", ours, dir);
    char **search = ps_registry_search_path(dirs);
    PS_CHECK(g_strcmp0(search[0], dir) == 0);
    g_strfreev(search);
  }
  return ps_test_finish();
}
