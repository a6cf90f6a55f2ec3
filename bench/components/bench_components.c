/* bench_components.c — component throughput against the PyTorch peers of
 * peer_components.py (bench/components/run.sh runs both on the same weights,
 * inputs and threads).
 *
 *   bench_components qwen2 WEIGHTS THREADS PROMPT NEW REPS TOKENS_OUT
 *       llm.qwen2 at Qwen2.5-0.5B shapes (hidden 896, 24 layers, 14 heads,
 *       2 KV heads, intermediate 4864, vocab 151936, tied): greedy
 *       generation through the "generate" capability (KV cache), PROMPT
 *       ids then NEW tokens; writes the tokens (int32) for the peer to
 *       compare.
 *   bench_components medsam WEIGHTS THREADS REPS OUT
 *       encoder.medsam at SAM ViT-B/1024 on one image (inference); writes
 *       the embeddings (float32) for the peer to compare.
 *
 * When WEIGHTS does not exist it is made first: the component's own random
 * initialisation, saved under the official / HF names, plus the input
 * (input.ids or input.image) and a WEIGHTS.json with the sizes for the peer.
 * Both sides then load the file. Each timing is the median of REPS runs
 * after one warm-up run; RESULT lines as in bench/. Not run by ctest. */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pathseg/generate.h>
#include <pathseg/host.h>
#include <pathseg/kernels.h>
#include <pathseg/safetensors.h>

#include "../bench_common.h"

static void die(const char *what, GError *err) {
  fprintf(stderr, "bench_components: %s: %s\n", what, err ? err->message : "failed");
  exit(2);
}

static void *create(ps_registry *reg, ps_context *ctx, const char *comp, const char *yaml,
                    const ps_component_desc **desc) {
  GError *err = NULL;
  const ps_component_desc *d = ps_registry_find(reg, comp);
  if (!d) die(comp, NULL);
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "bench_components", &err);
  if (!cfg) die(comp, err);
  void *self = d->vtable->create(cfg, ctx, &err);
  if (!self) die(comp, err);
  *desc = d;
  return self;
}

/* Saves every parameter of `self` plus `input` (named input_name) to path, and the JSON sidecar. */
static void save(const ps_component_desc *d, void *self, const char *path, const char *input_name,
                 const ps_tensor *input, const char *json) {
  GError *err = NULL;
  g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
  ps_param_list pl = d->vtable->params(self);
  for (size_t i = 0; i < pl.count; i++)
    if (!ps_safetensors_writer_add(w, pl.items[i].name, pl.items[i].value, &err)) die(path, err);
  if (!ps_safetensors_writer_add(w, input_name, input, &err) ||
      !ps_safetensors_writer_write(w, path, &err))
    die(path, err);
  g_autofree char *jp = g_strconcat(path, ".json", NULL);
  if (!g_file_set_contents(jp, json, -1, &err)) die(jp, err);
}

static double median_of(double *t, int n) {
  return bench_median(t, n);
}

/* CPU seconds of this process (all threads): on a shared machine wall time
 * depends on what else runs, CPU time less so (OMP_WAIT_POLICY=passive keeps
 * idle OpenMP threads from spinning it up). */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- llm.qwen2 ------------------------------------------------------------------- */

#define QW_SIZES "hidden: 896, layers: 24, heads: 14, kv_heads: 2, intermediate: 4864, vocab: 151936"

static int run_qwen2(const char *path, int threads, int64_t T, int64_t new_tokens, int reps,
                     const char *tokens_out, int64_t batch) {
  GError *err = NULL;
  ps_registry *reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, threads, 1);
  const ps_component_desc *d = NULL;
  if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
    void *self = create(reg, ctx, "llm.qwen2", "{preset: qwen2.5-0.5b, " QW_SIZES "}", &d);
    g_autoptr(ps_tensor) ids = ps_tensor_new4(PS_DTYPE_I32, T, -1, -1, -1, &err);
    if (!ids) die("ids", err);
    uint64_t s = 12345;
    for (int64_t i = 0; i < T; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      ((int32_t *)ids->data)[i] = (int32_t)((s >> 33) % 151936);
    }
    save(d, self, path, "input.ids", ids,
         "{\"hidden\": 896, \"layers\": 24, \"heads\": 14, \"kv_heads\": 2, \"intermediate\": "
         "4864, \"vocab\": 151936, \"rope_theta\": 1000000.0, \"rms_eps\": 1e-06}\n");
    d->vtable->destroy(self);
  }
  double t0 = bench_now();
  g_autofree char *yaml =
      g_strdup_printf("{preset: qwen2.5-0.5b, " QW_SIZES ", checkpoint: '%s'}", path);
  void *self = create(reg, ctx, "llm.qwen2", yaml, &d);
  double load_s = bench_now() - t0;
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, &err);
  if (!st) die(path, err);
  const ps_tensor *ids = ps_safetensors_get(st, "input.ids", &err);
  if (!ids || ps_tensor_numel(ids) < T) die("input.ids", err);
  const ps_llm_generate_iface *gi = d->capability ? d->capability(PS_LLM_GENERATE_CAPABILITY) : NULL;
  if (!gi) die("llm.qwen2 has no generate capability", NULL);
  /* batch > 1: the prompt repeated, as a sampling group decodes it */
  g_autofree int32_t *rep_ids = g_new(int32_t, batch * T);
  for (int64_t b = 0; b < batch; b++)
    memcpy(rep_ids + b * T, ids->data, sizeof(int32_t) * (size_t)T);
  ps_llm_prompt prompt = {.B = batch, .T = T, .input_ids = rep_ids};
  ps_llm_sampling sp = {.max_new_tokens = 4, .temperature = 0, .top_p = 1.0};
  ps_llm_generation g = {0};
  if (!gi->generate(self, ctx, &prompt, &sp, &g, &err)) die("generate", err); /* warm-up */
  sp.max_new_tokens = new_tokens;
  double *times = g_new(double, reps), *cpu = g_new(double, reps);
  for (int r = 0; r < reps; r++) {
    double a = bench_now(), c = cpu_now();
    if (!gi->generate(self, ctx, &prompt, &sp, &g, &err)) die("generate", err);
    times[r] = bench_now() - a;
    cpu[r] = cpu_now() - c;
  }
  double med = median_of(times, reps), med_cpu = median_of(cpu, reps);
  if (!g_file_set_contents(tokens_out, (const char *)g.tokens, (gssize)(sizeof(int32_t) * g.max_new),
                           &err))
    die(tokens_out, err);
  printf("RESULT components qwen2_generate side=pathseg threads=%d batch=%" G_GINT64_FORMAT
         " prompt=%" G_GINT64_FORMAT " new=%" G_GINT64_FORMAT
         " median_s=%.3f tokens_per_s=%.2f cpu_s=%.3f load_s=%.2f\n",
         threads, batch, T, new_tokens, med, (double)(batch * new_tokens) / med, med_cpu, load_s);
  gi->generation_clear(&g);
  g_free(times);
  g_free(cpu);
  d->vtable->destroy(self);
  ps_registry_free(reg);
  return 0;
}

