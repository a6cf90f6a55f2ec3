/* model.c — reasoning segmentation of one image with the components of a
 * pipeline graph (protocol in evaluate.h): encoders and projector through
 * the graph, greedy generation through the LLM's "generate" capability, and
 * the SEG adapter and mask decoder called directly with the <SEG> hidden
 * state (they are not fed from a teacher-forced LLM forward here). */
#include <math.h>
#include <pathseg/error.h>
#include <pathseg/safetensors.h>
#include <string.h>

#include "evaluate.h"

#define REGION_TOKENS 4

void ev_prediction_clear(ev_prediction *p) {
  g_clear_pointer(&p->text, g_free);
  g_clear_pointer(&p->raw, g_free);
  g_clear_pointer(&p->mask, g_free);
  g_clear_pointer(&p->logits, g_free);
}

void ev_model_clear(ev_model *m) {
  g_free(m->encoder);
  g_free(m->visual);
  g_free(m->projector);
  g_free(m->llm);
  g_free(m->adapter);
  g_free(m->decoder);
  g_free(m->image_field);
  if (m->tok) ps_bpe_free(m->tok);
  memset(m, 0, sizeof *m);
}

/* The source of `port` of component `c`: instance (or "data") and port. */
static const ps_binding *binding(const ps_pipeline_component *c, const char *port) {
  for (size_t i = 0; i < c->n_inputs; i++)
    if (strcmp(c->inputs[i].port, port) == 0) return &c->inputs[i];
  return NULL;
}

static const ps_pipeline_component *follow(const ps_pipeline *p, const ps_pipeline_component *c,
                                           const char *port, GError **error) {
  const ps_binding *b = binding(c, port);
  const ps_pipeline_component *src = b ? ps_pipeline_get_component(p, b->source) : NULL;
  if (!src) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: component '%s' has no input '%s' bound to another component; evaluation needs "
                "the decoder <- adapter <- llm <- projector <- encoder chain",
                p->path, c->name, port);
    return NULL;
  }
  return src;
}

static int64_t cfg_int(const ps_pipeline_component *c, const char *key, int64_t dflt) {
  for (const ps_config_key *k = c->desc->config; k && k->key; k++)
    if (strcmp(k->key, key) == 0)
      return ps_config_has(c->config, key) ? ps_config_int(c->config, key) : dflt;
  return dflt;
}

static const char *cfg_str(const ps_pipeline_component *c, const char *key) {
  for (const ps_config_key *k = c->desc->config; k && k->key; k++)
    if (strcmp(k->key, key) == 0)
      return ps_config_has(c->config, key) ? ps_config_string(c->config, key) : NULL;
  return NULL;
}

/* path as given when it exists, else under base_dir. */
static char *find_file(const char *path, const char *base_dir) {
  if (g_file_test(path, G_FILE_TEST_EXISTS) || g_path_is_absolute(path) || !base_dir)
    return g_strdup(path);
  char *p = g_build_filename(base_dir, path, NULL);
  if (g_file_test(p, G_FILE_TEST_EXISTS)) return p;
  g_free(p);
  return g_strdup(path);
}

