/* plugin.c — the converters plugin: `stage.convert` turns a public
 * pathology dataset, in its published layout, into the benchmark's triplet
 * manifest (convert.h). */
#include <pathseg/plugin.h>
#include <pathseg/run.h>
#include <string.h>

#include "convert.h"

typedef struct {
  conv_options o;
  char *format, *input_dir, *out_dir;
  ps_run *run; /* while running */
} convert_stage;

static const ps_config_key convert_config[] = {
    {"format", PS_TYPE_ENUM, NULL, PS_NO_RANGE, conv_formats, "the dataset's published layout"},
    {"input_dir", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "the dataset folder as published (or the one above it)"},
    {"out_dir", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "where images/, masks/ and manifest.jsonl go"},
    {"seed", PS_TYPE_INT, "1", 0, 1e15, NULL, "seed of the 8:1:1 patient split and of the query phrasing"},
    {"threshold", PS_TYPE_INT, "128", 1, 255, NULL, "grey masks (JPEG, soft edges): foreground when >= this"},
    {"min_component", PS_TYPE_INT, "4", 1, 1e9, NULL, "smallest mask piece the descriptors count (pixels)"},
    {"negatives", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "keep images without the target (DigestPath negatives, tumour-free Camelyon tiles)"},
    {"downsample", PS_TYPE_FLOAT, "1", 1e-6, 1e6, NULL,
     "Camelyon tiles: level-0 pixels per tile pixel when a tile name has no _d<DS>"},
    {NULL},
};

static void destroy(void *self) {
  convert_stage *s = self;
  g_free(s->format);
  g_free(s->input_dir);
  g_free(s->out_dir);
  g_free(s);
}

static void *create(const ps_config *cfg, ps_context *ctx, GError **error) {
  (void)ctx;
  (void)error;
  convert_stage *s = g_new0(convert_stage, 1);
  conv_options_init(&s->o);
  s->o.format = s->format = g_strdup(ps_config_string(cfg, "format"));
  s->o.input_dir = s->input_dir = g_strdup(ps_config_string(cfg, "input_dir"));
  s->o.out_dir = s->out_dir = g_strdup(ps_config_string(cfg, "out_dir"));
  s->o.seed = (uint64_t)ps_config_int(cfg, "seed");
  s->o.threshold = (int)ps_config_int(cfg, "threshold");
  s->o.min_component = (int)ps_config_int(cfg, "min_component");
  s->o.negatives = ps_config_bool(cfg, "negatives");
  s->o.downsample = ps_config_float(cfg, "downsample");
  return s;
}

static void log_to_run(void *user, const char *message) {
  ps_run_log(((convert_stage *)user)->run, "%s", message);
}
static gboolean run_cancelled(void *user) { return ps_run_cancelled(((convert_stage *)user)->run); }

static gboolean run(void *self, ps_run *r, GError **error) {
  convert_stage *s = self;
  s->run = r;
  s->o.log = log_to_run;
  s->o.cancelled = run_cancelled;
  s->o.log_user = s;
  conv_stats st;
  gboolean ok = ps_convert(&s->o, &st, error);
  s->run = NULL;
  return ok;
}

static const ps_port_desc no_ports[] = {{NULL}};
static const ps_stage_iface stage = {sizeof(ps_stage_iface), run, 0};
static const void *capability(const char *name) { return strcmp(name, "stage") == 0 ? &stage : NULL; }
static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, destroy, NULL, NULL, NULL};
static const ps_component_desc convert_desc = {
    sizeof(ps_component_desc), PS_KIND_STAGE, "stage.convert",
    "Converts a public pathology dataset in its published layout (GlaS, CRAG, Camelyon16/17 tiles + ASAP XML, "
    "DigestPath, WSSS4LUAD, EBHI-Seg, MoNuSeg, CPM-15) into the benchmark's triplet manifest: PNG image and "
    "binary mask copies, template queries and reasoning chains, 8:1:1 splits grouped by patient or slide.",
    convert_config, no_ports, no_ports, &vtable, capability,
};
static const ps_component_desc *const components[] = {&convert_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "converters",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Converters from public pathology datasets to the benchmark manifest.",
    .components = components,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
