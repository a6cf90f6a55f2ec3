/* segment.c — `pipeline segment`: reasoning segmentation of one image (or a
 * slide region) with a trained run. Argument parsing only; the work is the
 * "segment" capability of stage.infer (plugins/evaluate), so this program
 * links no image or tokenizer code. */
#include <glib/gstdio.h>
#include <pathseg/plugin.h>
#include <stdio.h>
#include <string.h>

#include "../../plugins/evaluate/evaluate_api.h"
#include "commands.h"

static int segment_usage(void) {
  fprintf(
      stderr,
      "usage: pipeline segment IMAGE \"QUERY\" [--model RUN_OR_CHECKPOINT] [--reference IMAGE "
      "MASK]\n"
      "                        [--out DIR] [--tokenizer FILE] [--max-new-tokens N]\n"
      "       pipeline segment --slide SLIDE (--level L | --mag M) --x X --y Y --w W --h H "
      "\"QUERY\" ...\n"
      "  writes DIR/mask.png, overlay.png, mask.geojson (QuPath) and result.json (default DIR: .)\n"
      "  --model defaults to the newest run under runs/\n");
  return 2;
}

static gboolean parse_int(const char *s, int64_t *out) {
  char *end = NULL;
  gint64 v = g_ascii_strtoll(s, &end, 10);
  if (!end || *end || end == s) return FALSE;
  *out = v;
  return TRUE;
}

/* The newest directory under runs/ with a checkpoint, or NULL. */
static char *newest_run(void) {
  g_autoptr(GDir) d = g_dir_open("runs", 0, NULL);
  if (!d) return NULL;
  char *best = NULL;
  gint64 best_t = -1;
  const char *name;
  while ((name = g_dir_read_name(d))) {
    g_autofree char *ck = g_build_filename("runs", name, "checkpoints", "last.safetensors", NULL);
    GStatBuf sb;
    if (g_stat(ck, &sb) != 0) continue;
    gint64 t = (gint64)sb.st_mtime;
    if (t > best_t) {
      best_t = t;
      g_free(best);
      best = g_build_filename("runs", name, NULL);
    }
  }
  return best;
}

int ps_cmd_segment(ps_registry *reg, int argc, char **argv) {
  ps_segment_request req = {.level = -1};
  g_autoptr(GPtrArray) pos = g_ptr_array_new();
  gboolean have_level = FALSE, have_xywh[4] = {FALSE, FALSE, FALSE, FALSE};
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    gboolean more = i + 1 < argc;
    int64_t v = 0;
    if (strcmp(a, "--model") == 0 && more)
      req.model = argv[++i];
    else if (strcmp(a, "--reference") == 0 && i + 2 < argc) {
      req.ref_image = argv[++i];
      req.ref_mask = argv[++i];
    } else if (strcmp(a, "--slide") == 0 && more)
      req.slide = argv[++i];
    else if (strcmp(a, "--out") == 0 && more)
      req.out_dir = argv[++i];
    else if (strcmp(a, "--tokenizer") == 0 && more)
      req.tokenizer = argv[++i];
    else if (strcmp(a, "--mag") == 0 && more) {
      char *end = NULL;
      req.mag = g_ascii_strtod(argv[++i], &end);
      if (!end || *end || req.mag <= 0) {
        fprintf(stderr, "pipeline segment: --mag needs a positive number, got '%s'\n", argv[i]);
        return 2;
      }
    } else if ((strcmp(a, "--level") == 0 || strcmp(a, "--x") == 0 || strcmp(a, "--y") == 0 ||
                strcmp(a, "--w") == 0 || strcmp(a, "--h") == 0 ||
                strcmp(a, "--max-new-tokens") == 0) &&
               more) {
      if (!parse_int(argv[++i], &v)) {
        fprintf(stderr, "pipeline segment: %s needs an integer, got '%s'\n", a, argv[i]);
        return 2;
      }
      if (strcmp(a, "--level") == 0)
        req.level = (int)v, have_level = TRUE;
      else if (strcmp(a, "--x") == 0)
        req.x = v, have_xywh[0] = TRUE;
      else if (strcmp(a, "--y") == 0)
        req.y = v, have_xywh[1] = TRUE;
      else if (strcmp(a, "--w") == 0)
        req.w = v, have_xywh[2] = TRUE;
      else if (strcmp(a, "--h") == 0)
        req.h = v, have_xywh[3] = TRUE;
      else
        req.max_new_tokens = v;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "pipeline segment: unexpected argument '%s'\n", a);
      return segment_usage();
    } else
      g_ptr_array_add(pos, (gpointer)a);
  }
  if (req.slide) {
    if (pos->len != 1 || !(have_xywh[0] && have_xywh[1] && have_xywh[2] && have_xywh[3]) ||
        (have_level && req.mag > 0)) {
      fprintf(stderr, "pipeline segment: a slide region needs \"QUERY\", --x, --y, --w, --h and "
                      "--level or --mag\n");
      return segment_usage();
    }
    req.query = g_ptr_array_index(pos, 0);
    if (!have_level && req.mag <= 0) req.level = 0;
  } else {
    if (pos->len != 2) return segment_usage();
    req.image = g_ptr_array_index(pos, 0);
    req.query = g_ptr_array_index(pos, 1);
  }
  g_autofree char *newest = NULL;
  if (!req.model) {
    req.model = newest = newest_run();
    if (!req.model) {
      fprintf(stderr, "pipeline segment: no --model given and no trained run under runs/\n");
      return 1;
    }
  }
  const ps_component_desc *d = ps_registry_find(reg, "stage.infer");
  const ps_segment_iface *seg = d && d->capability ? d->capability(PS_SEGMENT_CAPABILITY) : NULL;
  if (!seg || seg->struct_size < sizeof(ps_segment_iface)) {
    fprintf(stderr, "pipeline segment: no loaded plugin provides stage.infer (is "
                    "pathseg-evaluate.so installed?)\n");
    return 1;
  }
  GError *error = NULL;
  g_autoptr(GString) report = g_string_new(NULL);
  if (!seg->segment(&req, reg, report, &error)) {
    fprintf(stderr, "pipeline segment: %s\n", error ? error->message : "failed");
    g_clear_error(&error);
    return 1;
  }
  fputs(report->str, stdout);
  return 0;
}
