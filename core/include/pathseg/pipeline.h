/* pipeline.h — a pipeline YAML file, loaded, merged and validated.
 *
 * File layout (every key is checked; unknown keys are errors with a
 * suggestion):
 *
 *   name: quickstart                 # run directory prefix
 *   description: one paragraph
 *   extends: base.yaml               # or a list; deep-merged, base first
 *   seed: 1234
 *   device: cpu                      # cpu | cuda
 *   precision: f32                   # f32 | bf16 (cuda: bf16 tensor-core products)
 *   threads: 0                       # 0 = all cores
 *   run_dir: runs
 *   components:
 *     medsam:                        # instance name
 *       plugin: encoder.medsam       # a registered component name
 *       with: {preset: tiny, adapters: {dim: 16}}   # config, checked against the schema
 *       inputs: {image: data.image}  # port -> "component.port" or "data.FIELD"
 *       weights: path.safetensors    # optional, loaded by parameter name
 *       weights_prefix: ""           # optional, prepended to parameter names
 *       roles: {"blocks.*.adaptmlp.*": adapter}   # optional role overrides (glob -> role)
 *   stages:                          # run in document order
 *     sft:
 *       plugin: stage.sft
 *       enabled: true                # optional
 *       steps: 100                   # every other key is the stage's config
 *
 * Merging: `extends` files are loaded first (relative to the extending file;
 * cycles are errors), then the file's own mapping is merged over them:
 * mappings merge key by key, any other value replaces, and `~` (null) deletes
 * the key. `--set a.b.c=value` overrides are applied last, parsed as YAML
 * scalars or flow collections and type-checked against the schema.
 *
 * Limits: 4 MiB per file, nesting depth 64, 1,000 aliases, 200,000 nodes,
 * 16 levels of extends. */
#pragma once

#include <glib.h>
#include <pathseg/plugin.h>

G_BEGIN_DECLS

typedef struct ps_binding {
  char *port;          /* input port of the component */
  char *source;        /* component instance name, or "data" */
  char *source_port;   /* output port, or data field */
} ps_binding;

typedef struct ps_role_override {
  char *pattern; /* glob over parameter names (g_pattern_match_simple) */
  ps_role role;
} ps_role_override;

typedef struct ps_pipeline_component {
  char *name;                    /* instance name */
  char *plugin;                  /* registered component name */
  const ps_component_desc *desc;
  ps_config *config;
  ps_binding *inputs;
  size_t n_inputs;
  char *weights;                 /* absolute path or NULL */
  char *weights_prefix;          /* "" when absent */
  ps_role_override *roles;
  size_t n_roles;
  char *where;                   /* "file:line:col" of the entry, for messages */
} ps_pipeline_component;

typedef struct ps_pipeline_stage {
  char *name;
  char *plugin;
  const ps_component_desc *desc;
  ps_config *config;
  gboolean enabled;
  char *where;
} ps_pipeline_stage;

typedef struct ps_pipeline {
  char *path;         /* the file given, resolved */
  char *name;
  char *description;
  int64_t seed;
  ps_device device;
  int precision; /* ps_precision (kernels.h) */
  int threads;
  char *run_dir;
  ps_pipeline_component *components; /* in document order */
  size_t n_components;
  size_t *order;                     /* topological order: indices into components */
  ps_pipeline_stage *stages;
  size_t n_stages;
  char *resolved_yaml;               /* the merged document, re-emitted as YAML */
} ps_pipeline;

/* Returns the component descriptor registered under `name`, or NULL. */
typedef const ps_component_desc *(*ps_component_lookup)(const char *name, void *user);

/* Resolves a pipeline file name: as given when it exists (relative to the
 * working directory), else in each of `search_dirs` (the installed
 * pipelines/). */
char *ps_pipeline_find(const char *name, const char *const *search_dirs, GError **error);

/* Loads, merges, overrides and validates. Errors name file:line:col and the
 * key path ("components.medsam.with.depth"). */
ps_pipeline *ps_pipeline_load(const char *path, const char *const *overrides,
                              ps_component_lookup lookup, void *user, GError **error);
void ps_pipeline_free(ps_pipeline *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_pipeline, ps_pipeline_free)

const ps_pipeline_component *ps_pipeline_get_component(const ps_pipeline *p, const char *name);

/* Builds a config from YAML flow/block mapping text against a schema (tests,
 * the fixture harness, the `describe` command's defaults). `origin` names the
 * text in errors. */
ps_config *ps_config_parse(const ps_config_key *schema, const char *yaml_text, const char *origin,
                           GError **error);
void ps_config_free(ps_config *cfg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_config, ps_config_free)

G_END_DECLS
