/* plugin_api.c — the small helpers plugin.h promises: names of kinds and
 * roles, and port lookups. */
#include <pathseg/plugin.h>
#include <string.h>

static const char *const kind_names[PS_KIND_COUNT] = {
    [PS_KIND_AUGMENTER] = "augmenter", [PS_KIND_ENCODER] = "encoder",
    [PS_KIND_LLM] = "llm",             [PS_KIND_ADAPTER] = "adapter",
    [PS_KIND_DECODER] = "decoder",     [PS_KIND_REWARD] = "reward",
    [PS_KIND_CRITIC] = "critic",       [PS_KIND_ADVANTAGE] = "advantage",
    [PS_KIND_STAGE] = "stage",         [PS_KIND_DATASET] = "dataset",
    [PS_KIND_METRIC] = "metric",       [PS_KIND_TOKENIZER] = "tokenizer",
    [PS_KIND_ANNOTATOR] = "annotator",
};

const char *ps_kind_name(ps_kind kind) {
  return (unsigned)kind < PS_KIND_COUNT ? kind_names[kind] : "unknown";
}

static const char *const role_names[PS_ROLE_COUNT] = {
    [PS_ROLE_FROZEN] = "frozen",   [PS_ROLE_FULL] = "full",         [PS_ROLE_LORA] = "lora",
    [PS_ROLE_ADAPTER] = "adapter", [PS_ROLE_BACKBONE] = "backbone",
};

const char *ps_role_name(ps_role role) {
  return (unsigned)role < PS_ROLE_COUNT ? role_names[role] : "unknown";
}

gboolean ps_role_from_name(const char *name, ps_role *out) {
  for (int r = 0; r < PS_ROLE_COUNT; r++) {
    if (name && strcmp(name, role_names[r]) == 0) {
      *out = (ps_role)r;
      return TRUE;
    }
  }
  return FALSE;
}

ps_port *ps_ports_find(ps_ports *ports, const char *name) {
  for (size_t i = 0; ports && i < ports->count; i++)
    if (strcmp(ports->items[i].name, name) == 0) return &ports->items[i];
  return NULL;
}

ps_tensor *ps_ports_get(const ps_ports *ports, const char *name) {
  ps_port *p = ps_ports_find((ps_ports *)ports, name);
  return p ? p->tensor : NULL;
}

gboolean ps_ports_set(ps_ports *ports, const char *name, ps_tensor *tensor) {
  ps_port *p = ps_ports_find(ports, name);
  if (!p) return FALSE;
  p->tensor = tensor;
  return TRUE;
}

ps_tensor *ps_ports_require(const ps_ports *ports, const char *component, const char *name,
                            GError **error) {
  ps_tensor *t = ps_ports_get(ports, name);
  if (!t)
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "%s: input '%s' is not bound", component,
                name);
  return t;
}
