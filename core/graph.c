/* graph.c — component instances wired by port bindings; forward in
 * topological order, backward in reverse through the components that need
 * gradients (see graph.h). */
#include <pathseg/graph.h>
#include <pathseg/kernels.h>
#include <pathseg/host.h>
#include <pathseg/safetensors.h>
#include <string.h>

typedef struct {
  const ps_pipeline_component *pc;
  ps_component *comp;
  ps_ports in, out, grad_in, grad_out;
  int *src_node;       /* per input: node index, -1 for data, -2 unbound */
  int *src_port;       /* per input: output index of the source node */
  ps_tensor **gbuf;    /* per output: accumulated gradient (owned) */
  gboolean *gvalid;    /* per output: gbuf holds a gradient of this backward */
  gboolean ran;        /* forward ran for this node since the last backward */
  gboolean has_trainable;
  gboolean requires_grad; /* it or something upstream trains */
} node;

struct ps_graph {
  const ps_pipeline *pipeline;
  ps_context *ctx;
  node *nodes;
  size_t n;
  ps_backward_hook hook; /* after each instance's backward, or NULL */
  void *hook_user;
};

void ps_graph_set_backward_hook(ps_graph *g, ps_backward_hook hook, void *user) {
  g->hook = hook;
  g->hook_user = user;
}

static size_t count_ports(const ps_port_desc *d) {
  size_t n = 0;
  while (d && d[n].name) n++;
  return n;
}

static void ports_init(ps_ports *p, const ps_port_desc *d) {
  p->count = count_ports(d);
  p->items = g_new0(ps_port, p->count ? p->count : 1);
  for (size_t i = 0; i < p->count; i++) p->items[i].name = d[i].name;
}

static int find_node(const ps_graph *g, const char *name) {
  for (size_t i = 0; i < g->n; i++)
    if (strcmp(g->nodes[i].pc->name, name) == 0) return (int)i;
  return -1;
}

static int find_port(const ps_port_desc *d, const char *name) {
  for (int i = 0; d && d[i].name; i++)
    if (strcmp(d[i].name, name) == 0) return i;
  return -1;
}

ps_graph *ps_graph_new(const ps_pipeline *pipeline, ps_context *ctx, GError **error) {
  g_autoptr(ps_graph) g = g_new0(ps_graph, 1);
  g->pipeline = pipeline;
  g->ctx = ctx;
  g->n = pipeline->n_components;
  g->nodes = g_new0(node, g->n ? g->n : 1);
  for (size_t i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    nd->pc = &pipeline->components[i];
    const ps_component_desc *d = nd->pc->desc;
    ports_init(&nd->in, d->inputs);
    ports_init(&nd->grad_in, d->inputs);
    ports_init(&nd->out, d->outputs);
    ports_init(&nd->grad_out, d->outputs);
    nd->src_node = g_new0(int, nd->in.count + 1);
    nd->src_port = g_new0(int, nd->in.count + 1);
    nd->gbuf = g_new0(ps_tensor *, nd->out.count + 1);
    nd->gvalid = g_new0(gboolean, nd->out.count + 1);
  }
  for (size_t i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    for (size_t k = 0; k < nd->in.count; k++) nd->src_node[k] = -2;
    for (size_t b = 0; b < nd->pc->n_inputs; b++) {
      const ps_binding *bind = &nd->pc->inputs[b];
      int port = find_port(nd->pc->desc->inputs, bind->port);
      if (port < 0) continue; /* the loader already refused it */
      if (strcmp(bind->source, "data") == 0) {
        nd->src_node[port] = -1;
        continue;
      }
      int src = find_node(g, bind->source);
      int sp = src >= 0 ? find_port(g->nodes[src].pc->desc->outputs, bind->source_port) : -1;
      if (src < 0 || sp < 0) {
        g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "%s: input '%s' is bound to %s.%s, which does not exist",
                    nd->pc->where, bind->port, bind->source, bind->source_port);
        return NULL;
      }
      nd->src_node[port] = src;
      nd->src_port[port] = sp;
    }
  }
  for (size_t i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    nd->comp = ps_component_new(nd->pc->desc, nd->pc->config, nd->pc->name, ctx, error);
    if (!nd->comp) return NULL;
    if (nd->pc->weights &&
        !ps_graph_load_weights(g, nd->pc->name, nd->pc->weights, nd->pc->weights_prefix, FALSE,
                               error))
      return NULL;
  }
  return g_steal_pointer(&g);
}

