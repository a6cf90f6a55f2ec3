/* infer.c — reasoning segmentation of one image or slide region with a
 * trained model, writing what a user takes away: the reasoning chain,
 * mask.png, overlay.png, mask.geojson (QuPath) and result.json. Two entry
 * points share it: `stage.infer` (pipelines/infer.yaml, the run's graph)
 * and the "segment" capability behind `pipeline segment` (a trained run
 * directory loaded here). */
#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <pathseg/error.h>
#include <pathseg/host.h>
#include <pathseg/safetensors.h>
#include <string.h>
#include <unistd.h>

#include "evaluate.h"
#include "evaluate_api.h"
#include "slide.h"

/* The pixels to segment: a file, or a region of a slide. */
typedef struct {
  uint8_t *rgb;
  int w, h;
  double scale, ox, oy; /* GeoJSON coordinates = pixel * scale + offset */
  int level;
  double downsample;
} source_image;

static gboolean read_slide_region(const ps_segment_request *req, source_image *im, GError **error) {
  if (!ps_slide_init_vips(error)) return FALSE;
  g_autoptr(ps_slide) s = ps_slide_open(req->slide, error);
  if (!s) return FALSE;
  int level = req->level;
  if (req->mag > 0) {
    double mx = 0, my = 0;
    if (!ps_slide_mpp(s, &mx, &my, error)) {
      g_prefix_error(error, "--mag needs the slide's resolution: ");
      return FALSE;
    }
    /* objective magnification ~ 10 / (microns per pixel): 0.25 um/px is 40x */
    double base = 10.0 / mx, best = INFINITY;
    for (int l = 0; l < ps_slide_level_count(s); l++) {
      double d = fabs(log(base / ps_slide_level_downsample(s, l) / req->mag));
      if (d < best) best = d, level = l;
    }
  }
  if (level < 0) level = 0;
  int64_t W0 = 0, H0 = 0;
  if (!ps_slide_level_size(s, level, &W0, &H0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s has no level %d (it has %d)", req->slide,
                level, ps_slide_level_count(s));
    return FALSE;
  }
  ps_slide_level_size(s, 0, &W0, &H0);
  double ds = ps_slide_level_downsample(s, level);
  if (req->w <= 0 || req->h <= 0 || req->w > 16384 || req->h > 16384) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "region size %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                " must be 1..16384 pixels per side",
                req->w, req->h);
    return FALSE;
  }
  if (req->x < 0 || req->y < 0 || req->x + (int64_t)ceil(req->w * ds) > W0 ||
      req->y + (int64_t)ceil(req->h * ds) > H0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "region x=%" G_GINT64_FORMAT " y=%" G_GINT64_FORMAT " w=%" G_GINT64_FORMAT
                " h=%" G_GINT64_FORMAT
                " at level %d (downsample %g) lies outside %s (level 0 is %" G_GINT64_FORMAT
                "x%" G_GINT64_FORMAT ")",
                req->x, req->y, req->w, req->h, level, ds, req->slide, W0, H0);
    return FALSE;
  }
  g_autofree uint8_t *rgba = g_malloc((gsize)req->w * req->h * 4);
  if (!ps_slide_read_region(s, req->x, req->y, level, (int)req->w, (int)req->h, rgba, error))
    return FALSE;
  im->w = (int)req->w;
  im->h = (int)req->h;
  im->rgb = g_malloc((gsize)im->w * im->h * 3);
  for (int64_t p = 0; p < (int64_t)im->w * im->h; p++) {
    /* transparent (outside the scanned area) composites onto white */
    double a = rgba[4 * p + 3] / 255.0;
    for (int c = 0; c < 3; c++)
      im->rgb[3 * p + c] = (uint8_t)lround(rgba[4 * p + c] * a + 255 * (1 - a));
  }
  im->scale = ds;
  im->ox = (double)req->x;
  im->oy = (double)req->y;
  im->level = level;
  im->downsample = ds;
  return TRUE;
}

