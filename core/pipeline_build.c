/* pipeline_build.c — turns the merged pipeline tree into a validated
 * ps_pipeline: top-level keys, components (plugin, config, input bindings,
 * weights, roles), the component graph and its topological order, stages.
 *
 * Every error names file:line:col of the offending text and its key path, and
 * says what was expected, because this is where a user's ablation YAML meets
 * the plugins' schemas. */
#include "yaml_doc.h"

#include <string.h>

#include <pathseg/error.h>
#include <pathseg/kernels.h>

static const char *const top_keys[] = {"name",    "description", "extends",    "seed",
                                       "device",  "precision",   "threads",    "run_dir",
                                       "components", "stages"};

static const ps_config_key top_schema[] = {
    {"name", PS_TYPE_STRING, "\"\"", PS_NO_RANGE, NULL, "run directory prefix (default: the file name)"},
    {"description", PS_TYPE_STRING, "\"\"", PS_NO_RANGE, NULL, "one paragraph"},
    {"seed", PS_TYPE_INT, "0", PS_NO_RANGE, NULL, "random seed"},
    {"device", PS_TYPE_ENUM, "cpu", PS_NO_RANGE, "cpu|cuda", "where tensors live"},
    {"precision", PS_TYPE_ENUM, "f32", PS_NO_RANGE, "f32|bf16",
     "compute precision: bf16 runs the linear products on bf16 tensor cores with f32 master "
     "weights, activations and accumulation (device: cuda only)"},
    {"threads", PS_TYPE_INT, "0", 0, 65536, NULL, "worker threads (0 = all cores)"},
    {"run_dir", PS_TYPE_STRING, "runs", PS_NO_RANGE, NULL, "parent of run directories"},
    {0},
};

static const char *const component_keys[] = {"plugin",  "with",           "inputs",
                                              "weights", "weights_prefix", "roles"};

/* A binding with the node that wrote it, checked once all components exist. */
typedef struct {
  size_t component;
  size_t binding;
  const ps_ynode *node;
} pending_binding;

