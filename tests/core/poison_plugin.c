/* poison_plugin.c — `test.poison`: passes its input through unchanged
 * (forward and backward) until its `after`-th forward call, from which on
 * the first element becomes NaN. It lets the run tests check what happens
 * when training meets a non-finite loss. */
#include <math.h>
#include <pathseg/plugin.h>
#include <string.h>

typedef struct {
  int64_t after, calls;
  ps_tensor *y;
} poison;

static const ps_config_key config[] = {
    {"after", PS_TYPE_INT, "5", 1, 1e9, NULL, "forward call from which the output is poisoned"},
    {NULL},
};
static const ps_port_desc inputs[] = {{"x", "any f32", FALSE}, {NULL}};
static const ps_port_desc outputs[] = {{"y", "x, or x with a NaN", FALSE}, {NULL}};

static void *create(const ps_config *cfg, ps_context *ctx, GError **error) {
  poison *p = g_new0(poison, 1);
  p->after = ps_config_int(cfg, "after");
  return p;
}

static void destroy(void *self) {
  poison *p = self;
  ps_tensor_free(p->y);
  g_free(p);
}

static gboolean forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out, GError **error) {
  poison *p = self;
  ps_tensor *x = ps_ports_require(in, "test.poison", "x", error);
  if (!x) return FALSE;
  ps_tensor_free(p->y);
  p->y = ps_tensor_copy(x, error);
  if (!p->y) return FALSE;
  if (++p->calls >= p->after) ps_f32(p->y)[0] = NAN;
  ps_ports_set(out, "y", p->y);
  return TRUE;
}

static gboolean backward(void *self, ps_context *ctx, const ps_ports *grad_out, ps_ports *grad_in,
                         GError **error) {
  ps_port *dx = ps_ports_find(grad_in, "x");
  if (dx && dx->needs_grad) dx->tensor = ps_ports_get(grad_out, "y");
  return TRUE;
}

static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, destroy, NULL,
                                           forward, backward};
static const ps_component_desc desc = {
    sizeof(ps_component_desc), PS_KIND_ADAPTER, "test.poison", "Identity that turns NaN later.",
    config, inputs, outputs, &vtable, NULL,
};
static const ps_component_desc *const components[] = {&desc, NULL};
static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER, .name = "test_poison", .version = "1.0", .license = "MIT",
    .description = "run tests", .components = components,
};
PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
