/* plugin.c — the benchmark plugin: `stage.build_benchmark` makes the
 * triplet benchmark (tiles, masks, queries, reasoning chains, splits) and
 * `dataset.benchmark` serves it to training stages; `annotator.template`
 * writes template reasoning chains through the "annotator" capability. */
#include <string.h>

#include "benchmark.h"

static const ps_port_desc no_ports[] = {{NULL}};

static const ps_stage_iface build_stage = {sizeof(ps_stage_iface), ps_build_run, 0};
static const void *build_capability(const char *name) {
  return strcmp(name, "stage") == 0 ? &build_stage : NULL;
}
static const ps_component_vtable build_vtable = {
    sizeof(ps_component_vtable), ps_build_create, ps_build_destroy, NULL, NULL, NULL,
};
static const ps_component_desc build_desc = {
    sizeof(ps_component_desc), PS_KIND_STAGE, "stage.build_benchmark",
    "Builds the reasoning-segmentation benchmark: tiles, masks, queries and reasoning chains "
    "from the synthetic generator, public datasets (converters) or slide/converter manifests; "
    "reasoning chains from an annotator component (default: the template), 8:1:1 splits grouped "
    "by patient plus a zero-shot split, as PNGs and a JSON Lines manifest.",
    ps_build_config, no_ports, no_ports, &build_vtable, build_capability,
};

static const void *bench_capability(const char *name) {
  if (strcmp(name, "dataset") == 0) return &ps_bench_dataset;
  if (strcmp(name, "manifest_tools") == 0) return &ps_bench_manifest_tools;
  return NULL;
}
static const ps_component_vtable bench_vtable = {
    sizeof(ps_component_vtable), ps_bench_create, ps_bench_destroy, NULL, NULL, NULL,
};
static const ps_component_desc bench_desc = {
    sizeof(ps_component_desc), PS_KIND_DATASET, "dataset.benchmark",
    "Rows of a benchmark manifest as batches: image [B,3,S,S] f32 in [0,1], mask [B,1,S,S], "
    "input_ids/labels [B,T] i32 in the chat layout, seg_positions [B] i32, lengths [B] i32.",
    ps_bench_config, no_ports, no_ports, &bench_vtable, bench_capability,
};

static const ps_component_desc *const components[] = {&build_desc, &bench_desc, &ps_template_annotator_desc,
                                                      NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "benchmark",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Benchmark building (synthetic, converter and manifest sources; template annotator) and its dataset.",
    .components = components,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