void ps_graph_free(ps_graph *g) {
  if (!g) return;
  for (size_t i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    if (nd->comp) {
      ps_param_list pl = ps_component_params(nd->comp);
      for (size_t k = 0; k < pl.count; k++) g_clear_pointer(&pl.items[k].grad, ps_tensor_free);
      ps_component_free(nd->comp);
    }
    for (size_t k = 0; k < nd->out.count; k++) ps_tensor_free(nd->gbuf[k]);
    g_free(nd->in.items);
    g_free(nd->out.items);
    g_free(nd->grad_in.items);
    g_free(nd->grad_out.items);
    g_free(nd->src_node);
    g_free(nd->src_port);
    g_free(nd->gbuf);
    g_free(nd->gvalid);
  }
  g_free(g->nodes);
  g_free(g);
}

ps_context *ps_graph_context(const ps_graph *g) { return g->ctx; }
size_t ps_graph_count(const ps_graph *g) { return g->n; }
const char *ps_graph_name(const ps_graph *g, size_t index) {
  return index < g->n ? g->nodes[index].pc->name : NULL;
}

void *ps_graph_self(const ps_graph *g, const char *instance, const ps_component_desc **desc) {
  int i = find_node(g, instance);
  if (i < 0) return NULL;
  if (desc) *desc = g->nodes[i].pc->desc;
  return ps_component_self(g->nodes[i].comp);
}

const void *ps_graph_capability(const ps_graph *g, const char *instance, const char *name) {
  int i = find_node(g, instance);
  return i < 0 ? NULL : ps_component_capability(g->nodes[i].comp, name);
}

static ps_role effective_role(const node *nd, const ps_param *p) {
  ps_role role = p->role;
  for (size_t r = 0; r < nd->pc->n_roles; r++)
    if (g_pattern_match_simple(nd->pc->roles[r].pattern, p->name)) role = nd->pc->roles[r].role;
  return role;
}

int64_t ps_graph_set_trainable(ps_graph *g, const ps_role *roles, size_t n_roles,
                               const char *const *only, GError **error) {
  int64_t total = 0;
  for (size_t i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    gboolean selected = only == NULL;
    for (size_t k = 0; only && only[k]; k++)
      if (strcmp(only[k], nd->pc->name) == 0) selected = TRUE;
    nd->has_trainable = FALSE;
    ps_param_list pl = ps_component_params(nd->comp);
    for (size_t k = 0; k < pl.count; k++) {
      ps_param *p = &pl.items[k];
      ps_role role = effective_role(nd, p);
      gboolean trains = FALSE;
      for (size_t r = 0; selected && r < n_roles; r++) trains = trains || roles[r] == role;
      if (trains && p->value->dtype != PS_DTYPE_F32) {
        g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s: parameter '%s' is %s; only F32 trains",
                    nd->pc->name, p->name, ps_dtype_name(p->value->dtype));
        return -1;
      }
      if (trains) {
        if (!p->grad) {
          p->grad = ps_tensor_new_on(p->value->device, PS_DTYPE_F32, p->value->ndim,
                                     p->value->shape, error);
          if (!p->grad) return -1;
        }
        nd->has_trainable = TRUE;
        total += ps_tensor_numel(p->value);
      } else {
        g_clear_pointer(&p->grad, ps_tensor_free);
      }
    }
  }
  /* requires_grad flows downstream, in topological order. */
  for (size_t o = 0; o < g->n; o++) {
    node *nd = &g->nodes[g->pipeline->order[o]];
    nd->requires_grad = nd->has_trainable;
    for (size_t k = 0; k < nd->in.count; k++)
      if (nd->src_node[k] >= 0 && g->nodes[nd->src_node[k]].requires_grad)
        nd->requires_grad = TRUE;
  }
  return total;
}

void ps_graph_visit_params(ps_graph *g, ps_param_visit visit, void *user) {
  for (size_t i = 0; i < g->n; i++) {
    ps_param_list pl = ps_component_params(g->nodes[i].comp);
    for (size_t k = 0; k < pl.count; k++) visit(g->nodes[i].pc->name, &pl.items[k], user);
  }
}

/* Marks the nodes `targets` depend on. */
static void mark_needed(const ps_graph *g, int i, gboolean *needed) {
  if (needed[i]) return;
  needed[i] = TRUE;
  const node *nd = &g->nodes[i];
  for (size_t k = 0; k < nd->in.count; k++)
    if (nd->src_node[k] >= 0) mark_needed(g, nd->src_node[k], needed);
}