static gboolean run_segment(ev_model *m, const ps_segment_request *req, GString *report,
                            GError **error) {
  if (!ev_png_init(error)) return FALSE;
  if (!req->query || !*req->query) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "no query given");
    return FALSE;
  }
  source_image im = {.scale = 1, .level = -1, .downsample = 1};
  if (req->slide && *req->slide) {
    if (!read_slide_region(req, &im, error)) return FALSE;
  } else if (req->image && *req->image) {
    im.rgb = ev_read_image(req->image, 3, &im.w, &im.h, error);
    if (!im.rgb) return FALSE;
  } else {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "no image or slide region given");
    return FALSE;
  }
  g_autofree uint8_t *rgb = im.rgb;
  g_autofree uint8_t *rimg = NULL, *rmask = NULL;
  ev_reference ref = {0};
  if (req->ref_image && *req->ref_image) {
    int mw = 0, mh = 0;
    if (!req->ref_mask || !*req->ref_mask) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "--reference needs an image and its mask");
      return FALSE;
    }
    rimg = ev_read_image(req->ref_image, 3, &ref.w, &ref.h, error);
    rmask = rimg ? ev_read_image(req->ref_mask, 1, &mw, &mh, error) : NULL;
    if (!rmask) return FALSE;
    if (mw != ref.w || mh != ref.h) {
      g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "reference %s is %dx%d but its mask %s is %dx%d",
                  req->ref_image, ref.w, ref.h, req->ref_mask, mw, mh);
      return FALSE;
    }
    ref.rgb = rimg;
    ref.mask = rmask;
  }
  if (req->max_new_tokens > 0) m->max_new_tokens = req->max_new_tokens;
  ev_prediction pred;
  if (!ev_predict(m, rgb, im.w, im.h, req->query, ref.rgb ? &ref : NULL, &pred, error))
    return FALSE;
  const char *out_dir = req->out_dir && *req->out_dir ? req->out_dir : ".";
  if (g_mkdir_with_parents(out_dir, 0755) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s: %s", out_dir, g_strerror(errno));
    ev_prediction_clear(&pred);
    return FALSE;
  }
  g_autofree char *mask_path = g_build_filename(out_dir, "mask.png", NULL);
  g_autofree char *ov_path = g_build_filename(out_dir, "overlay.png", NULL);
  g_autofree char *gj_path = g_build_filename(out_dir, "mask.geojson", NULL);
  g_autofree char *js_path = g_build_filename(out_dir, "result.json", NULL);
  g_autofree uint8_t *ov = g_malloc((gsize)im.w * im.h * 3);
  ev_overlay(rgb, pred.mask, im.w, im.h, ov);
  g_autofree char *geo = ev_geojson(pred.mask, im.w, im.h, im.scale, im.ox, im.oy, "pathseg");
  int64_t area = 0;
  for (int64_t p = 0; p < (int64_t)im.w * im.h; p++) area += pred.mask[p] != 0;
  /* result.json */
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "query");
  json_builder_add_string_value(b, req->query);
  json_builder_set_member_name(b, "reasoning");
  json_builder_add_string_value(b, pred.text);
  json_builder_set_member_name(b, "generated");
  json_builder_add_string_value(b, pred.raw ? pred.raw : "");
  json_builder_set_member_name(b, "has_seg");
  json_builder_add_boolean_value(b, pred.has_seg);
  json_builder_set_member_name(b, "seg_handling");
  json_builder_add_string_value(b, pred.has_seg ? "mask decoded from the first <SEG>"
                                                : "no <SEG> generated: empty mask");
  json_builder_set_member_name(b, "generated_tokens");
  json_builder_add_int_value(b, pred.n_tokens);
  json_builder_set_member_name(b, "width");
  json_builder_add_int_value(b, im.w);
  json_builder_set_member_name(b, "height");
  json_builder_add_int_value(b, im.h);
  json_builder_set_member_name(b, "mask_pixels");
  json_builder_add_int_value(b, area);
  double lsum = 0;
  for (int64_t p = 0; p < (int64_t)im.w * im.h; p++) lsum += pred.logits[p];
  json_builder_set_member_name(b, "mean_mask_logit");
  json_builder_add_double_value(b, lsum / ((double)im.w * im.h));
  json_builder_set_member_name(b, "image");
  json_builder_add_string_value(b, req->slide && *req->slide ? req->slide : req->image);
  if (req->slide && *req->slide) {
    json_builder_set_member_name(b, "region");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "x");
    json_builder_add_int_value(b, req->x);
    json_builder_set_member_name(b, "y");
    json_builder_add_int_value(b, req->y);
    json_builder_set_member_name(b, "level");
    json_builder_add_int_value(b, im.level);
    json_builder_set_member_name(b, "downsample");
    json_builder_add_double_value(b, im.downsample);
    json_builder_end_object(b);
  }
  if (ref.rgb) {
    json_builder_set_member_name(b, "reference_image");
    json_builder_add_string_value(b, req->ref_image);
    json_builder_set_member_name(b, "reference_mask");
    json_builder_add_string_value(b, req->ref_mask);
  }
  json_builder_set_member_name(b, "files");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "mask");
  json_builder_add_string_value(b, mask_path);
  json_builder_set_member_name(b, "overlay");
  json_builder_add_string_value(b, ov_path);
  json_builder_set_member_name(b, "geojson");
  json_builder_add_string_value(b, gj_path);
  json_builder_end_object(b);
  json_builder_end_object(b);
  g_autoptr(JsonGenerator) gen = json_generator_new();
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  json_generator_set_root(gen, root);
  json_generator_set_pretty(gen, TRUE);
  g_autofree char *js = json_generator_to_data(gen, NULL);
  gboolean ok = ev_write_png(mask_path, pred.mask, im.w, im.h, 1, error) &&
                ev_write_png(ov_path, ov, im.w, im.h, 3, error) &&
                g_file_set_contents(gj_path, geo, -1, error) &&
                g_file_set_contents(js_path, js, -1, error);
  if (ok) {
    g_string_append_printf(report, "reasoning: %s\n", pred.text);
    g_string_append_printf(report, "%s\n",
                           pred.has_seg ? "<SEG>: mask decoded from the first <SEG>"
                                        : "<SEG>: none generated, the mask is empty");
    g_string_append_printf(report, "mask: %s (%" G_GINT64_FORMAT " of %dx%d pixels)\n", mask_path,
                           area, im.w, im.h);
    g_string_append_printf(report, "overlay: %s\ngeojson: %s\nrecord: %s\n", ov_path, gj_path,
                           js_path);
  }
  ev_prediction_clear(&pred);
  return ok;
}

