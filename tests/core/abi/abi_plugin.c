/* abi_plugin.c — one source, built several times with different macros, for
 * the registry's refusal tests:
 *   ABI_MAJOR / ABI_MINOR   the versions the descriptor claims
 *   COMPONENT               the component name it registers
 *   FAIL_INIT               init() fails with a message
 *   NO_QUERY                no ps_plugin_query symbol at all
 *   MISSING_SYMBOL          references a function no library defines */
#include <pathseg/plugin.h>

#ifndef ABI_MAJOR
#define ABI_MAJOR PS_ABI_MAJOR
#endif
#ifndef ABI_MINOR
#define ABI_MINOR PS_ABI_MINOR
#endif
#ifndef COMPONENT
#define COMPONENT "test.ok"
#endif

static void *create(const ps_config *cfg, ps_context *ctx, GError **error) { return g_new0(int, 1); }
static void destroy(void *self) { g_free(self); }

static const ps_config_key config[] = {{NULL}};
static const ps_port_desc no_ports[] = {{NULL}};
static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, destroy, NULL, NULL, NULL};
static const ps_component_desc desc = {
    sizeof(ps_component_desc), PS_KIND_METRIC, COMPONENT, "A test component.",
    config, no_ports, no_ports, &vtable, NULL,
};
static const ps_component_desc *const components[] = {&desc, NULL};

#ifdef FAIL_INIT
static gboolean failing_init(GError **error) {
  g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "the test device is not present");
  return FALSE;
}
#define INIT_FN failing_init
#else
#define INIT_FN NULL
#endif

#ifdef MISSING_SYMBOL
extern int ps_symbol_no_library_defines(void);
int (*keep_reference)(void) = ps_symbol_no_library_defines;
#endif

static const ps_plugin_desc plugin = {
    ABI_MAJOR, ABI_MINOR, sizeof(ps_plugin_desc),
    .name = "abi_test", .version = "1.0", .license = "MIT",
    .description = "registry refusal test", .components = components, .init = INIT_FN,
};

#ifndef NO_QUERY
PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
#else
PS_PLUGIN_EXPORT const ps_plugin_desc *not_the_query_function(void) { return &plugin; }
#endif