static gboolean fail(GError **error, const ps_ynode *at, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static gboolean fail(GError **error, const ps_ynode *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_autofree char *where = ps_ynode_where(at);
  g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: %s", where, msg);
  return FALSE;
}

/* " (did you mean 'x'?)" or " (known: a, b, c)" or "". */
static char *suggest(const char *wanted, const char *const *names, size_t n, const char *known_label) {
  const char *near = ps_closest_name(wanted, names, n);
  if (near)
    return g_strdup_printf(" (did you mean '%s'?)", near);
  if (n == 0 || n > 24 || !known_label)
    return g_strdup("");
  GString *s = g_string_new(NULL);
  g_string_printf(s, " (%s:", known_label);
  for (size_t i = 0; i < n; i++)
    g_string_append_printf(s, "%s %s", i ? "," : "", names[i]);
  g_string_append_c(s, ')');
  return g_string_free(s, FALSE);
}

/* `where` is "" for the top level or " in components.x". */
static gboolean check_keys(const ps_ynode *map, const char *const *known, size_t n, const char *label,
                           const char *where, GError **error) {
  for (size_t i = 0; i < ps_ynode_size(map); i++) {
    const ps_ynode *k = ps_ynode_key_at(map, i);
    gboolean ok = FALSE;
    for (size_t j = 0; j < n && !ok; j++)
      ok = strcmp(k->value, known[j]) == 0;
    if (!ok) {
      g_autofree char *hint = suggest(k->value, known, n, "known keys");
      return fail(error, k, "unknown %s '%s'%s%s", label, k->value, where, hint);
    }
  }
  return TRUE;
}

static gboolean get_string(const ps_ynode *n, const char *path, char **out, GError **error) {
  if (!n || n->kind != PS_YNODE_SCALAR || ps_ynode_is_null(n)) {
    g_autofree char *got = ps_ynode_describe(n);
    return fail(error, n, "%s: expected a string, got %s", path, got);
  }
  *out = g_strdup(n->value);
  return TRUE;
}

static size_t port_count(const ps_port_desc *ports) {
  size_t n = 0;
  while (ports && ports[n].name)
    n++;
  return n;
}

static const char **port_names(const ps_port_desc *ports) {
  size_t n = port_count(ports);
  const char **names = g_new0(const char *, n + 1);
  for (size_t i = 0; i < n; i++)
    names[i] = ports[i].name;
  return names;
}

static gssize port_index(const ps_port_desc *ports, const char *name) {
  for (size_t i = 0; ports && ports[i].name; i++)
    if (strcmp(ports[i].name, name) == 0)
      return (gssize)i;
  return -1;
}

static char *resolve_path(const ps_ynode *n, GHashTable *real_files) {
  if (g_path_is_absolute(n->value))
    return g_canonicalize_filename(n->value, NULL);
  g_autofree char *dir = NULL;
  if (real_files && g_hash_table_contains(real_files, n->file))
    dir = g_path_get_dirname(n->file);
  g_autofree char *base = g_canonicalize_filename(dir ? dir : ".", NULL);
  return g_canonicalize_filename(n->value, base);
}

static gboolean parse_inputs(ps_pipeline_component *c, const ps_ynode *inputs, GArray *pending,
                             size_t index, GError **error) {
  if (!inputs || ps_ynode_is_null(inputs))
    return TRUE;
  if (inputs->kind != PS_YNODE_MAPPING) {
    g_autofree char *got = ps_ynode_describe(inputs);
    return fail(error, inputs, "components.%s.inputs: expected a mapping port -> 'component.port', got %s",
                c->name, got);
  }
  size_t n = ps_ynode_size(inputs);
  c->inputs = g_new0(ps_binding, n + 1);
  for (size_t i = 0; i < n; i++) {
    const ps_ynode *k = ps_ynode_key_at(inputs, i);
    const ps_ynode *v = ps_ynode_value_at(inputs, i);
    if (port_index(c->desc->inputs, k->value) < 0) {
      g_autofree const char **names = port_names(c->desc->inputs);
      g_autofree char *hint = suggest(k->value, names, port_count(c->desc->inputs), "its inputs are");
      return fail(error, k, "components.%s.inputs: unknown input port '%s' of %s%s%s", c->name, k->value,
                  c->desc->name, hint, port_count(c->desc->inputs) ? "" : " (it has no inputs)");
    }
    const char *dot = v->kind == PS_YNODE_SCALAR && !ps_ynode_is_null(v) ? strchr(v->value, '.') : NULL;
    if (!dot || dot == v->value || dot[1] == '\0') {
      g_autofree char *got = ps_ynode_describe(v);
      return fail(error, v, "components.%s.inputs.%s: expected 'component.port' or 'data.FIELD', got %s",
                  c->name, k->value, got);
    }
    ps_binding *b = &c->inputs[c->n_inputs++];
    b->port = g_strdup(k->value);
    b->source = g_strndup(v->value, (gsize)(dot - v->value));
    b->source_port = g_strdup(dot + 1);
    pending_binding pb = {index, c->n_inputs - 1, v};
    g_array_append_val(pending, pb);
  }
  return TRUE;
}

static gboolean parse_roles(ps_pipeline_component *c, const ps_ynode *roles, GError **error) {
  if (!roles || ps_ynode_is_null(roles))
    return TRUE;
  if (roles->kind != PS_YNODE_MAPPING) {
    g_autofree char *got = ps_ynode_describe(roles);
    return fail(error, roles, "components.%s.roles: expected a mapping glob -> role, got %s", c->name, got);
  }
  size_t n = ps_ynode_size(roles);
  c->roles = g_new0(ps_role_override, n + 1);
  for (size_t i = 0; i < n; i++) {
    const ps_ynode *k = ps_ynode_key_at(roles, i);
    const ps_ynode *v = ps_ynode_value_at(roles, i);
    ps_role role;
    if (v->kind != PS_YNODE_SCALAR || !ps_role_from_name(v->value, &role)) {
      const char *names[PS_ROLE_COUNT];
      GString *all = g_string_new(NULL);
      for (int r = 0; r < PS_ROLE_COUNT; r++) {
        names[r] = ps_role_name((ps_role)r);
        g_string_append_printf(all, "%s%s", r ? "|" : "", names[r]);
      }
      g_autofree char *got = ps_ynode_describe(v);
      const char *near = v->kind == PS_YNODE_SCALAR ? ps_closest_name(v->value, names, PS_ROLE_COUNT) : NULL;
      g_autofree char *hint = near ? g_strdup_printf(" (did you mean '%s'?)", near) : g_strdup("");
      gboolean r = fail(error, v, "components.%s.roles.%s: expected one of %s, got %s%s", c->name, k->value,
                        all->str, got, hint);
      g_string_free(all, TRUE);
      return r;
    }
    c->roles[c->n_roles].pattern = g_strdup(k->value);
    c->roles[c->n_roles].role = role;
    c->n_roles++;
  }
  return TRUE;
}

static gboolean parse_component(ps_pipeline *p, size_t index, const ps_ynode *key, ps_ynode *value,
                                GHashTable *real_files, ps_component_lookup lookup, void *user,
                                GArray *pending, GError **error) {
  ps_pipeline_component *c = &p->components[index];
  c->name = g_strdup(key->value);
  c->where = ps_ynode_where(key);
  c->weights_prefix = g_strdup("");
  if (strcmp(c->name, "data") == 0 || strchr(c->name, '.') || c->name[0] == '\0')
    return fail(error, key, "components.%s: a component name must be non-empty, without '.', and not 'data'",
                c->name);
  if (value->kind != PS_YNODE_MAPPING) {
    g_autofree char *got = ps_ynode_describe(value);
    return fail(error, value, "components.%s: expected a mapping (plugin, with, inputs, ...), got %s", c->name,
                got);
  }
  g_autofree char *in = g_strdup_printf(" in components.%s", c->name);
  if (!check_keys(value, component_keys, G_N_ELEMENTS(component_keys), "key", in, error))
    return FALSE;
  const ps_ynode *plugin = ps_ynode_get(value, "plugin");
  if (!plugin || ps_ynode_is_null(plugin))
    return fail(error, key, "components.%s: missing required key 'plugin' (a registered component name)",
                c->name);
  g_autofree char *ppath = g_strdup_printf("components.%s.plugin", c->name);
  if (!get_string(plugin, ppath, &c->plugin, error))
    return FALSE;
  c->desc = lookup(c->plugin, user);
  if (!c->desc)
    return fail(error, plugin, "%s: unknown plugin component '%s' (no loaded plugin registers it)", ppath,
                c->plugin);
  if (c->desc->kind == PS_KIND_STAGE)
    return fail(error, plugin, "%s: '%s' is a stage; stages go under 'stages:', not 'components:'", ppath,
                c->plugin);
  g_autofree char *wpath = g_strdup_printf("components.%s.with", c->name);
  const ps_ynode *with = ps_ynode_get(value, "with");
  c->config = ps_config_from_node(c->desc->config, with, wpath, c->desc->name, with ? with : key, NULL, error);
  if (!c->config)
    return FALSE;
  if (!parse_inputs(c, ps_ynode_get(value, "inputs"), pending, index, error))
    return FALSE;
  ps_ynode *weights = ps_ynode_get(value, "weights");
  if (weights && !ps_ynode_is_null(weights)) {
    g_autofree char *raw = NULL;
    g_autofree char *wp = g_strdup_printf("components.%s.weights", c->name);
    if (!get_string(weights, wp, &raw, error))
      return FALSE;
    c->weights = resolve_path(weights, real_files);
    /* The re-emitted document must load from any directory. */
    g_free(weights->value);
    weights->value = g_strdup(c->weights);
    weights->quoted = TRUE;
  }
  const ps_ynode *prefix = ps_ynode_get(value, "weights_prefix");
  if (prefix && !ps_ynode_is_null(prefix)) {
    g_autofree char *pp = g_strdup_printf("components.%s.weights_prefix", c->name);
    g_clear_pointer(&c->weights_prefix, g_free);
    if (!get_string(prefix, pp, &c->weights_prefix, error))
      return FALSE;
  }
  return parse_roles(c, ps_ynode_get(value, "roles"), error);
}

static gboolean check_bindings(ps_pipeline *p, GArray *pending, GHashTable *by_name, GError **error) {
  for (guint i = 0; i < pending->len; i++) {
    const pending_binding *pb = &g_array_index(pending, pending_binding, i);
    const ps_pipeline_component *c = &p->components[pb->component];
    const ps_binding *b = &c->inputs[pb->binding];
    if (strcmp(b->source, "data") == 0)
      continue;
    gpointer found;
    if (!g_hash_table_lookup_extended(by_name, b->source, NULL, &found)) {
      g_autofree const char **names = g_new0(const char *, p->n_components + 1);
      for (size_t j = 0; j < p->n_components; j++)
        names[j] = p->components[j].name;
      g_autofree char *hint = suggest(b->source, names, p->n_components, NULL);
      return fail(error, pb->node,
                  "components.%s.inputs.%s: dangling binding '%s.%s': there is no component '%s'%s",
                  c->name, b->port, b->source, b->source_port, b->source,
                  *hint ? hint : " (a source is a component instance or 'data')");
    }
    const ps_pipeline_component *src = &p->components[GPOINTER_TO_SIZE(found)];
    if (port_index(src->desc->outputs, b->source_port) < 0) {
      g_autofree const char **names = port_names(src->desc->outputs);
      g_autofree char *hint = suggest(b->source_port, names, port_count(src->desc->outputs), "its outputs are");
      return fail(error, pb->node, "components.%s.inputs.%s: dangling binding '%s.%s': %s (%s) has no output '%s'%s",
                  c->name, b->port, b->source, b->source_port, src->name, src->desc->name, b->source_port,
                  hint);
    }
  }
  return TRUE;
}

static gboolean check_required_inputs(ps_pipeline *p, const ps_ynode *comps, GError **error) {
  for (size_t i = 0; i < p->n_components; i++) {
    const ps_pipeline_component *c = &p->components[i];
    for (size_t j = 0; c->desc->inputs && c->desc->inputs[j].name; j++) {
      const ps_port_desc *port = &c->desc->inputs[j];
      gboolean bound = FALSE;
      for (size_t k = 0; k < c->n_inputs && !bound; k++)
        bound = strcmp(c->inputs[k].port, port->name) == 0;
      if (bound || port->optional)
        continue;
      /* Component i was built from entry i of `components`. */
      const ps_ynode *inputs = ps_ynode_get(ps_ynode_value_at(comps, i), "inputs");
      const ps_ynode *at = inputs ? inputs : ps_ynode_key_at(comps, i);
      return fail(error, at, "components.%s.inputs: required input '%s' of %s is not bound%s%s%s", c->name,
                  port->name, c->desc->name, port->doc ? " (" : "", port->doc ? port->doc : "",
                  port->doc ? ")" : "");
    }
  }
  return TRUE;
}

/* A binary min-heap of indices, so that ready components leave in document order. */
typedef struct {
  size_t *a;
  size_t n;
} heap;

static void heap_push(heap *h, size_t v) {
  size_t i = h->n++;
  h->a[i] = v;
  while (i > 0 && h->a[(i - 1) / 2] > h->a[i]) {
    size_t par = (i - 1) / 2, t = h->a[par];
    h->a[par] = h->a[i];
    h->a[i] = t;
    i = par;
  }
}

static size_t heap_pop(heap *h) {
  size_t top = h->a[0];
  h->a[0] = h->a[--h->n];
  for (size_t i = 0;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < h->n && h->a[l] < h->a[m])
      m = l;
    if (r < h->n && h->a[r] < h->a[m])
      m = r;
    if (m == i)
      break;
    size_t t = h->a[m];
    h->a[m] = h->a[i];
    h->a[i] = t;
    i = m;
  }
  return top;
}