char **ps_graph_upstream(const ps_graph *g, const char *instance) {
  int i = find_node(g, instance);
  if (i < 0) return NULL;
  g_autofree gboolean *needed = g_new0(gboolean, g->n + 1);
  mark_needed(g, i, needed);
  GPtrArray *names = g_ptr_array_new();
  for (size_t k = 0; k < g->n; k++)
    if (needed[k]) g_ptr_array_add(names, g_strdup(g->nodes[k].pc->name));
  g_ptr_array_add(names, NULL);
  return (char **)g_ptr_array_free(names, FALSE);
}

gboolean ps_graph_forward(ps_graph *g, const ps_ports *data, const char *const *targets,
                          GError **error) {
  g_autofree gboolean *needed = g_new0(gboolean, g->n + 1);
  if (!targets) {
    for (size_t i = 0; i < g->n; i++) needed[i] = TRUE;
  } else {
    for (size_t t = 0; targets[t]; t++) {
      int i = find_node(g, targets[t]);
      if (i < 0) {
        g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "no component instance '%s' in pipeline %s",
                    targets[t], g->pipeline->path);
        return FALSE;
      }
      mark_needed(g, i, needed);
    }
  }
  for (size_t o = 0; o < g->n; o++) {
    size_t i = g->pipeline->order[o];
    node *nd = &g->nodes[i];
    if (!needed[i]) continue;
    if (!nd->pc->desc->vtable->forward && nd->out.count == 0) continue; /* e.g. a dataset */
    if (!nd->pc->desc->vtable->forward) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "%s (%s) has no forward()", nd->pc->name,
                  nd->pc->desc->name);
      return FALSE;
    }
    for (size_t k = 0; k < nd->in.count; k++) {
      ps_port *port = &nd->in.items[k];
      port->tensor = NULL;
      port->needs_grad = FALSE;
      if (nd->src_node[k] == -1) {
        const ps_pipeline_component *pc = nd->pc;
        for (size_t b = 0; b < pc->n_inputs; b++)
          if (strcmp(pc->inputs[b].port, port->name) == 0)
            port->tensor = ps_ports_get(data, pc->inputs[b].source_port);
        if (!port->tensor) {
          g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                      "%s: input '%s' is bound to a data field the stage did not provide",
                      nd->pc->name, port->name);
          return FALSE;
        }
      } else if (nd->src_node[k] >= 0) {
        node *src = &g->nodes[nd->src_node[k]];
        port->tensor = src->out.items[nd->src_port[k]].tensor;
        port->needs_grad = src->requires_grad;
      }
    }
    for (size_t k = 0; k < nd->out.count; k++) nd->out.items[k].tensor = NULL;
    GError *local = NULL;
    if (!nd->pc->desc->vtable->forward(ps_component_self(nd->comp), g->ctx, &nd->in, &nd->out,
                                       &local)) {
      g_set_error(error, PS_ERROR, local ? (ps_error_code)local->code : PS_ERROR_FAILED,
                  "%s (%s) forward: %s", nd->pc->name, nd->pc->desc->name,
                  local ? local->message : "failed without a reason");
      g_clear_error(&local);
      return FALSE;
    }
    nd->ran = TRUE;
  }
  return TRUE;
}

ps_tensor *ps_graph_output(const ps_graph *g, const char *instance, const char *port) {
  int i = find_node(g, instance);
  return i < 0 ? NULL : ps_ports_get(&g->nodes[i].out, port);
}

/* Zeroes t on whichever device it lives. */
static void zero_tensor(ps_tensor *t) {
  const ps_kernels *k = ps_kernels_get(t->device, NULL);
  if (k) k->mem_zero(t->data, t->nbytes);
}

void ps_graph_zero_grad(ps_graph *g) {
  for (size_t i = 0; i < g->n; i++) {
    ps_param_list pl = ps_component_params(g->nodes[i].comp);
    for (size_t k = 0; k < pl.count; k++)
      if (pl.items[k].grad) zero_tensor(pl.items[k].grad);
  }
}

