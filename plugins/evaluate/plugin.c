/* plugin.c — the evaluate plugin: `stage.evaluate` (Dice/IoU per image,
 * dataset and overall; BLEU-4 and token F1 of the reasoning; zero-shot and
 * one-shot), `stage.report` (self-contained report.html) and `stage.infer`
 * (one image or slide region; also the "segment" capability behind
 * `pipeline segment`). */
#include <string.h>

#include "evaluate.h"
#include "evaluate_api.h"

static const ps_port_desc no_ports[] = {{NULL}};

static const ps_stage_iface eval_stage = {sizeof(ps_stage_iface), ev_eval_run, 0};
static const void *eval_capability(const char *name) {
  return strcmp(name, "stage") == 0 ? &eval_stage : NULL;
}
static const ps_component_vtable eval_vtable = {
    sizeof(ps_component_vtable), ev_eval_create, ev_eval_destroy, NULL, NULL, NULL,
};
static const ps_component_desc eval_desc = {
    sizeof(ps_component_desc),
    PS_KIND_STAGE,
    "stage.evaluate",
    "Reasoning segmentation of a split with greedy decoding: Dice and IoU per image, per source "
    "dataset and overall (no <SEG> = empty mask), corpus BLEU-4 and token F1 of the reasoning; "
    "zero-shot or one-shot (reference image + region tokens). Writes results.json, results.md and "
    "table2/3/6.csv in the run directory.",
    ev_eval_config,
    no_ports,
    no_ports,
    &eval_vtable,
    eval_capability,
};

static const ps_stage_iface report_stage = {sizeof(ps_stage_iface), ev_report_run, 0};
static const void *report_capability(const char *name) {
  return strcmp(name, "stage") == 0 ? &report_stage : NULL;
}
static const ps_component_vtable report_vtable = {
    sizeof(ps_component_vtable), ev_report_create, ev_report_destroy, NULL, NULL, NULL,
};
static const ps_component_desc report_desc = {
    sizeof(ps_component_desc),
    PS_KIND_STAGE,
    "stage.report",
    "A self-contained report.html: training curves (inline SVG), result tables and sample overlays "
    "(inline PNG) with their reasoning.",
    ev_report_config,
    no_ports,
    no_ports,
    &report_vtable,
    report_capability,
};

static const ps_stage_iface infer_stage = {sizeof(ps_stage_iface), ev_infer_run, 0};
static const void *infer_capability(const char *name) {
  if (strcmp(name, "stage") == 0) return &infer_stage;
  if (strcmp(name, PS_SEGMENT_CAPABILITY) == 0) return &ev_segment_iface;
  return NULL;
}
static const ps_component_vtable infer_vtable = {
    sizeof(ps_component_vtable), ev_infer_create, ev_infer_destroy, NULL, NULL, NULL,
};
static const ps_component_desc infer_desc = {
    sizeof(ps_component_desc),
    PS_KIND_STAGE,
    "stage.infer",
    "Reasoning segmentation of one image or slide region: prints the reasoning chain and writes "
    "mask.png, overlay.png, mask.geojson (QuPath) and result.json.",
    ev_infer_config,
    no_ports,
    no_ports,
    &infer_vtable,
    infer_capability,
};

static const ps_component_desc *const components[] = {&eval_desc, &report_desc, &infer_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "evaluate",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Evaluation (Tables 2, 3, 6), reports and inference.",
    .components = components,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) {
  return &plugin;
}