static gboolean topo_order(ps_pipeline *p, GHashTable *by_name, const ps_ynode *comps, GError **error) {
  size_t n = p->n_components;
  g_autofree size_t *indeg = g_new0(size_t, n + 1);
  g_autofree size_t *heap_mem = g_new0(size_t, n + 1);
  /* consumers[i]: the components that read an output of i, once per binding. */
  g_autoptr(GPtrArray) consumers = g_ptr_array_new_with_free_func((GDestroyNotify)g_array_unref);
  for (size_t i = 0; i < n; i++)
    g_ptr_array_add(consumers, g_array_new(FALSE, FALSE, sizeof(size_t)));
  for (size_t i = 0; i < n; i++) {
    for (size_t k = 0; k < p->components[i].n_inputs; k++) {
      gpointer src;
      if (g_hash_table_lookup_extended(by_name, p->components[i].inputs[k].source, NULL, &src)) {
        g_array_append_val(g_ptr_array_index(consumers, GPOINTER_TO_SIZE(src)), i);
        indeg[i]++;
      }
    }
  }
  heap h = {heap_mem, 0};
  for (size_t i = 0; i < n; i++)
    if (indeg[i] == 0)
      heap_push(&h, i);
  p->order = g_new0(size_t, n + 1);
  size_t done = 0;
  while (h.n) {
    size_t u = heap_pop(&h);
    p->order[done++] = u;
    GArray *out = g_ptr_array_index(consumers, u);
    for (guint k = 0; k < out->len; k++) {
      size_t v = g_array_index(out, size_t, k);
      if (--indeg[v] == 0)
        heap_push(&h, v);
    }
  }
  if (done == n)
    return TRUE;
  /* Every component left has a predecessor that is also left: walk
   * predecessors until one repeats, which closes a cycle. */
  size_t start = 0;
  while (indeg[start] == 0)
    start++;
  g_autofree size_t *seen_at = g_new0(size_t, n + 1); /* step + 1 at which a node was visited */
  g_autoptr(GArray) walk = g_array_new(FALSE, FALSE, sizeof(size_t));
  size_t u = start;
  while (!seen_at[u]) {
    g_array_append_val(walk, u);
    seen_at[u] = walk->len;
    const ps_pipeline_component *c = &p->components[u];
    for (size_t k = 0; k < c->n_inputs; k++) {
      gpointer src;
      if (g_hash_table_lookup_extended(by_name, c->inputs[k].source, NULL, &src) &&
          indeg[GPOINTER_TO_SIZE(src)] > 0) {
        u = GPOINTER_TO_SIZE(src);
        break;
      }
    }
  }
  /* walk[seen_at[u]-1 ..] is the cycle in reverse data-flow order. */
  GString *chain = g_string_new(p->components[u].name);
  for (size_t k = walk->len; k-- > seen_at[u] - 1;)
    g_string_append_printf(chain, " -> %s", p->components[g_array_index(walk, size_t, k)].name);
  const ps_ynode *at = ps_ynode_key_at(comps, u);
  gboolean r = fail(error, at, "components: the inputs form a cycle: %s (each feeds the next)", chain->str);
  g_string_free(chain, TRUE);
  return r;
}

