/* plugin.h — the plugin ABI. A plugin author needs this header and the ones
 * it includes, nothing else.
 *
 * A plugin is one shared object that exports one function:
 *
 *     PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void);
 *
 * It returns a pointer to a static, constant descriptor. The descriptor starts
 * with abi_major, abi_minor and struct_size; the host refuses a plugin whose
 * abi_major differs from PS_ABI_MAJOR or whose abi_minor is newer than the
 * host's, reads only struct_size bytes of it, and never unloads a plugin.
 * The descriptor lists components; a component has a kind, a dotted name
 * ("encoder.medsam"), a config schema, named input and output ports (tensors)
 * and a vtable. Anything beyond the vtable — generation for an LLM, a
 * stage's run loop, running a reference fixture — is an optional capability
 * that the host asks for by name, so the ABI grows without breaking.
 *
 * Rules for the vtable:
 *   - create() validates nothing that the schema already validated; it may
 *     fail with a GError (e.g. an inconsistent combination of keys).
 *   - params() lists every parameter under its official checkpoint name with
 *     a default role. The core loads weights into `value` by name, and sets
 *     `grad` to a zeroed buffer for the parameters that train in the current
 *     stage (NULL otherwise). backward() ADDS into non-NULL grads and does no
 *     gradient work for NULL ones.
 *   - forward() reads `in`, and sets each port of `out` to a tensor that the
 *     component owns and keeps valid until its next forward() or destroy().
 *   - backward() gets the gradient of the loss w.r.t. each output (NULL when
 *     none flows) and sets, for each input whose port has needs_grad, a
 *     component-owned tensor with the gradient w.r.t. that input.
 *
 * See plugins/example/ for a complete plugin in one file. */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

#include <pathseg/config.h>
#include <pathseg/error.h>
#include <pathseg/rng.h>
#include <pathseg/tensor.h>

G_BEGIN_DECLS

#define PS_ABI_MAJOR 1
#define PS_ABI_MINOR 2 /* 1.2: kernel-table memory and optimizer entries */

#define PS_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef enum {
  PS_KIND_AUGMENTER,
  PS_KIND_ENCODER,
  PS_KIND_LLM,
  PS_KIND_ADAPTER,
  PS_KIND_DECODER,
  PS_KIND_REWARD,
  PS_KIND_CRITIC,
  PS_KIND_ADVANTAGE,
  PS_KIND_STAGE,
  PS_KIND_DATASET,
  PS_KIND_METRIC,
  PS_KIND_TOKENIZER,
  PS_KIND_ANNOTATOR, /* ABI 1.1: writes reasoning chains (annotator.h) */
  PS_KIND_COUNT
} ps_kind;

const char *ps_kind_name(ps_kind kind);

/* ---------------------------------------------------------------------- */
/* Config schema: one entry per key, terminated by an entry with key NULL. */

typedef struct ps_config_key {
  const char *key;           /* dotted: "lora.r" is `lora: {r: ...}` in YAML */
  ps_type type;
  const char *default_value; /* YAML text ("16", "[1, 2]", "true"); NULL = required */
  double min, max;           /* inclusive range for numbers; ignored when min > max */
  const char *choices;       /* PS_TYPE_ENUM: "a|b|c" */
  const char *doc;           /* one line */
} ps_config_key;

/* Numbers that mean "no range" in ps_config_key. */
#define PS_NO_RANGE 1.0, 0.0

/* ---------------------------------------------------------------------- */
/* Ports and parameters. */

typedef struct ps_port_desc {
  const char *name;  /* "image" */
  const char *doc;   /* shape and meaning: "[B, 3, H, W] f32, RGB in [0, 1]" */
  gboolean optional; /* inputs only: may be left unbound */
} ps_port_desc;

typedef struct ps_port {
  const char *name;
  ps_tensor *tensor;  /* NULL when unbound / not produced */
  gboolean needs_grad; /* backward() must produce this input's gradient */
} ps_port;

typedef struct ps_ports {
  ps_port *items;
  size_t count;
} ps_ports;

/* The port's tensor, or NULL when the name is unknown or unbound. */
ps_tensor *ps_ports_get(const ps_ports *ports, const char *name);
/* The port itself, or NULL. */
ps_port *ps_ports_find(ps_ports *ports, const char *name);
/* Sets the tensor of an existing port; FALSE when there is no such port. */
gboolean ps_ports_set(ps_ports *ports, const char *name, ps_tensor *tensor);
/* A required input, with an error naming the component and port when absent. */
ps_tensor *ps_ports_require(const ps_ports *ports, const char *component, const char *name,
                            GError **error);

typedef enum {
  PS_ROLE_FROZEN,  /* never trains */
  PS_ROLE_FULL,    /* trains in full (decoder, SEG adapter, projector, ...) */
  PS_ROLE_LORA,    /* LoRA A/B matrices */
  PS_ROLE_ADAPTER, /* AdaptFormer adapters and similar */
  PS_ROLE_BACKBONE,/* pre-trained weights: train only where a stage says so */
  PS_ROLE_COUNT
} ps_role;

const char *ps_role_name(ps_role role);
gboolean ps_role_from_name(const char *name, ps_role *out);

typedef struct ps_param {
  const char *name; /* official checkpoint name: "image_encoder.blocks.0.attn.qkv.weight" */
  ps_tensor *value; /* owned by the component */
  ps_tensor *grad;  /* owned by the core; NULL when this parameter does not train */
  ps_role role;     /* the component's default; YAML may override */
} ps_param;

