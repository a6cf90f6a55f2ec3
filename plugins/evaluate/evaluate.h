/* evaluate.h — what the files of the evaluate plugin share (internal):
 * mask metrics, image helpers, contour tracing and exports, the model
 * wrapper that runs reasoning segmentation on one image, and results.
 *
 * Inference protocol (documented here once, used by stage.evaluate,
 * stage.infer and `pipeline segment`):
 *   1. The image is resized (bilinear) to the encoders' input size S and fed
 *      as [1, 3, S, S] f32 in [0, 1], exactly as dataset.benchmark does.
 *   2. The prompt is the chat layout of dataset.benchmark up to the
 *      assistant turn:
 *        <|im_start|>user\n<|vision_start|><|image_pad|> x n <|vision_end|>QUERY<|im_end|>\n
 *        <|im_start|>assistant\n
 *      and the projector's visual tokens replace the <|image_pad|> rows.
 *   3. Greedy decoding (argmax) until <|im_end|> or max_new_tokens.
 *   4. The FIRST generated <SEG>: the hidden state of the position that
 *      produced it (LISA's <SEG> embedding) goes through the SEG adapter and
 *      the mask decoder; the decoder's post-processed logits > 0 at S x S
 *      are bilinearly resized to the image's own size (logits, then > 0).
 *      No <SEG> in the answer: the prediction is the empty mask.
 *   5. The reasoning text is the decoded answer with special tokens
 *      dropped (<|im_end|> goes, <SEG> — an ordinary added token — stays).
 *
 * One-shot protocol: a reference image of the same target class and its
 * mask enter the prompt before the query image:
 *        <|im_start|>user\n<|vision_start|>(pad x n)<|vision_end|>Reference region:
 *        <|vision_start|>(pad x R)<|vision_end|>\n<|vision_start|>(pad x n)<|vision_end|>QUERY
 *        <|im_end|>\n<|im_start|>assistant\n
 *   The first n rows are the reference image's visual tokens. The R region
 *   tokens (R = 4) are pooled from the RuiPath patch features under the
 *   reference mask: the mask is area-averaged onto the patch grid (weight
 *   w_p = covered fraction of patch p), the grid is cut into 2 x 2
 *   quadrants of the mask's bounding box, and each region token is
 *   sum_p w_p f_p / sum_p w_p over its quadrant (the whole mask when a
 *   quadrant has no weight; all patches when the mask is empty). Each pooled
 *   vector is projected like visual tokens: it is repeated merge x merge
 *   times as a merge x merge patch grid and passed through the projector,
 *   which gives one LLM token. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdint.h>

#include <pathseg/generate.h>
#include <pathseg/graph.h>
#include <pathseg/run.h>

#include "bpe.h"

/* ---------------------------------------------------------------------- */
/* Mask metrics (mask_metrics.c). Masks are (h, w) u8, nonzero = inside. */

typedef struct ev_overlap {
  int64_t pred, gt, inter; /* pixel counts */
} ev_overlap;

void ev_overlap_count(const uint8_t *pred, const uint8_t *gt, int64_t n, ev_overlap *out);
/* 2|P∩G| / (|P| + |G|); 1 when both are empty. */
double ev_dice(const ev_overlap *o);
/* |P∩G| / |P∪G|; 1 when both are empty. */
double ev_iou(const ev_overlap *o);

/* Bilinear resize (align_corners = False, half-pixel centres, edge clamp)
 * of (sh, sw, c) u8 to (dh, dw, c). */
void ev_resize_u8(const uint8_t *src, int sw, int sh, int c, uint8_t *dst, int dw, int dh);
/* The same for one f32 plane. */
void ev_resize_f32(const float *src, int sw, int sh, float *dst, int dw, int dh);

/* ---------------------------------------------------------------------- */
/* Contours and exports (contour.c, export.c). */

typedef struct ev_ring {
  GArray *xy;    /* double pairs: x0, y0, x1, y1, ... (closed: last == first) */
  double area;   /* signed shoelace area: > 0 outer boundary, < 0 hole */
  int component; /* 4-connected component of the mask it bounds */
} ev_ring;

/* The boundaries of the mask's 4-connected pieces along pixel edges
 * (corner coordinates 0..w, 0..h), collinear points merged. GPtrArray of
 * ev_ring*, outer rings and holes. */
GPtrArray *ev_trace_rings(const uint8_t *mask, int w, int h);
/* A GeoJSON FeatureCollection: one Feature (Polygon: outer ring then its
 * holes) per 4-connected piece; coordinates x * scale + ox, y * scale + oy. */
char *ev_geojson(const uint8_t *mask, int w, int h, double scale, double ox, double oy,
                 const char *name);

/* The input image tinted where the mask is on, with its outline. rgb and
 * out: (h, w, 3). */
void ev_overlay(const uint8_t *rgb, const uint8_t *mask, int w, int h, uint8_t *out);