static gboolean parse_stage(ps_pipeline *p, size_t index, const ps_ynode *key, const ps_ynode *value,
                            ps_component_lookup lookup, void *user, GError **error) {
  ps_pipeline_stage *s = &p->stages[index];
  s->name = g_strdup(key->value);
  s->where = ps_ynode_where(key);
  s->enabled = TRUE;
  if (value->kind != PS_YNODE_MAPPING) {
    g_autofree char *got = ps_ynode_describe(value);
    return fail(error, value, "stages.%s: expected a mapping (plugin, enabled, config keys), got %s", s->name,
                got);
  }
  const ps_ynode *plugin = ps_ynode_get(value, "plugin");
  if (!plugin || ps_ynode_is_null(plugin))
    return fail(error, key, "stages.%s: missing required key 'plugin' (a registered stage name)", s->name);
  g_autofree char *ppath = g_strdup_printf("stages.%s.plugin", s->name);
  if (!get_string(plugin, ppath, &s->plugin, error))
    return FALSE;
  s->desc = lookup(s->plugin, user);
  if (!s->desc)
    return fail(error, plugin, "%s: unknown plugin component '%s' (no loaded plugin registers it)", ppath,
                s->plugin);
  if (s->desc->kind != PS_KIND_STAGE)
    return fail(error, plugin, "%s: '%s' is a component of kind %s, not a stage", ppath, s->plugin,
                ps_kind_name(s->desc->kind));
  const ps_ynode *enabled = ps_ynode_get(value, "enabled");
  if (enabled && !ps_ynode_is_null(enabled)) {
    if (enabled->kind != PS_YNODE_SCALAR || enabled->quoted ||
        !(strcmp(enabled->value, "true") == 0 || strcmp(enabled->value, "false") == 0)) {
      g_autofree char *got = ps_ynode_describe(enabled);
      return fail(error, enabled, "stages.%s.enabled: expected a bool (true or false), got %s", s->name, got);
    }
    s->enabled = strcmp(enabled->value, "true") == 0;
  }
  static const char *const skip[] = {"plugin", "enabled", NULL};
  g_autofree char *path = g_strdup_printf("stages.%s", s->name);
  s->config = ps_config_from_node(s->desc->config, value, path, s->desc->name, key, skip, error);
  return s->config != NULL;
}

