/* host.h — the API of programs that drive pathseg: contexts, component
 * instances and the fixture harness. (Plugins see contexts only through the
 * accessors in plugin.h.) */
#pragma once

#include <glib.h>
#include <pathseg/comm.h>
#include <pathseg/pipeline.h>
#include <pathseg/plugin.h>
#include <pathseg/registry.h>

G_BEGIN_DECLS

ps_context *ps_context_new(ps_device device, int threads, uint64_t seed);
void ps_context_free(ps_context *ctx);
/* The precision components compute at (kernels.h: ps_precision); f32 unless set. */
void ps_context_set_precision(ps_context *ctx, int precision);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_context, ps_context_free)
/* Makes `comm` (borrowed; it must outlive the context) the context's
 * ranks: see comm.h. Without it a context is a single process. */
void ps_context_set_comm(ps_context *ctx, ps_comm *comm);
/* How many times the scratch arena had to grow (a test checks it stops). */
size_t ps_context_scratch_grows(const ps_context *ctx);

/* One instance of a registered component. */
typedef struct ps_component ps_component;

ps_component *ps_component_new(const ps_component_desc *desc, const ps_config *config,
                               const char *instance_name, ps_context *ctx, GError **error);
void ps_component_free(ps_component *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_component, ps_component_free)
const char *ps_component_name(const ps_component *c);
const ps_component_desc *ps_component_desc_of(const ps_component *c);
void *ps_component_self(const ps_component *c);
ps_param_list ps_component_params(const ps_component *c);
const void *ps_component_capability(const ps_component *c, const char *name);

/* ---------------------------------------------------------------------- */
/* The fixture harness behind `pipeline fixture` (FORMAT.md). */

typedef struct ps_fixture_result {
  char *output;        /* "output.NAME" */
  double max_abs_err;  /* over all elements */
  double max_rel_err;  /* |got - want| / |want| over elements with want != 0 */
  double atol, rtol;   /* the tolerance applied */
  gboolean passed;
  char *problem;       /* why it failed beyond tolerance (missing, shape), or NULL */
} ps_fixture_result;

/* Runs one fixture file through the registered component that handles its
 * `component`. `results` receives one ps_fixture_result* per output (free with
 * ps_fixture_result_free). Returns TRUE when every output passed; FALSE with
 * an error when the fixture could not be run at all, or FALSE without an error
 * when it ran and some output failed. */
gboolean ps_fixture_run_file(const ps_registry *reg, const char *path,
                             const char *const *data_dirs, GPtrArray *results, GError **error);
void ps_fixture_result_free(ps_fixture_result *r);

G_END_DECLS