gboolean ev_model_init(ev_model *m, ps_graph *graph, const ps_pipeline *p, const char *tokenizer,
                       const char *base_dir, GError **error) {
  memset(m, 0, sizeof *m);
  m->graph = graph;
  m->ctx = ps_graph_context(graph);
  const ps_pipeline_component *dec = NULL, *data = NULL;
  for (size_t i = 0; i < p->n_components; i++) {
    const ps_pipeline_component *c = &p->components[i];
    /* the mask decoder: a decoder prompted by another component (an MAE
     * decoder of ssl_pretrain is a decoder too) */
    const ps_binding *te = binding(c, "text_embeds");
    if (!dec && c->desc->kind == PS_KIND_DECODER && te && strcmp(te->source, "data") != 0) dec = c;
    /* the dataset whose chat layout the model was fine-tuned on */
    if (c->desc->kind == PS_KIND_DATASET && cfg_str(c, "manifest") &&
        (!data || g_strcmp0(cfg_str(c, "text"), "sft") == 0))
      data = c;
  }
  if (!dec) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: no mask decoder (a component of kind decoder whose text_embeds come from the "
                "SEG adapter)",
                p->path);
    return FALSE;
  }
  const ps_pipeline_component *ad, *llm, *proj, *vis, *enc;
  if (!(ad = follow(p, dec, "text_embeds", error)) ||
      !(enc = follow(p, dec, "image_embeddings", error)) ||
      !(llm = follow(p, ad, "hidden", error)) || !(proj = follow(p, llm, "image_embeds", error)) ||
      !(vis = follow(p, proj, "patches", error)))
    return FALSE;
  const ps_binding *img = binding(enc, "image");
  if (!img || strcmp(img->source, "data") != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: the image encoder '%s' does not read data.FIELD", p->path, enc->name);
    return FALSE;
  }
  m->decoder = g_strdup(dec->name);
  m->adapter = g_strdup(ad->name);
  m->llm = g_strdup(llm->name);
  m->projector = g_strdup(proj->name);
  m->visual = g_strdup(vis->name);
  m->encoder = g_strdup(enc->name);
  m->image_field = g_strdup(img->source_port);
  m->size = (int)cfg_int(enc, "img_size", 0);
  if (m->size <= 0) m->size = (int)cfg_int(vis, "img_size", 0);
  if (m->size <= 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: cannot tell the encoder's input size (img_size)", p->path);
    return FALSE;
  }
  m->merge = (int)cfg_int(proj, "merge_size", 2);
  m->max_length = data ? cfg_int(data, "max_length", 320) : 320;
  m->gen = ps_graph_capability(graph, m->llm, PS_LLM_GENERATE_CAPABILITY);
  m->llm_self = ps_graph_self(graph, m->llm, NULL);
  if (!m->gen || m->gen->struct_size < sizeof(ps_llm_generate_iface)) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "component '%s' (%s) cannot generate",
                llm->name, llm->plugin);
    return FALSE;
  }
  g_autofree char *tok_path = NULL;
  if (tokenizer && *tokenizer) {
    tok_path = find_file(tokenizer, base_dir);
  } else if (data) {
    const char *t = cfg_str(data, "tokenizer");
    if (t && *t) {
      tok_path = find_file(t, base_dir);
    } else {
      g_autofree char *manifest = find_file(cfg_str(data, "manifest"), base_dir);
      g_autofree char *dir = g_path_get_dirname(manifest);
      tok_path = g_build_filename(dir, "tokenizer.json", NULL);
    }
  } else {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: no dataset component names the tokenizer; give one", p->path);
    return FALSE;
  }
  if (!g_file_test(tok_path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "tokenizer %s not found (the one the model was trained with, beside its manifest; "
                "run from the directory the training ran in, or pass --tokenizer)",
                tok_path);
    return FALSE;
  }
  m->tok = ps_bpe_load(tok_path, error);
  if (!m->tok) return FALSE;
  m->seg_id = ps_bpe_token_to_id(m->tok, "<SEG>");
  m->im_end_id = ps_bpe_token_to_id(m->tok, "<|im_end|>");
  m->pad_id = ps_bpe_token_to_id(m->tok, "<|endoftext|>");
  int32_t img_pad = ps_bpe_token_to_id(m->tok, "<|image_pad|>");
  int64_t want = cfg_int(llm, "image_token_id", -1);
  if (m->seg_id < 0 || m->im_end_id < 0 || img_pad < 0 || (want >= 0 && want != img_pad)) {
    g_set_error(
        error, PS_ERROR, PS_ERROR_INVALID,
        "%s lacks <SEG>, <|im_end|> or <|image_pad|>, or <|image_pad|> is %d while the LLM's "
        "image_token_id is %" G_GINT64_FORMAT,
        tok_path, img_pad, want);
    return FALSE;
  }
  if (m->pad_id < 0) m->pad_id = m->im_end_id;
  m->max_new_tokens = 0;
  return TRUE;
}

char *ev_checkpoint_path(const char *model) {
  if (g_file_test(model, G_FILE_TEST_IS_DIR))
    return g_build_filename(model, "checkpoints", "last.safetensors", NULL);
  return g_strdup(model);
}