static gboolean build_top(ps_pipeline *p, ps_ynode *tree, const char *path, GError **error) {
  if (!check_keys(tree, top_keys, G_N_ELEMENTS(top_keys), "top-level key", "", error))
    return FALSE;
  const ps_ynode *ext = ps_ynode_get(tree, "extends");
  if (ext)
    return fail(error, ext, "extends: only a file can extend another (not --set or text)");
  static const char *const skip[] = {"components", "stages", NULL};
  g_autoptr(ps_config) top = ps_config_from_node(top_schema, tree, "", "the pipeline", tree, skip, error);
  if (!top)
    return FALSE;
  const char *name = ps_config_string(top, "name");
  if (name && *name) {
    p->name = g_strdup(name);
  } else {
    g_autofree char *base = g_path_get_basename(path);
    char *dot = strrchr(base, '.');
    if (dot && dot != base)
      *dot = '\0';
    p->name = g_strdup(base);
    /* The name came from the file name: write it down, so that
     * resolved_yaml names the same run wherever it is saved. */
    ps_ynode *value = ps_ynode_new_scalar(p->name, TRUE, tree->file, tree->line, tree->col);
    if (ps_ynode_get(tree, "name")) {
      ps_ynode_map_set(tree, "name", value);
    } else {
      g_ptr_array_insert(tree->keys, 0, ps_ynode_new_scalar("name", FALSE, tree->file, tree->line, tree->col));
      g_ptr_array_insert(tree->items, 0, value);
    }
  }
  p->description = g_strdup(ps_config_string(top, "description"));
  p->seed = ps_config_int(top, "seed");
  p->device = strcmp(ps_config_string(top, "device"), "cuda") == 0 ? PS_DEVICE_CUDA : PS_DEVICE_CPU;
  p->precision = strcmp(ps_config_string(top, "precision"), "bf16") == 0 ? PS_PRECISION_BF16
                                                                          : PS_PRECISION_F32;
  if (p->precision == PS_PRECISION_BF16 && p->device != PS_DEVICE_CUDA)
    return fail(error, ps_ynode_get(tree, "precision"),
                "precision: bf16 needs device: cuda (the CPU computes in f32)");
  p->threads = (int)ps_config_int(top, "threads");
  p->run_dir = g_strdup(ps_config_string(top, "run_dir"));
  return TRUE;
}

