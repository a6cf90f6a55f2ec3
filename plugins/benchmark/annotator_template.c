/* annotator_template.c — `annotator.template`: the template annotator
 * (annotate.c) behind the public "annotator" capability
 * (pathseg/annotator.h), so that a pipeline can name it like any other
 * annotator. stage.build_benchmark uses the same code when its `annotator`
 * key is empty. No configuration: the chain is a function of the item. */
#include <string.h>

#include "annotate.h"
#include "benchmark.h"

static char *template_annotate(void *self, const ps_annotator_item *item, GError **error) {
  (void)self;
  (void)error;
  return ps_template_chain(item);
}

const ps_annotator_iface ps_template_annotator = {sizeof(ps_annotator_iface), template_annotate};

static const ps_config_key template_config[] = {{NULL}};
static const ps_port_desc no_ports[] = {{NULL}};

/* A stateless component still needs a non-NULL self. */
static void *create(const ps_config *cfg, ps_context *ctx, GError **error) {
  (void)cfg;
  (void)ctx;
  (void)error;
  return g_new0(char, 1);
}

static const void *capability(const char *name) {
  return strcmp(name, "annotator") == 0 ? &ps_template_annotator : NULL;
}
static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, g_free, NULL, NULL, NULL};

const ps_component_desc ps_template_annotator_desc = {
    sizeof(ps_component_desc), PS_KIND_ANNOTATOR, "annotator.template",
    "Template reasoning chains (capability \"annotator\"): stain, organ and magnification, the tissue "
    "class's diagnostic vocabulary, extent, location, pieces, outline and colour of the target, ending "
    "with <SEG>; deterministic given the item's seed. The default of stage.build_benchmark.",
    template_config, no_ports, no_ports, &vtable, capability,
};
