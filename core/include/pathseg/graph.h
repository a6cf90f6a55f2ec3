/* graph.h — the component graph of a pipeline and its executor.
 *
 * A graph holds one instance of each pipeline component, wired by the
 * pipeline's port bindings. Forward runs components in topological order;
 * backward runs in reverse, but only through components that need it: a
 * component takes part in backward when it has a trainable parameter, or
 * when some component upstream of it does (its inputs then need gradients).
 * Gradients arriving at an output port from several consumers are summed.
 *
 * Stages (plugins of kind `stage`) drive a graph through this API: they put
 * a batch of data fields in, run forward, compute their loss from outputs,
 * seed the gradient of the loss and run backward. */
#pragma once

#include <glib.h>
#include <pathseg/pipeline.h>
#include <pathseg/plugin.h>

G_BEGIN_DECLS

typedef struct ps_graph ps_graph;

/* Creates every component (and loads `weights:` files by parameter name). */
ps_graph *ps_graph_new(const ps_pipeline *pipeline, ps_context *ctx, GError **error);
void ps_graph_free(ps_graph *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_graph, ps_graph_free)

ps_context *ps_graph_context(const ps_graph *g);
size_t ps_graph_count(const ps_graph *g);
const char *ps_graph_name(const ps_graph *g, size_t index); /* instance names, pipeline order */
/* The plugin `self` of an instance, with its descriptor; NULL when absent. */
void *ps_graph_self(const ps_graph *g, const char *instance, const ps_component_desc **desc);
const void *ps_graph_capability(const ps_graph *g, const char *instance, const char *name);

/* Chooses what trains: a parameter trains when its role (after the
 * pipeline's `roles:` overrides) is in `roles`, and `only` is NULL or names
 * its component instance. Allocates zeroed gradient buffers for those and
 * frees all others. Returns the number of trainable scalars. */
int64_t ps_graph_set_trainable(ps_graph *g, const ps_role *roles, size_t n_roles,
                               const char *const *only, GError **error);

/* Visits every parameter of every instance (trainable ones have grad set). */
typedef void (*ps_param_visit)(const char *instance, ps_param *param, void *user);
void ps_graph_visit_params(ps_graph *g, ps_param_visit visit, void *user);
/* The instances whose outputs `instance` depends on, itself included, in
 * pipeline order (NULL-terminated; g_strfreev), or NULL when there is no
 * such instance. A loss's upstream is what its gradient can reach. */
char **ps_graph_upstream(const ps_graph *g, const char *instance);

/* Runs forward for the components that `targets` (instance names, NULL-
 * terminated; NULL = all) depend on, with `data` providing the data.FIELD
 * bindings. */
gboolean ps_graph_forward(ps_graph *g, const ps_ports *data, const char *const *targets,
                          GError **error);
/* An output of the last forward: "instance.port" split in two. */
ps_tensor *ps_graph_output(const ps_graph *g, const char *instance, const char *port);

/* Zeroes every trainable parameter's gradient. */
void ps_graph_zero_grad(ps_graph *g);
/* Adds `grad` (same shape as the output) to the gradient of an output. */
gboolean ps_graph_seed_grad(ps_graph *g, const char *instance, const char *port,
                            const ps_tensor *grad, GError **error);
/* Backward from the seeded outputs through the components that need it;
 * parameter gradients accumulate (+=), output seeds are cleared. */
gboolean ps_graph_backward(ps_graph *g, GError **error);

/* Called by ps_graph_backward right after `instance`'s backward has run:
 * that instance's parameter gradients are then final for this pass (each
 * instance runs once per pass). The optimizer uses it to start reducing
 * gradients across ranks while earlier components still run backward. */
typedef void (*ps_backward_hook)(const char *instance, void *user);
void ps_graph_set_backward_hook(ps_graph *g, ps_backward_hook hook, void *user);

/* Loads parameters from a safetensors file by name (with an optional prefix
 * prepended to each parameter name). Every missing, wrongly shaped or (when
 * `strict`) unexpected tensor is reported at once. */
gboolean ps_graph_load_weights(ps_graph *g, const char *instance, const char *path,
                               const char *prefix, gboolean strict, GError **error);

/* A human-readable plan: components, bindings, order, trainable parameters. */
char *ps_graph_describe(const ps_graph *g);

G_END_DECLS