/* ---------------------------------------------------------------------- */
/* The "segment" capability: load a trained run and segment. */

static gboolean segment(const ps_segment_request *req, ps_registry *reg, GString *report,
                        GError **error) {
  if (!req->model || !*req->model) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "no --model RUN given");
    return FALSE;
  }
  g_autofree char *yaml = NULL, *tmp = NULL, *base = NULL;
  if (g_file_test(req->model, G_FILE_TEST_IS_DIR)) {
    yaml = g_build_filename(req->model, "pipeline.yaml", NULL);
    g_autofree char *abs = g_canonicalize_filename(req->model, NULL);
    g_autofree char *up = g_path_get_dirname(abs);
    base = g_path_get_dirname(up); /* the directory the run was started from (runs/NAME) */
  } else if (g_file_test(req->model, G_FILE_TEST_IS_REGULAR)) {
    /* a checkpoint file: its resolved pipeline is in the metadata */
    g_autoptr(ps_safetensors) st = ps_safetensors_open(req->model, error);
    if (!st) return FALSE;
    const char *cfg = ps_safetensors_metadata(st, "config");
    if (!cfg) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "%s: not a pathseg checkpoint (no config metadata)", req->model);
      return FALSE;
    }
    int fd = g_file_open_tmp("pathseg-model-XXXXXX.yaml", &tmp, error);
    if (fd < 0) return FALSE;
    close(fd);
    if (!g_file_set_contents(tmp, cfg, -1, error)) return FALSE;
    yaml = g_strdup(tmp);
  } else {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "model %s: no such run directory or checkpoint", req->model);
    return FALSE;
  }
  if (!g_file_test(yaml, G_FILE_TEST_IS_REGULAR)) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "model %s: no pipeline.yaml (not a run directory)", req->model);
    return FALSE;
  }
  g_autoptr(ps_pipeline) p = ps_pipeline_load(yaml, NULL, ps_registry_lookup, reg, error);
  if (tmp) g_unlink(tmp);
  if (!p) return FALSE;
  g_autoptr(ps_context) ctx = ps_context_new(p->device, p->threads, (uint64_t)p->seed);
  g_autoptr(ps_graph) g = ps_graph_new(p, ctx, error);
  if (!g || !ev_load_checkpoint(g, p, req->model, error)) return FALSE;
  ev_model m;
  if (!ev_model_init(&m, g, p, req->tokenizer, base, error)) {
    ev_model_clear(&m);
    return FALSE;
  }
  gboolean ok = run_segment(&m, req, report, error);
  ev_model_clear(&m);
  return ok;
}

const ps_segment_iface ev_segment_iface = {sizeof(ps_segment_iface), segment};

/* ---------------------------------------------------------------------- */
/* stage.infer */

typedef struct {
  ps_segment_request req;
  char *strings[9];
} ev_infer;