/* ---- encoder.medsam --------------------------------------------------------------- */

static int run_medsam(const char *path, int threads, int reps, const char *out_path) {
  GError *err = NULL;
  ps_registry *reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, threads, 1);
  ps_context_set_training(ctx, FALSE);
  const ps_component_desc *d = NULL;
  if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
    void *self = create(reg, ctx, "encoder.medsam", "{preset: base}", &d);
    g_autoptr(ps_tensor) img = ps_tensor_new4(PS_DTYPE_F32, 1, 3, 1024, 1024, &err);
    if (!img) die("image", err);
    bench_fill(ps_f32(img), (size_t)ps_tensor_numel(img), 7);
    /* SAM leaves pos_embed at zero; give it values so the peer comparison covers it. */
    ps_param_list pl = d->vtable->params(self);
    for (size_t i = 0; i < pl.count; i++)
      if (strcmp(pl.items[i].name, "image_encoder.pos_embed") == 0 ||
          strstr(pl.items[i].name, "rel_pos_")) {
        float *v = ps_f32(pl.items[i].value);
        bench_fill(v, (size_t)ps_tensor_numel(pl.items[i].value), 11 + i);
        for (int64_t j = 0; j < ps_tensor_numel(pl.items[i].value); j++) v[j] *= 0.02f;
      }
    save(d, self, path, "input.image", img,
         "{\"embed_dim\": 768, \"depth\": 12, \"num_heads\": 12, \"window_size\": 14, "
         "\"global_attn_indexes\": [2, 5, 8, 11]}\n");
    d->vtable->destroy(self);
  }
  g_autofree char *yaml =
      g_strdup_printf("{preset: base, medsam_input: false, checkpoint: '%s'}", path);
  void *self = create(reg, ctx, "encoder.medsam", yaml, &d);
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, &err);
  if (!st) die(path, err);
  g_autoptr(ps_tensor) img = ps_safetensors_get_f32(st, "input.image", &err);
  if (!img) die("input.image", err);
  ps_port in_items[1] = {{"image", img, FALSE}}, out_items[1] = {{"embeddings", NULL, FALSE}};
  ps_ports in = {in_items, 1}, out = {out_items, 1};
  if (!d->vtable->forward(self, ctx, &in, &out, &err)) die("forward", err); /* warm-up */
  double *times = g_new(double, reps), *cpu = g_new(double, reps);
  for (int r = 0; r < reps; r++) {
    double a = bench_now(), c = cpu_now();
    if (!d->vtable->forward(self, ctx, &in, &out, &err)) die("forward", err);
    times[r] = bench_now() - a;
    cpu[r] = cpu_now() - c;
  }
  double med = median_of(times, reps), med_cpu = median_of(cpu, reps);
  const ps_tensor *emb = out_items[0].tensor;
  if (!g_file_set_contents(out_path, emb->data, (gssize)emb->nbytes, &err)) die(out_path, err);
  printf("RESULT components medsam_encoder side=pathseg threads=%d batch=1 img=1024 median_s=%.3f "
         "images_per_s=%.3f cpu_s=%.3f\n",
         threads, med, 1.0 / med, med_cpu);
  g_free(times);
  g_free(cpu);
  d->vtable->destroy(self);
  ps_registry_free(reg);
  return 0;
}

int main(int argc, char **argv) {
  if ((argc == 8 || argc == 9) && strcmp(argv[1], "qwen2") == 0)
    return run_qwen2(argv[2], atoi(argv[3]), atoll(argv[4]), atoll(argv[5]), atoi(argv[6]),
                     argv[7], argc == 9 ? MAX(1, atoll(argv[8])) : 1);
  if (argc == 6 && strcmp(argv[1], "medsam") == 0)
    return run_medsam(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5]);
  fprintf(stderr,
          "usage: %s qwen2 WEIGHTS THREADS PROMPT NEW REPS TOKENS_OUT [BATCH]\n"
          "       %s medsam WEIGHTS THREADS REPS OUT\n",
          argv[0], argv[0]);
  return 2;
}