/* gbuf[port] (+)= grad, allocating on the first use or a shape change. */
static gboolean accumulate(node *nd, size_t port, const ps_tensor *grad, GError **error) {
  if (grad->dtype != PS_DTYPE_F32) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s: gradient of '%s' is %s; expected F32",
                nd->pc->name, nd->out.items[port].name, ps_dtype_name(grad->dtype));
    return FALSE;
  }
  const ps_tensor *out = nd->out.items[port].tensor;
  if (out && ps_tensor_numel(out) != ps_tensor_numel(grad)) {
    char a[96], b[96];
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s: gradient of '%s' has shape %s, the output %s",
                nd->pc->name, nd->out.items[port].name, ps_shape_format(grad, a, sizeof a),
                ps_shape_format(out, b, sizeof b));
    return FALSE;
  }
  /* The gradient buffer lives where the output does (a gradient may come
   * from a component on another device, e.g. a seed made on the host). */
  ps_device device = out ? out->device : grad->device;
  ps_tensor *buf = nd->gbuf[port];
  if (!nd->gvalid[port]) {
    if (!buf || buf->nbytes != grad->nbytes || buf->device != device) {
      ps_tensor_free(buf);
      buf = nd->gbuf[port] = ps_tensor_new_on(device, PS_DTYPE_F32, grad->ndim, grad->shape, error);
      if (!buf) return FALSE;
    }
    buf->ndim = grad->ndim;
    memcpy(buf->shape, grad->shape, sizeof buf->shape);
    if (!ps_tensor_copy_into(buf, grad, error)) return FALSE;
    nd->gvalid[port] = TRUE;
    return TRUE;
  }
  const ps_kernels *k = ps_kernels_get(device, error);
  if (!k) return FALSE;
  g_autoptr(ps_tensor) moved = NULL;
  if (grad->device != device) {
    moved = ps_tensor_to_device(grad, device, error);
    if (!moved) return FALSE;
    grad = moved;
  }
  k->axpy(buf->data, 1.0f, grad->data, ps_tensor_numel(grad));
  return TRUE;
}

gboolean ps_graph_seed_grad(ps_graph *g, const char *instance, const char *port,
                            const ps_tensor *grad, GError **error) {
  int i = find_node(g, instance);
  int p = i < 0 ? -1 : find_port(g->nodes[i].pc->desc->outputs, port);
  if (p < 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "no output %s.%s to seed a gradient at",
                instance, port);
    return FALSE;
  }
  return accumulate(&g->nodes[i], (size_t)p, grad, error);
}

gboolean ps_graph_backward(ps_graph *g, GError **error) {
  gboolean ok = TRUE;
  for (size_t o = g->n; o-- > 0 && ok;) {
    node *nd = &g->nodes[g->pipeline->order[o]];
    gboolean any = FALSE;
    for (size_t k = 0; k < nd->out.count; k++) {
      nd->grad_out.items[k].tensor = nd->gvalid[k] ? nd->gbuf[k] : NULL;
      any = any || nd->gvalid[k];
    }
    if (!any || !nd->ran || !nd->requires_grad) continue;
    if (!nd->pc->desc->vtable->backward) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                  "%s (%s) has trainable parameters upstream but no backward()", nd->pc->name,
                  nd->pc->desc->name);
      ok = FALSE;
      break;
    }
    for (size_t k = 0; k < nd->in.count; k++) {
      nd->grad_in.items[k].tensor = NULL;
      nd->grad_in.items[k].needs_grad = nd->in.items[k].needs_grad;
    }
    GError *local = NULL;
    if (!nd->pc->desc->vtable->backward(ps_component_self(nd->comp), g->ctx, &nd->grad_out,
                                        &nd->grad_in, &local)) {
      g_set_error(error, PS_ERROR, local ? (ps_error_code)local->code : PS_ERROR_FAILED,
                  "%s (%s) backward: %s", nd->pc->name, nd->pc->desc->name,
                  local ? local->message : "failed without a reason");
      g_clear_error(&local);
      ok = FALSE;
      break;
    }
    for (size_t k = 0; k < nd->in.count && ok; k++) {
      const ps_tensor *gin = nd->grad_in.items[k].tensor;
      if (!gin || !nd->in.items[k].needs_grad || nd->src_node[k] < 0) continue;
      ok = accumulate(&g->nodes[nd->src_node[k]], (size_t)nd->src_port[k], gin, error);
    }
    if (ok && g->hook) g->hook(nd->pc->name, g->hook_user);
  }
  /* Clear every seed and every pass mark, also after a failure. */
  for (size_t i = 0; i < g->n; i++) {
    for (size_t k = 0; k < g->nodes[i].out.count; k++) g->nodes[i].gvalid[k] = FALSE;
    g->nodes[i].ran = FALSE;
  }
  return ok;
}

