/* evaluate_api.h — the "segment" capability of `stage.infer`, through which
 * the `pipeline segment` command runs reasoning segmentation with a trained
 * run without linking the plugin: the command fills a request, asks the
 * component descriptor for PS_SEGMENT_CAPABILITY and calls segment().
 *
 * Outputs written to out_dir: mask.png (0/255, the image's size), overlay.png,
 * mask.geojson (a FeatureCollection of Polygons that QuPath imports; image
 * pixels, or level-0 slide pixels for a slide region) and result.json (query,
 * reasoning, whether <SEG> was generated, mask area, files, region). */
#pragma once

#include <glib.h>
#include <stdint.h>

#include <pathseg/registry.h>

G_BEGIN_DECLS

#define PS_SEGMENT_CAPABILITY "segment"

typedef struct ps_segment_request {
  const char *model; /* run directory (pipeline.yaml + checkpoints/last.safetensors) */
  const char *image; /* image file, or NULL with `slide` */
  const char *query;
  const char *ref_image; /* one-shot reference image and mask, or NULL */
  const char *ref_mask;
  const char *slide;      /* whole-slide image, or NULL */
  int level;              /* slide level (-1: from mag) */
  double mag;             /* wanted magnification (0: use level) */
  int64_t x, y;           /* region's top-left corner, level-0 pixels */
  int64_t w, h;           /* region size in pixels of the level read */
  const char *out_dir;    /* created when missing */
  const char *tokenizer;  /* tokenizer.json, or NULL: beside the training manifest */
  int64_t max_new_tokens; /* 0: the default */
} ps_segment_request;

typedef struct ps_segment_iface {
  uint32_t struct_size;
  /* Runs the request; appends what the command prints (the reasoning chain,
   * the files written) to `report`. */
  gboolean (*segment)(const ps_segment_request *req, ps_registry *reg, GString *report,
                      GError **error);
} ps_segment_iface;

G_END_DECLS