typedef struct ps_param_list {
  ps_param *items; /* owned by the component, stable between create and destroy */
  size_t count;
} ps_param_list;

/* ---------------------------------------------------------------------- */
/* The execution context handed to every call. */

typedef struct ps_context ps_context;

ps_device ps_context_device(const ps_context *ctx);
/* The kernel table of the context's device at the run's precision
 * (kernels.h: ps_kernels_get_precision); components take their table from
 * here, so that `precision: bf16` reaches their linear products. */
const struct ps_kernels *ps_context_kernels(const ps_context *ctx, GError **error);
/* The run's precision (a ps_precision of kernels.h: f32 0, bf16 1). */
int ps_context_precision(const ps_context *ctx);
int ps_context_threads(const ps_context *ctx);
gboolean ps_context_training(const ps_context *ctx); /* dropout on, caches for backward */
ps_rng *ps_context_rng(ps_context *ctx);
/* Scratch memory valid until the end of the current forward/backward call.
 * Aligned to 64 bytes. The arena grows only while it is being sized (the first
 * step); later steps reuse the same memory, so hot paths allocate nothing. */
void *ps_context_scratch(ps_context *ctx, size_t bytes);
/* For stages: switch training behaviour (dropout, caches) on or off, and
 * release all scratch memory at the end of a step. */
void ps_context_set_training(ps_context *ctx, gboolean training);
void ps_context_reset_scratch(ps_context *ctx);

/* ---------------------------------------------------------------------- */
/* The component vtable and descriptor. */

typedef struct ps_component_vtable {
  uint32_t struct_size; /* sizeof(ps_component_vtable) the plugin was built with */
  void *(*create)(const ps_config *config, ps_context *ctx, GError **error);
  void (*destroy)(void *self);
  /* May be NULL for components without parameters. */
  ps_param_list (*params)(void *self);
  /* May be NULL for components that are not part of a graph (stages, metrics). */
  gboolean (*forward)(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                      GError **error);
  /* May be NULL: the component is then a leaf that gradients do not cross. */
  gboolean (*backward)(void *self, ps_context *ctx, const ps_ports *grad_out, ps_ports *grad_in,
                       GError **error);
} ps_component_vtable;

typedef struct ps_component_desc {
  uint32_t struct_size; /* sizeof(ps_component_desc) the plugin was built with */
  ps_kind kind;
  const char *name;              /* unique across all plugins: "encoder.medsam" */
  const char *doc;               /* one paragraph */
  const ps_config_key *config;   /* terminated by {NULL} */
  const ps_port_desc *inputs;    /* terminated by {NULL} */
  const ps_port_desc *outputs;   /* terminated by {NULL} */
  const ps_component_vtable *vtable;
  /* Optional: an interface by name ("stage", "fixture", "generate", ...) or NULL. */
  const void *(*capability)(const char *name);
} ps_component_desc;

typedef struct ps_plugin_desc {
  uint32_t abi_major;   /* PS_ABI_MAJOR the plugin was built with */
  uint32_t abi_minor;   /* PS_ABI_MINOR the plugin was built with */
  uint32_t struct_size; /* sizeof(ps_plugin_desc) the plugin was built with */
  const char *name;     /* "example" */
  const char *version;  /* "0.1.0" */
  const char *license;  /* SPDX: "MIT" */
  const char *description;
  const ps_component_desc *const *components; /* NULL-terminated */
  /* Optional one-time initialisation; FALSE (with an error) refuses the plugin. */
  gboolean (*init)(GError **error);
} ps_plugin_desc;

typedef const ps_plugin_desc *(*ps_plugin_query_fn)(void);

/* Fills the three leading fields; use it first in every descriptor. */
#define PS_PLUGIN_HEADER PS_ABI_MAJOR, PS_ABI_MINOR, sizeof(ps_plugin_desc)

/* ---------------------------------------------------------------------- */
/* Capability "fixture": run a reference fixture (tests/fixtures, FORMAT.md)
 * through the component's own code. `pipeline fixture` finds the component
 * whose `components` list names the fixture's `component` metadata. */

typedef struct ps_fixture ps_fixture;

const char *ps_fixture_component(const ps_fixture *fx); /* "sam.image_encoder" */
const char *ps_fixture_config(const ps_fixture *fx);    /* JSON object text ("{}" if absent) */
const char *ps_fixture_metadata(const ps_fixture *fx, const char *key); /* or NULL */
/* Any tensor of the file (inputs, parameters) as an f32 copy / borrowed view. */
ps_tensor *ps_fixture_get_f32(const ps_fixture *fx, const char *name, GError **error);
const ps_tensor *ps_fixture_get(const ps_fixture *fx, const char *name, GError **error);
gboolean ps_fixture_has(const ps_fixture *fx, const char *name);
/* Names of all tensors in the file, NULL-terminated; g_free the array only. */
const char **ps_fixture_names(const ps_fixture *fx);
/* Finds a data file named in the config by its base name: each --data-dir,
 * then beside the fixture, then the project's test data. g_free the result. */
char *ps_fixture_find_data(const ps_fixture *fx, const char *file_name, GError **error);
/* Hands a result to the harness, which compares it with `output.NAME`. Takes
 * ownership of `t`. */
void ps_fixture_put(ps_fixture *fx, const char *name, ps_tensor *t);

typedef struct ps_fixture_iface {
  uint32_t struct_size;
  const char *const *components; /* fixture `component` names handled, NULL-terminated */
  gboolean (*run)(ps_fixture *fx, ps_context *ctx, GError **error);
} ps_fixture_iface;

G_END_DECLS