gboolean ps_graph_load_weights(ps_graph *g, const char *instance, const char *path,
                               const char *prefix, gboolean strict, GError **error) {
  int i = find_node(g, instance);
  if (i < 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "no component instance '%s'", instance);
    return FALSE;
  }
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, error);
  if (!st) return FALSE;
  if (!prefix) prefix = "";
  ps_param_list pl = ps_component_params(g->nodes[i].comp);
  g_autoptr(GString) problems = g_string_new(NULL);
  g_autoptr(GHashTable) used = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  size_t n_problems = 0;
  for (size_t k = 0; k < pl.count; k++) {
    ps_param *p = &pl.items[k];
    g_autofree char *name = g_strconcat(prefix, p->name, NULL);
    char a[96], b[96];
    if (!ps_safetensors_has(st, name)) {
      g_string_append_printf(problems, "\n  missing: %s %s", name, ps_shape_format(p->value, a, sizeof a));
      n_problems++;
      continue;
    }
    g_hash_table_add(used, g_strdup(name));
    const ps_tensor *t = ps_safetensors_get(st, name, error);
    if (!t) return FALSE;
    if (ps_tensor_numel(t) != ps_tensor_numel(p->value) || t->ndim != p->value->ndim ||
        memcmp(t->shape, p->value->shape, sizeof(int64_t) * t->ndim) != 0) {
      g_string_append_printf(problems, "\n  wrong shape: %s is %s in the file, %s in the model", name,
                             ps_shape_format(t, a, sizeof a), ps_shape_format(p->value, b, sizeof b));
      n_problems++;
      continue;
    }
    if (p->value->dtype == PS_DTYPE_F32 && p->value->device == PS_DEVICE_CPU) {
      /* converts in pieces and drops the file pages it read: a load peaks
       * near the weights' size, not twice that */
      if (!ps_safetensors_read_f32(st, name, p->value, error)) return FALSE;
    } else if (p->value->dtype == PS_DTYPE_F32) {
      /* a device parameter: convert on the host, then copy */
      g_autoptr(ps_tensor) host = ps_tensor_new(PS_DTYPE_F32, p->value->ndim, p->value->shape, error);
      if (!host || !ps_safetensors_read_f32(st, name, host, error) ||
          !ps_tensor_copy_into(p->value, host, error))
        return FALSE;
    } else if (t->dtype == p->value->dtype) {
      if (!ps_tensor_copy_into(p->value, t, error)) return FALSE;
    } else {
      g_string_append_printf(problems, "\n  wrong dtype: %s is %s in the file, %s in the model", name,
                             ps_dtype_name(t->dtype), ps_dtype_name(p->value->dtype));
      n_problems++;
    }
  }
  if (strict) {
    for (size_t k = 0; k < ps_safetensors_count(st); k++) {
      const char *name = ps_safetensors_name(st, k);
      if (g_str_has_prefix(name, prefix) && !g_hash_table_contains(used, name)) {
        g_string_append_printf(problems, "\n  unexpected: %s", name);
        n_problems++;
      }
    }
  }
  if (n_problems) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s: %zu problem%s loading weights into '%s':%s",
                path, n_problems, n_problems == 1 ? "" : "s", instance, problems->str);
    return FALSE;
  }
  return TRUE;
}

char *ps_graph_describe(const ps_graph *g) {
  GString *s = g_string_new(NULL);
  g_string_append_printf(s, "components (%zu):\n", g->n);
  for (size_t i = 0; i < g->n; i++) {
    const node *nd = &g->nodes[i];
    g_string_append_printf(s, "  %s: %s (%s)\n", nd->pc->name, nd->pc->desc->name,
                           ps_kind_name(nd->pc->desc->kind));
    for (size_t b = 0; b < nd->pc->n_inputs; b++)
      g_string_append_printf(s, "    %s <- %s.%s\n", nd->pc->inputs[b].port, nd->pc->inputs[b].source,
                             nd->pc->inputs[b].source_port);
    ps_param_list pl = ps_component_params(nd->comp);
    int64_t by_role[PS_ROLE_COUNT] = {0};
    for (size_t k = 0; k < pl.count; k++)
      by_role[effective_role(nd, &pl.items[k])] += ps_tensor_numel(pl.items[k].value);
    if (pl.count) {
      g_string_append_printf(s, "    parameters: %zu tensors;", pl.count);
      for (int r = 0; r < PS_ROLE_COUNT; r++)
        if (by_role[r])
          g_string_append_printf(s, " %s %" G_GINT64_FORMAT, ps_role_name((ps_role)r), by_role[r]);
      g_string_append_c(s, '\n');
    }
  }
  g_string_append(s, "order:");
  for (size_t o = 0; o < g->n; o++)
    g_string_append_printf(s, " %s%s", o ? "-> " : "", g->nodes[g->pipeline->order[o]].pc->name);
  g_string_append_c(s, '\n');
  return g_string_free(s, FALSE);
}