static gboolean expect_mapping(const ps_ynode *n, const char *key, GError **error) {
  if (!n || ps_ynode_is_null(n) || n->kind == PS_YNODE_MAPPING)
    return TRUE;
  g_autofree char *got = ps_ynode_describe(n);
  return fail(error, n, "%s: expected a mapping of names to entries, got %s", key, got);
}

static gboolean build(ps_pipeline *p, ps_ynode *tree, const char *path, GHashTable *real_files,
                      ps_component_lookup lookup, void *user, GError **error) {
  if (tree->kind != PS_YNODE_MAPPING) {
    g_autofree char *got = ps_ynode_describe(tree);
    return fail(error, tree, "the top level of a pipeline must be a mapping, got %s", got);
  }
  if (!build_top(p, tree, path, error))
    return FALSE;

  ps_ynode *comps = ps_ynode_get(tree, "components");
  if (!expect_mapping(comps, "components", error))
    return FALSE;
  size_t nc = comps && comps->kind == PS_YNODE_MAPPING ? ps_ynode_size(comps) : 0;
  p->components = g_new0(ps_pipeline_component, nc + 1);
  g_autoptr(GArray) pending = g_array_new(FALSE, FALSE, sizeof(pending_binding));
  g_autoptr(GHashTable) by_name = g_hash_table_new(g_str_hash, g_str_equal);
  for (size_t i = 0; i < nc; i++) {
    const ps_ynode *key = ps_ynode_key_at(comps, i);
    ps_ynode *value = ps_ynode_value_at(comps, i);
    p->n_components++;
    if (!parse_component(p, i, key, value, real_files, lookup, user, pending, error))
      return FALSE;
    g_hash_table_insert(by_name, p->components[i].name, GSIZE_TO_POINTER(i));
  }
  if (!check_bindings(p, pending, by_name, error) || !check_required_inputs(p, comps, error) ||
      !topo_order(p, by_name, comps, error))
    return FALSE;

  const ps_ynode *stages = ps_ynode_get(tree, "stages");
  if (!expect_mapping(stages, "stages", error))
    return FALSE;
  size_t ns = stages && stages->kind == PS_YNODE_MAPPING ? ps_ynode_size(stages) : 0;
  p->stages = g_new0(ps_pipeline_stage, ns + 1);
  for (size_t i = 0; i < ns; i++) {
    p->n_stages++;
    if (!parse_stage(p, i, ps_ynode_key_at(stages, i), ps_ynode_value_at(stages, i), lookup, user, error))
      return FALSE;
  }
  p->resolved_yaml = ps_ynode_emit(tree, error);
  return p->resolved_yaml != NULL;
}

ps_pipeline *ps_pipeline_build(ps_ynode *tree, const char *path, GHashTable *real_files,
                               ps_component_lookup lookup, void *user, GError **error) {
  g_return_val_if_fail(tree && lookup, NULL);
  g_autoptr(ps_pipeline) p = g_new0(ps_pipeline, 1);
  p->path = g_strdup(path);
  if (!build(p, tree, path, real_files, lookup, user, error))
    return NULL;
  return g_steal_pointer(&p);
}