gboolean ev_png_init(GError **error);
gboolean ev_write_png(const char *path, const uint8_t *data, int w, int h, int bands,
                      GError **error);
uint8_t *ev_read_image(const char *path, int bands, int *w, int *h, GError **error);
/* PNG bytes of an image (g_free). */
guint8 *ev_png_bytes(const uint8_t *data, int w, int h, int bands, gsize *len, GError **error);

/* ---------------------------------------------------------------------- */
/* The model (model.c). */

typedef struct ev_model {
  ps_graph *graph;
  ps_context *ctx;
  /* instance names, found from the decoder's bindings */
  char *encoder, *visual, *projector, *llm, *adapter, *decoder;
  char *image_field; /* the data.FIELD the encoders read ("image") */
  const ps_llm_generate_iface *gen;
  void *llm_self;
  ps_bpe *tok;
  int size;         /* encoder input side S */
  int image_tokens; /* visual tokens per image */
  int merge;        /* projector merge_size */
  int32_t seg_id, im_end_id, pad_id;
  int64_t max_new_tokens;
  int64_t max_length; /* prompt + answer cap */
} ev_model;

typedef struct ev_reference {
  const uint8_t *rgb;  /* (h, w, 3) */
  const uint8_t *mask; /* (h, w) */
  int w, h;
} ev_reference;

typedef struct ev_prediction {
  char *text;       /* decoded answer (special tokens dropped) */
  char *raw;        /* the generated tokens decoded with special tokens kept */
  gboolean has_seg; /* a <SEG> was generated */
  int64_t n_tokens;
  uint8_t *mask; /* (h, w) 0/255 at the image's own size */
  float *logits; /* (h, w) mask logits (-inf-like where no <SEG>) */
} ev_prediction;

void ev_prediction_clear(ev_prediction *p);

/* Finds the components of a reasoning-segmentation graph: the decoder
 * (kind decoder) and, following the bindings, the adapter, the LLM, the
 * projector, the visual encoder and the image encoder. `tokenizer`: path of
 * tokenizer.json, or NULL to use the one beside the dataset's manifest
 * (relative paths also tried against `base_dir`). */
gboolean ev_model_init(ev_model *m, ps_graph *graph, const ps_pipeline *p, const char *tokenizer,
                       const char *base_dir, GError **error);
void ev_model_clear(ev_model *m);
/* Loads a run directory's checkpoints/last.safetensors (or a .safetensors
 * file) into every instance by "instance/param" name. */
gboolean ev_load_checkpoint(ps_graph *graph, const ps_pipeline *p, const char *model,
                            GError **error);
/* The checkpoint file of a run dir or file name (g_free). */
char *ev_checkpoint_path(const char *model);

/* Reasoning segmentation of one image (h, w, 3). `ref` NULL: zero-shot. */
gboolean ev_predict(ev_model *m, const uint8_t *rgb, int w, int h, const char *query,
                    const ev_reference *ref, ev_prediction *out, GError **error);

/* ---------------------------------------------------------------------- */
/* Results and tables (results.c). */

/* Reads RUN/results.json (a JSON object; an empty one when absent). */
JsonObject *ev_results_load(const char *run_dir, GError **error);
gboolean ev_results_save(const char *run_dir, JsonObject *results, GError **error);
/* results.md and table2.csv, table3.csv, table6.csv from the results. */
gboolean ev_tables_write(const char *run_dir, JsonObject *results, GError **error);
/* The Markdown of all tables (g_free). */
char *ev_tables_markdown(JsonObject *results, const char *method);
/* HTML tables (g_free). */
char *ev_tables_html(JsonObject *results, const char *method);

/* Stage entry points. */
extern const ps_config_key ev_eval_config[];
void *ev_eval_create(const ps_config *cfg, ps_context *ctx, GError **error);
void ev_eval_destroy(void *self);
gboolean ev_eval_run(void *self, ps_run *run, GError **error);

extern const ps_config_key ev_report_config[];
void *ev_report_create(const ps_config *cfg, ps_context *ctx, GError **error);
void ev_report_destroy(void *self);
gboolean ev_report_run(void *self, ps_run *run, GError **error);

extern const ps_config_key ev_infer_config[];
void *ev_infer_create(const ps_config *cfg, ps_context *ctx, GError **error);
void ev_infer_destroy(void *self);
gboolean ev_infer_run(void *self, ps_run *run, GError **error);
extern const struct ps_segment_iface ev_segment_iface;

/* A string config value as a new string; "" when unset (g_free). */
static inline char *str_or_empty(const ps_config *cfg, const char *key) {
  const char *v = ps_config_string(cfg, key);
  return g_strdup(v ? v : "");
}

/* TRUE when an earlier enabled stage of the pipeline than `current` trains
 * the graph or loads a model into it (so an empty `model` is meaningful). */
gboolean ev_graph_has_model(const ps_pipeline *p, const char *current);