const ps_config_key ev_infer_config[] = {
    {"image", PS_TYPE_STRING, "", PS_NO_RANGE, NULL, "image file (or use slide)"},
    {"query", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "the question, in words"},
    {"model", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "run directory or checkpoint; empty: the run's own graph"},
    {"reference_image", PS_TYPE_STRING, "", PS_NO_RANGE, NULL, "one-shot reference image"},
    {"reference_mask", PS_TYPE_STRING, "", PS_NO_RANGE, NULL, "its mask"},
    {"slide", PS_TYPE_STRING, "", PS_NO_RANGE, NULL, "whole-slide image to take a region from"},
    {"level", PS_TYPE_INT, "0", 0, 64, NULL, "slide level read"},
    {"mag", PS_TYPE_FLOAT, "0", 0, 1000, NULL,
     "wanted magnification (picks the level; 0: use level)"},
    {"x", PS_TYPE_INT, "0", 0, 1e12, NULL, "region left, level-0 pixels"},
    {"y", PS_TYPE_INT, "0", 0, 1e12, NULL, "region top, level-0 pixels"},
    {"w", PS_TYPE_INT, "512", 1, 16384, NULL, "region width, pixels of the level read"},
    {"h", PS_TYPE_INT, "512", 1, 16384, NULL, "region height"},
    {"out_dir", PS_TYPE_STRING, "", PS_NO_RANGE, NULL, "where outputs go; empty: RUN/infer"},
    {"tokenizer", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "tokenizer.json; empty: beside the training manifest"},
    {"max_new_tokens", PS_TYPE_INT, "0", 0, 1e6, NULL,
     "generation budget (0: max_length - prompt)"},
    {NULL},
};

void ev_infer_destroy(void *self) {
  ev_infer *f = self;
  if (!f) return;
  for (size_t i = 0; i < G_N_ELEMENTS(f->strings); i++) g_free(f->strings[i]);
  g_free(f);
}

void *ev_infer_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  (void)ctx;
  (void)error;
  ev_infer *f = g_new0(ev_infer, 1);
  const char *keys[] = {"image",          "query", "model",   "reference_image",
                        "reference_mask", "slide", "out_dir", "tokenizer"};
  for (size_t i = 0; i < G_N_ELEMENTS(keys); i++) {
    const char *v = ps_config_string(cfg, keys[i]);
    f->strings[i] = g_strdup(v ? v : "");
  }
  ps_segment_request *r = &f->req;
  r->image = f->strings[0];
  r->query = f->strings[1];
  r->model = f->strings[2];
  r->ref_image = f->strings[3];
  r->ref_mask = f->strings[4];
  r->slide = f->strings[5];
  r->out_dir = f->strings[6];
  r->tokenizer = f->strings[7];
  r->level = (int)ps_config_int(cfg, "level");
  r->mag = ps_config_float(cfg, "mag");
  r->x = ps_config_int(cfg, "x");
  r->y = ps_config_int(cfg, "y");
  r->w = ps_config_int(cfg, "w");
  r->h = ps_config_int(cfg, "h");
  r->max_new_tokens = ps_config_int(cfg, "max_new_tokens");
  return f;
}

gboolean ev_infer_run(void *self, ps_run *run, GError **error) {
  ev_infer *f = self;
  ps_segment_request req = f->req;
  g_autofree char *out = NULL;
  if (!*req.out_dir) req.out_dir = out = g_build_filename(ps_run_dir(run), "infer", NULL);
  const ps_pipeline *p = ps_run_pipeline(run);
  if (!*req.model && !ev_graph_has_model(p, ps_run_stage(run))) {
    g_set_error(
        error, PS_ERROR, PS_ERROR_INVALID,
        "stage %s: `model` is empty and no earlier stage of this pipeline trains or loads a "
        "model; set it, e.g. --set stages.%s.model=runs/quickstart-...",
        ps_run_stage(run), ps_run_stage(run));
    return FALSE;
  }
  if (*req.model && !ev_load_checkpoint(ps_run_graph(run), p, req.model, error)) return FALSE;
  ev_model m;
  if (!ev_model_init(&m, ps_run_graph(run), p, req.tokenizer, NULL, error)) {
    ev_model_clear(&m);
    return FALSE;
  }
  g_autoptr(GString) report = g_string_new(NULL);
  gboolean ok = run_segment(&m, &req, report, error);
  ev_model_clear(&m);
  if (ok) {
    g_auto(GStrv) lines = g_strsplit(report->str, "\n", -1);
    for (size_t i = 0; lines[i]; i++)
      if (*lines[i]) ps_run_log(run, "%s", lines[i]);
  }
  return ok;
}
