/* component.c — an instance of a registered component: the plugin's `self`
 * with its descriptor and instance name. */
#include <pathseg/host.h>

struct ps_component {
  const ps_component_desc *desc;
  char *name;
  void *self;
};

ps_component *ps_component_new(const ps_component_desc *desc, const ps_config *config,
                               const char *instance_name, ps_context *ctx, GError **error) {
  GError *local = NULL;
  void *self = desc->vtable->create(config, ctx, &local);
  if (!self) {
    g_set_error(error, PS_ERROR, local ? (ps_error_code)local->code : PS_ERROR_FAILED,
                "%s (%s): %s", instance_name, desc->name,
                local ? local->message : "create() failed without a reason");
    g_clear_error(&local);
    return NULL;
  }
  ps_component *c = g_new0(ps_component, 1);
  c->desc = desc;
  c->name = g_strdup(instance_name);
  c->self = self;
  return c;
}

void ps_component_free(ps_component *c) {
  if (!c) return;
  c->desc->vtable->destroy(c->self);
  g_free(c->name);
  g_free(c);
}

const char *ps_component_name(const ps_component *c) { return c->name; }
const ps_component_desc *ps_component_desc_of(const ps_component *c) { return c->desc; }
void *ps_component_self(const ps_component *c) { return c->self; }

ps_param_list ps_component_params(const ps_component *c) {
  ps_param_list none = {NULL, 0};
  return c->desc->vtable->params ? c->desc->vtable->params(c->self) : none;
}

const void *ps_component_capability(const ps_component *c, const char *name) {
  return c->desc->capability ? c->desc->capability(name) : NULL;
}