gboolean ev_load_checkpoint(ps_graph *graph, const ps_pipeline *p, const char *model,
                            GError **error) {
  g_autofree char *path = ev_checkpoint_path(model);
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "model %s: no checkpoint %s (train the run first)", model, path);
    return FALSE;
  }
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, error);
  if (!st) return FALSE;
  for (size_t i = 0; i < p->n_components; i++) {
    const char *name = p->components[i].name;
    const ps_component_desc *d = NULL;
    ps_graph_self(graph, name, &d);
    if (!d || !d->vtable->params) continue;
    g_autofree char *prefix = g_strconcat(name, "/", NULL);
    /* A component the trained run did not have (a pipeline that grew a stage
     * since, e.g. an SSL decoder) keeps its initial weights; everything the
     * inference chain uses is in every checkpoint. */
    gboolean present = FALSE;
    for (size_t k = 0; k < ps_safetensors_count(st) && !present; k++)
      present = g_str_has_prefix(ps_safetensors_name(st, k), prefix);
    if (!present) continue;
    if (!ps_graph_load_weights(graph, name, path, prefix, FALSE, error)) {
      g_prefix_error(error, "model %s: ", model);
      return FALSE;
    }
  }
  return TRUE;
}

/* Ports for a direct forward call, in the descriptor's order. */
typedef struct {
  ps_port items[8];
  ps_ports ports;
} port_set;

static void ports_init(port_set *s, const ps_port_desc *desc) {
  memset(s, 0, sizeof *s);
  size_t n = 0;
  for (; desc && desc[n].name && n < G_N_ELEMENTS(s->items); n++) s->items[n].name = desc[n].name;
  s->ports.items = s->items;
  s->ports.count = n;
}

static gboolean call_forward(ev_model *m, const char *instance, const char *const *names,
                             ps_tensor **tensors, port_set *out, GError **error) {
  const ps_component_desc *d = NULL;
  void *self = ps_graph_self(m->graph, instance, &d);
  if (!self || !d->vtable->forward) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "no component instance '%s' with a forward",
                instance);
    return FALSE;
  }
  port_set in;
  ports_init(&in, d->inputs);
  for (size_t i = 0; names[i]; i++)
    if (!ps_ports_set(&in.ports, names[i], tensors[i])) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "component '%s' has no input '%s'", instance,
                  names[i]);
      return FALSE;
    }
  ports_init(out, d->outputs);
  if (!d->vtable->forward(self, m->ctx, &in.ports, &out->ports, error)) {
    g_prefix_error(error, "%s: ", instance);
    return FALSE;
  }
  return TRUE;
}

/* (h, w, 3) u8 -> [1, 3, S, S] f32 in [0, 1]. */
static ps_tensor *image_tensor(const uint8_t *rgb, int w, int h, int S, GError **error) {
  ps_tensor *t = ps_tensor_new4(PS_DTYPE_F32, 1, 3, S, S, error);
  if (!t) return NULL;
  g_autofree uint8_t *r = NULL;
  if (w != S || h != S) {
    r = g_malloc((gsize)S * S * 3);
    ev_resize_u8(rgb, w, h, 3, r, S, S);
    rgb = r;
  }
  float *x = ps_f32(t);
  for (int64_t p = 0; p < (int64_t)S * S; p++)
    for (int c = 0; c < 3; c++) x[c * S * S + p] = rgb[3 * p + c] * (1.0f / 255.0f);
  return t;
}

/* Runs the encoder(s) and the projector on one image; copies the visual
 * tokens (n, D) into `tokens`. */
static gboolean visual_tokens(ev_model *m, ps_tensor *image, gboolean with_encoder, GArray *tokens,
                              int64_t *n_out, int64_t *D_out, GError **error) {
  ps_port field = {m->image_field, image, FALSE};
  ps_ports data = {&field, 1};
  const char *targets[] = {m->projector, with_encoder ? m->encoder : NULL, NULL};
  if (!ps_graph_forward(m->graph, &data, targets, error)) return FALSE;
  const ps_tensor *t = ps_graph_output(m->graph, m->projector, "tokens");
  if (!t || t->ndim != 3 || t->shape[0] != 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s.tokens is not [1, N, D]", m->projector);
    return FALSE;
  }
  g_autoptr(ps_tensor) host = NULL; /* outputs may live on a device */
  if (!(t = ps_tensor_on_device(t, PS_DEVICE_CPU, &host, error))) return FALSE;
  g_array_append_vals(tokens, t->data, (guint)(t->shape[1] * t->shape[2]));
  *n_out = t->shape[1];
  *D_out = t->shape[2];
  return TRUE;
}

/* The R region tokens of a reference (evaluate.h): appended to `tokens`. */
static gboolean region_tokens(ev_model *m, const ev_reference *ref, GArray *tokens,
                              GError **error) {
  const ps_tensor *patches = ps_graph_output(m->graph, m->visual, "patches");
  const ps_tensor *grid = ps_graph_output(m->graph, m->visual, "patch_grid");
  if (!patches || patches->ndim != 3 || !grid || ps_tensor_numel(grid) != 2) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s.patches / patch_grid missing", m->visual);
    return FALSE;
  }
  g_autoptr(ps_tensor) patches_host = NULL, grid_host = NULL; /* outputs may live on a device */
  if (!(patches = ps_tensor_on_device(patches, PS_DEVICE_CPU, &patches_host, error)) ||
      !(grid = ps_tensor_on_device(grid, PS_DEVICE_CPU, &grid_host, error)))
    return FALSE;
  const int gh = ((const int32_t *)grid->data)[0], gw = ((const int32_t *)grid->data)[1];
  const int64_t C = patches->shape[2];
  const float *f = ps_f32(patches);
  /* mask -> patch-grid weights (covered fraction), at the encoder size */
  const int S = m->size;
  g_autofree uint8_t *ms = g_malloc((gsize)S * S);
  ev_resize_u8(ref->mask, ref->w, ref->h, 1, ms, S, S);
  g_autofree double *wgt = g_new0(double, (gsize)gh *gw);
  int x0 = gw, y0 = gh, x1 = -1, y1 = -1;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++) {
      if (ms[(int64_t)y * S + x] < 128) continue;
      int gy = y * gh / S, gx = x * gw / S;
      wgt[gy * gw + gx] += 1.0 / ((double)(S / gh) * (S / gw));
    }
  for (int gy = 0; gy < gh; gy++)
    for (int gx = 0; gx < gw; gx++)
      if (wgt[gy * gw + gx] > 0) {
        x0 = MIN(x0, gx), x1 = MAX(x1, gx), y0 = MIN(y0, gy), y1 = MAX(y1, gy);
      }
  g_autofree double *all = g_new0(double, C);
  double all_w = 0;
  for (int64_t p = 0; p < (int64_t)gh * gw; p++)
    for (int64_t c = 0; c < C; c++) all[c] += (wgt[p] > 0 ? wgt[p] : 0) * f[p * C + c];
  for (int64_t p = 0; p < (int64_t)gh * gw; p++) all_w += wgt[p];
  if (all_w <= 0) { /* empty mask: the mean of all patches */
    for (int64_t p = 0; p < (int64_t)gh * gw; p++)
      for (int64_t c = 0; c < C; c++) all[c] += f[p * C + c];
    all_w = (double)gh * gw;
  }
  const int mg = m->merge;
  g_autoptr(ps_tensor) in = ps_tensor_new4(PS_DTYPE_F32, 1, (int64_t)mg * mg, C, -1, error);
  g_autoptr(ps_tensor) g2 = ps_tensor_new4(PS_DTYPE_I32, 2, -1, -1, -1, error);
  if (!in || !g2) return FALSE;
  ((int32_t *)g2->data)[0] = mg;
  ((int32_t *)g2->data)[1] = mg;
  int xm = (x0 + x1 + 1) / 2, ym = (y0 + y1 + 1) / 2;
  for (int q = 0; q < REGION_TOKENS; q++) {
    /* quadrant q of the mask's bounding box on the grid */
    int qx0 = q % 2 ? xm : x0, qx1 = q % 2 ? x1 : xm - 1, qy0 = q / 2 ? ym : y0,
        qy1 = q / 2 ? y1 : ym - 1;
    g_autofree double *acc = g_new0(double, C);
    double aw = 0;
    for (int gy = MAX(qy0, 0); gy <= qy1 && gy < gh; gy++)
      for (int gx = MAX(qx0, 0); gx <= qx1 && gx < gw; gx++) {
        double wv = wgt[gy * gw + gx];
        if (wv <= 0) continue;
        aw += wv;
        for (int64_t c = 0; c < C; c++) acc[c] += wv * f[((int64_t)gy * gw + gx) * C + c];
      }
    float *x = ps_f32(in);
    for (int64_t k = 0; k < (int64_t)mg * mg; k++)
      for (int64_t c = 0; c < C; c++) x[k * C + c] = (float)(aw > 0 ? acc[c] / aw : all[c] / all_w);
    const char *names[] = {"patches", "patch_grid", NULL};
    ps_tensor *ts[] = {in, g2};
    port_set out;
    if (!call_forward(m, m->projector, names, ts, &out, error)) return FALSE;
    const ps_tensor *t = ps_ports_get(&out.ports, "tokens");
    if (!t || t->ndim != 3 || t->shape[1] != 1) {
      g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s: a %dx%d grid did not give one token",
                  m->projector, mg, mg);
      return FALSE;
    }
    g_autoptr(ps_tensor) host = NULL;
    if (!(t = ps_tensor_on_device(t, PS_DEVICE_CPU, &host, error))) return FALSE;
    g_array_append_vals(tokens, t->data, (guint)t->shape[2]);
  }
  return TRUE;
}

static void append_pads(GString *s, int64_t n) {
  g_string_append(s, "<|vision_start|>");
  for (int64_t k = 0; k < n; k++) g_string_append(s, "<|image_pad|>");
  g_string_append(s, "<|vision_end|>");
}

gboolean ev_predict(ev_model *m, const uint8_t *rgb, int w, int h, const char *query,
                    const ev_reference *ref, ev_prediction *out, GError **error) {
  memset(out, 0, sizeof *out);
  ps_context_set_training(m->ctx, FALSE);
  const int S = m->size;
  g_autoptr(GArray) emb = g_array_new(FALSE, FALSE, sizeof(float));
  int64_t n_img = 0, D = 0, n_ref = 0;
  GString *prompt = g_string_new("<|im_start|>user\n");
  if (ref) {
    g_autoptr(ps_tensor) rimg = image_tensor(ref->rgb, ref->w, ref->h, S, error);
    if (!rimg || !visual_tokens(m, rimg, FALSE, emb, &n_ref, &D, error) ||
        !region_tokens(m, ref, emb, error)) {
      g_string_free(prompt, TRUE);
      return FALSE;
    }
    append_pads(prompt, n_ref);
    g_string_append(prompt, "Reference region: ");
    append_pads(prompt, REGION_TOKENS);
    g_string_append(prompt, "\n");
  }
  g_autoptr(ps_tensor) image = image_tensor(rgb, w, h, S, error);
  if (!image || !visual_tokens(m, image, TRUE, emb, &n_img, &D, error)) {
    g_string_free(prompt, TRUE);
    return FALSE;
  }
  append_pads(prompt, n_img);
  g_string_append_printf(prompt, "%s<|im_end|>\n<|im_start|>assistant\n", query);
  g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  gboolean ok = ps_bpe_encode(m->tok, prompt->str, -1, ids, error);
  g_string_free(prompt, TRUE);
  if (!ok) return FALSE;
  int64_t max_new =
      m->max_new_tokens > 0 ? m->max_new_tokens : MAX(16, m->max_length - (int64_t)ids->len);
  ps_llm_prompt pr = {.B = 1,
                      .T = ids->len,
                      .input_ids = (const int32_t *)ids->data,
                      .image_embeds = (const float *)emb->data,
                      .n_image = (int64_t)emb->len / D};
  ps_llm_sampling sp = {.max_new_tokens = max_new,
                        .temperature = 0,
                        .top_p = 1,
                        .stop_ids = &m->im_end_id,
                        .n_stop = 1,
                        .pad_id = m->pad_id,
                        .rng = NULL};
  ps_llm_generation gen = {0};
  if (!m->gen->generate(m->llm_self, m->ctx, &pr, &sp, &gen, error)) {
    m->gen->generation_clear(&gen);
    return FALSE;
  }
  int64_t len = gen.lengths[0], seg_at = -1, text_len = len;
  for (int64_t t = 0; t < len; t++) {
    if (gen.tokens[t] == m->seg_id && seg_at < 0) seg_at = t;
    if (gen.tokens[t] == m->im_end_id && text_len == len) text_len = t;
  }
  out->n_tokens = len;
  /* special tokens dropped, but <SEG> kept (a trained tokenizer marks it special too) */
  g_autofree int32_t *kept = g_new(int32_t, text_len + 1);
  size_t n_kept = 0;
  for (int64_t t = 0; t < text_len; t++)
    if (gen.tokens[t] == m->seg_id || !ps_bpe_is_special(m->tok, gen.tokens[t]))
      kept[n_kept++] = gen.tokens[t];
  out->text = ps_bpe_decode(m->tok, kept, n_kept, FALSE, error);
  if (!out->text) {
    m->gen->generation_clear(&gen);
    return FALSE;
  }
  g_strstrip(out->text);
  out->raw = ps_bpe_decode(m->tok, gen.tokens, (size_t)len, FALSE, NULL);
  out->has_seg = seg_at >= 0;
  out->mask = g_malloc0((gsize)w * h);
  out->logits = g_new(float, (gsize)w *h);
  if (!out->has_seg) {
    for (int64_t p = 0; p < (int64_t)w * h; p++) out->logits[p] = -1e4f;
    m->gen->generation_clear(&gen);
    return TRUE;
  }
  const int64_t HD = gen.D;
  g_autoptr(ps_tensor) hidden = ps_tensor_new4(PS_DTYPE_F32, 1, 1, HD, -1, error);
  g_autoptr(ps_tensor) pos = ps_tensor_new4(PS_DTYPE_I32, 1, -1, -1, -1, error);
  if (!hidden || !pos) {
    m->gen->generation_clear(&gen);
    return FALSE;
  }
  memcpy(hidden->data, gen.hidden + seg_at * HD, sizeof(float) * (size_t)HD);
  m->gen->generation_clear(&gen);
  ((int32_t *)pos->data)[0] = 1; /* the adapter reads hidden[pos - 1] */
  const char *an[] = {"hidden", "seg_positions", NULL};
  ps_tensor *at[] = {hidden, pos};
  port_set aout, dout;
  if (!call_forward(m, m->adapter, an, at, &aout, error)) return FALSE;
  ps_tensor *prompt_emb = ps_ports_get(&aout.ports, "prompt");
  ps_tensor *img_emb = ps_graph_output(m->graph, m->encoder, "embeddings");
  if (!prompt_emb || !img_emb) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s.prompt or %s.embeddings missing", m->adapter,
                m->encoder);
    return FALSE;
  }
  const char *dn[] = {"image_embeddings", "text_embeds", "image", NULL};
  ps_tensor *dt[] = {img_emb, prompt_emb, image};
  if (!call_forward(m, m->decoder, dn, dt, &dout, error)) return FALSE;
  const ps_tensor *masks = ps_ports_get(&dout.ports, "masks");
  if (!masks || masks->ndim != 4 || masks->shape[2] != S || masks->shape[3] != S) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s.masks is not [1, m, %d, %d]", m->decoder, S,
                S);
    return FALSE;
  }
  g_autoptr(ps_tensor) masks_host = NULL;
  if (!(masks = ps_tensor_on_device(masks, PS_DEVICE_CPU, &masks_host, error))) return FALSE;
  ev_resize_f32(ps_f32(masks), S, S, out->logits, w, h); /* mask 0 */
  for (int64_t p = 0; p < (int64_t)w * h; p++) out->mask[p] = out->logits[p] > 0 ? 255 : 0;
  return TRUE;
}
