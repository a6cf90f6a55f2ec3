/* bench_train_step.c — one training step of the quickstart's `sft` stage
 * (forward + backward + AdamW) at the tiny preset, timed, with the peak
 * resident memory of the process. The PyTorch peer (peer_train_step.py)
 * writes the same model by hand; bench/train_step/run.sh runs both.
 *
 * The graph is built exactly as stage.fit builds it: the pipeline file
 * (pipelines/quickstart.yaml) is loaded through the plugin registry, every
 * component gets its random initialisation, the stage's train_roles (and
 * train_components) choose what trains, its optimizer keys configure AdamW
 * (ps_optim_from_config), and one step is: zero_grad, forward to the loss
 * instance, seed 1, backward, ps_optim_step, reset the scratch arena. Only
 * components the loss depends on may train: stage.fit itself also hands
 * AdamW the parameters of components the loss never reaches (they get zero
 * gradients); --stage-fit-set keeps that behaviour.
 *
 * The batch is fixed and synthetic, shaped like dataset.benchmark's: image
 * (B, 3, 128, 128) uniform [0, 1), mask (B, 1, 128, 128) a disc of radius
 * 20 + 4b, input_ids (B, 256) with the 16 image placeholders
 * (image_token_id 510) at positions 4..19, labels = ids on [40, 150 + 10b)
 * and -100 elsewhere, seg_positions 100 + b. The peer builds the same batch.
 *
 * Output (bench/run.sh's format), after `# ...` lines:
 *   RESULT train_step pathseg device=D precision=P threads=T batch=B seq=S ms_per_step=... ms_min=...
 *          cpu_ms_per_step=... steps=N params_total=... params_trainable=...
 *          optim_scalars=... peak_rss_mb=... base_rss_mb=... built_rss_mb=...
 * (medians over the timed steps; peak RSS from getrusage; base = at start,
 * built = after graph, gradients and AdamW state, before the first step).
 * --params prints one PARAM line per parameter of the loss's graph, for
 * comparing with the peer's; --lockstep lets run.sh interleave the two
 * processes step by step (see the loop below). */
#include <glib.h>
#include <math.h>
#include <pathseg/graph.h>
#include <pathseg/host.h>
#include <pathseg/optim.h>
#include <pathseg/registry.h>
#include <pathseg/safetensors.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../bench_common.h"

#define SEQ 256
#define IMG 128
#define IMAGE_TOKENS 16
#define IMAGE_TOKEN_ID 510

typedef struct {
  ps_tensor *image, *mask, *ids, *labels, *seg, *lens;
  ps_port fields[6];
  ps_ports ports;
} batch;

/* CPU seconds of the whole process (all threads): on a shared machine the
 * single-thread CPU time per step is a load-robust second estimate. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

/* The deterministic batch both sides build (see the header comment). */
static gboolean batch_init(batch *b, int64_t B, GError **error) {
  b->image = ps_tensor_new4(PS_DTYPE_F32, B, 3, IMG, IMG, error);
  b->mask = b->image ? ps_tensor_new4(PS_DTYPE_F32, B, 1, IMG, IMG, error) : NULL;
  b->ids = b->mask ? ps_tensor_new4(PS_DTYPE_I32, B, SEQ, -1, -1, error) : NULL;
  b->labels = b->ids ? ps_tensor_new4(PS_DTYPE_I32, B, SEQ, -1, -1, error) : NULL;
  b->seg = b->labels ? ps_tensor_new4(PS_DTYPE_I32, B, -1, -1, -1, error) : NULL;
  b->lens = b->seg ? ps_tensor_new4(PS_DTYPE_I32, B, -1, -1, -1, error) : NULL;
  if (!b->lens) return FALSE;
  bench_fill(ps_f32(b->image), (size_t)ps_tensor_numel(b->image), 1);
  for (int64_t i = 0; i < ps_tensor_numel(b->image); i++)
    ps_f32(b->image)[i] = 0.5f * (ps_f32(b->image)[i] + 1.0f);
  int32_t *ids = b->ids->data, *lab = b->labels->data, *seg = b->seg->data, *len = b->lens->data;
  for (int64_t k = 0; k < B; k++) {
    const int64_t r = 20 + 4 * k, n = 150 + 10 * k;
    for (int64_t y = 0; y < IMG; y++)
      for (int64_t x = 0; x < IMG; x++)
        ps_f32(b->mask)[(k * IMG + y) * IMG + x] =
            (x - 64) * (x - 64) + (y - 64) * (y - 64) < r * r ? 1.0f : 0.0f;
    for (int64_t t = 0; t < SEQ; t++) {
      int32_t id = (int32_t)((t * 31 + k * 17 + 3) % 500);
      if (t >= 4 && t < 4 + IMAGE_TOKENS) id = IMAGE_TOKEN_ID;
      ids[k * SEQ + t] = id;
      lab[k * SEQ + t] = t >= 40 && t < n ? id : -100;
    }
    seg[k] = (int32_t)(100 + k);
    len[k] = (int32_t)n;
  }
  const char *names[] = {"image", "mask", "input_ids", "labels", "seg_positions", "lengths"};
  ps_tensor *t[] = {b->image, b->mask, b->ids, b->labels, b->seg, b->lens};
  for (int i = 0; i < 6; i++) b->fields[i] = (ps_port){names[i], t[i], FALSE};
  b->ports = (ps_ports){b->fields, 6};
  return TRUE;
}

static void batch_clear(batch *b) {
  ps_tensor *t[] = {b->image, b->mask, b->ids, b->labels, b->seg, b->lens};
  for (int i = 0; i < 6; i++) ps_tensor_free(t[i]);
}

typedef struct {
  gboolean print;
  const char *const *only; /* the components counted */
  int64_t total, trainable, outside_trainable;
  GString *outside; /* "instance N, ..." of trainable scalars outside `only` */
} count_ctx;

static void count_param(const char *instance, ps_param *param, void *user) {
  count_ctx *c = user;
  int64_t n = ps_tensor_numel(param->value);
  if (!g_strv_contains(c->only, instance)) {
    if (param->grad) {
      c->outside_trainable += n;
      g_string_append_printf(c->outside, "%s%s.%s (%" G_GINT64_FORMAT ")",
                             c->outside->len ? ", " : "", instance, param->name, n);
    }
    return;
  }
  c->total += n;
  if (param->grad) c->trainable += n;
  if (c->print) {
    char buf[96];
    printf("PARAM %s.%s %s %s\n", instance, param->name,
           ps_shape_format(param->value, buf, sizeof buf), param->grad ? "train" : "frozen");
  }
}

typedef struct {
  const char *const *only;
  ps_safetensors_writer *w;
  GError *error;
} dump_ctx;

static void dump_param(const char *instance, ps_param *param, void *user) {
  dump_ctx *d = user;
  if (d->error || !g_strv_contains(d->only, instance)) return;
  g_autofree char *name = g_strconcat(instance, ".", param->name, NULL);
  ps_safetensors_writer_add(d->w, name, param->value, &d->error);
}

/* --dump: the loss of one forward without dropout (training off) on the
 * initial parameters, printed, and those parameters with the batch's image
 * written to `path`, so that the peer can load them (peer_train_step.py
 * --load) and check that it computes the same function. */
static gboolean dump_initial(ps_graph *g, ps_context *ctx, const batch *b, const char *const *only,
                             const char *loss_inst, const char *loss_port, const char *path,
                             GError **error) {
  const char *targets[] = {loss_inst, NULL};
  ps_context_set_training(ctx, FALSE);
  if (!ps_graph_forward(g, &b->ports, targets, error)) return FALSE;
  printf("# eval-mode loss on the initial parameters: %s.%s %.6f", loss_inst, loss_port,
         ps_f32(ps_graph_output(g, loss_inst, loss_port))[0]);
  const char *parts[][2] = {{"llm", "loss"}, {"seg_loss", "loss"}};
  for (size_t i = 0; i < G_N_ELEMENTS(parts); i++) {
    const ps_tensor *t = ps_graph_output(g, parts[i][0], parts[i][1]);
    if (t && ps_tensor_numel(t) == 1)
      printf(", %s.%s %.6f", parts[i][0], parts[i][1], ps_f32(t)[0]);
  }
  printf("\n");
  ps_context_reset_scratch(ctx);
  g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
  dump_ctx d = {only, w, NULL};
  ps_graph_visit_params(g, dump_param, &d);
  if (d.error) {
    g_propagate_error(error, d.error);
    return FALSE;
  }
  /* Intermediate outputs too, to find where the two sides part. */
  const char *outs[][2] = {{"ruipath", "patches"},   {"projector", "tokens"},
                           {"llm", "hidden"},        {"seg_adapter", "prompt"},
                           {"medsam", "embeddings"}, {"decoder", "low_res_masks"}};
  for (size_t i = 0; i < G_N_ELEMENTS(outs); i++) {
    const ps_tensor *t = ps_graph_output(g, outs[i][0], outs[i][1]);
    g_autofree char *name = g_strdup_printf("out.%s.%s", outs[i][0], outs[i][1]);
    if (t && !ps_safetensors_writer_add(w, name, t, error)) return FALSE;
  }
  return ps_safetensors_writer_add(w, "batch.image", b->image, error) &&
         ps_safetensors_writer_add(w, "batch.mask", b->mask, error) &&
         ps_safetensors_writer_write(w, path, error);
}

typedef struct {
  ps_graph *g;
  ps_optim *opt;
  ps_context *ctx;
  const batch *b;
  const char *loss_inst, *loss_port;
  ps_tensor *seed;
  double lr, loss;
  GError *error;
} step_ctx;

/* One stage.fit step (fit.c's loop body without metrics and checkpoints). */
static void train_step(void *user) {
  step_ctx *s = user;
  if (s->error) return;
  const char *targets[] = {s->loss_inst, NULL};
  double norm = 0;
  ps_graph_zero_grad(s->g);
  if (!ps_graph_forward(s->g, &s->b->ports, targets, &s->error)) return;
  s->loss = ps_tensor_item(ps_graph_output(s->g, s->loss_inst, s->loss_port)); /* any device */
  ps_f32(s->seed)[0] = 1.0f;
  if (!ps_graph_seed_grad(s->g, s->loss_inst, s->loss_port, s->seed, &s->error) ||
      !ps_graph_backward(s->g, &s->error) || !ps_optim_step(s->opt, s->lr, &norm, &s->error))
    return;
  ps_context_reset_scratch(s->ctx);
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench_train_step [--threads N] [--steps N] [--warmup N] [--batch B]\n"
          "                        [--pipeline FILE] [--stage NAME] [--params] [--stage-fit-set]\n"
          "                        [--lockstep] [--dump FILE] [--device cpu|cuda]\n"
          "                        [--precision f32|bf16]\n");
}

int main(int argc, char **argv) {
  int threads = 1, steps = 20, warmup = 3, batch_size = 8;
  gboolean print_params = FALSE, fit_set = FALSE, lockstep = FALSE;
  const char *pipeline = PS_SOURCE_DIR "/pipelines/quickstart.yaml", *stage_name = "sft";
  const char *dump = NULL, *device = "cpu", *precision = "f32";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--params") == 0) {
      print_params = TRUE;
    } else if (strcmp(a, "--stage-fit-set") == 0) {
      fit_set = TRUE;
    } else if (strcmp(a, "--lockstep") == 0) {
      lockstep = TRUE;
    } else if (v && strcmp(a, "--device") == 0) {
      device = v, i++;
    } else if (v && strcmp(a, "--precision") == 0) {
      precision = v, i++;
    } else if (v && strcmp(a, "--threads") == 0) {
      threads = atoi(v), i++;
    } else if (v && strcmp(a, "--steps") == 0) {
      steps = atoi(v), i++;
    } else if (v && strcmp(a, "--warmup") == 0) {
      warmup = atoi(v), i++;
    } else if (v && strcmp(a, "--batch") == 0) {
      batch_size = atoi(v), i++;
    } else if (v && strcmp(a, "--pipeline") == 0) {
      pipeline = v, i++;
    } else if (v && strcmp(a, "--dump") == 0) {
      dump = v, i++;
    } else if (v && strcmp(a, "--stage") == 0) {
      stage_name = v, i++;
    } else {
      usage();
      return 2;
    }
  }
  if (threads < 1 || steps < 1 || steps > 10000 || warmup < 0 || batch_size < 1) {
    usage();
    return 2;
  }
  GError *error = NULL;
  double base_rss = rss_mb();
  g_autoptr(ps_registry) reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  g_autofree char *set_threads = g_strdup_printf("threads=%d", threads);
  g_autofree char *set_device = g_strdup_printf("device=%s", device);
  g_autofree char *set_precision = g_strdup_printf("precision=%s", precision);
  const char *overrides[] = {set_threads, set_device, set_precision, NULL};
  g_autoptr(ps_pipeline) p = ps_pipeline_load(pipeline, overrides, ps_registry_lookup, reg, &error);
  if (!p) {
    fprintf(stderr, "bench_train_step: %s\n", error->message);
    return 1;
  }
  const ps_pipeline_stage *st = NULL;
  for (size_t i = 0; i < p->n_stages; i++)
    if (strcmp(p->stages[i].name, stage_name) == 0) st = &p->stages[i];
  if (!st || strcmp(st->plugin, "stage.fit") != 0) {
    fprintf(stderr, "bench_train_step: %s has no stage.fit stage '%s'\n", pipeline, stage_name);
    return 1;
  }
  /* The stage's own keys: loss, train_roles, optimizer. */
  const char *loss = ps_config_string(st->config, "loss");
  const char *dot = strrchr(loss, '.');
  g_autofree char *loss_inst = g_strndup(loss, (gsize)(dot - loss));
  ps_role roles[PS_ROLE_COUNT];
  size_t n_roles = 0, n = 0;
  const char *const *role_names = ps_config_string_list(st->config, "train_roles", &n);
  for (size_t i = 0; i < n && n_roles < PS_ROLE_COUNT; i++)
    if (ps_role_from_name(role_names[i], &roles[n_roles])) n_roles++;
  ps_schedule sched;
  ps_adamw_config adamw;
  ps_optim_from_config(st->config, ps_config_int(st->config, "steps"), &sched, &adamw);

  g_autoptr(ps_context) ctx = ps_context_new(p->device, p->threads, (uint64_t)p->seed);
  ps_context_set_precision(ctx, p->precision);
  g_autoptr(ps_graph) g = ps_graph_new(p, ctx, &error);
  if (!g) {
    fprintf(stderr, "bench_train_step: %s\n", error->message);
    return 1;
  }
  /* What may train: the stage's train_components (as stage.fit passes
   * them), else the components the loss depends on (stage.fit's default);
   * the bench narrows train_components to those too unless --stage-fit-set. */
  g_auto(GStrv) only = ps_graph_upstream(g, loss_inst);
  if (!only) {
    fprintf(stderr, "bench_train_step: no component '%s'\n", loss_inst);
    return 1;
  }
  size_t n_tc = 0;
  const char *const *tc = ps_config_string_list(st->config, "train_components", &n_tc);
  g_autoptr(GPtrArray) fit_only = g_ptr_array_new();
  g_autoptr(GPtrArray) bench_only = g_ptr_array_new();
  for (size_t i = 0; i < n_tc; i++) g_ptr_array_add(fit_only, (gpointer)tc[i]);
  g_ptr_array_add(fit_only, NULL);
  for (size_t i = 0; only[i]; i++)
    if (!n_tc || g_strv_contains((const gchar *const *)fit_only->pdata, only[i]))
      g_ptr_array_add(bench_only, only[i]);
  g_ptr_array_add(bench_only, NULL);
  int64_t n_fit = ps_graph_set_trainable(
      g, roles, n_roles, n_tc ? (const char *const *)fit_only->pdata : (const char *const *)only, &error);
  int64_t n_train = fit_set
                        ? n_fit
                        : ps_graph_set_trainable(g, roles, n_roles,
                                                 (const char *const *)bench_only->pdata, &error);
  if (n_train <= 0) {
    fprintf(stderr, "bench_train_step: nothing trains (%s)\n",
            error ? error->message : "no role matches");
    return 1;
  }
  g_autoptr(ps_optim) opt = ps_optim_new(g, &adamw, &error);
  if (!opt) {
    fprintf(stderr, "bench_train_step: %s\n", error->message);
    return 1;
  }
  batch b = {0};
  if (!batch_init(&b, batch_size, &error)) {
    fprintf(stderr, "bench_train_step: %s\n", error->message);
    return 1;
  }
  count_ctx cc = {print_params, (const char *const *)only, 0, 0, 0, g_string_new(NULL)};
  g_autofree char *joined = g_strjoinv(",", only);
  printf("# pipeline %s, stage %s: loss %s over components %s; %s\n", pipeline, stage_name, loss,
         joined, set_threads);
  ps_graph_visit_params(g, count_param, &cc);
  printf("# trainable scalars in the loss's graph: %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
         "; stage.fit's own set: %" G_GINT64_FORMAT "%s\n",
         cc.trainable, cc.total, n_fit,
         fit_set ? " [--stage-fit-set: AdamW steps all of them]" : "");
  if (fit_set && cc.outside->len)
    printf("# trainable outside the loss's graph: %s\n", cc.outside->str);
  g_string_free(cc.outside, TRUE);

  double built_rss = rss_mb(); /* plugins, graph, gradients, AdamW state */
  if (dump &&
      !dump_initial(g, ctx, &b, (const char *const *)only, loss_inst, dot + 1, dump, &error)) {
    fprintf(stderr, "bench_train_step: %s\n", error->message);
    return 1;
  }
  ps_context_set_training(ctx, TRUE);
  step_ctx s = {g, opt, ctx, &b, loss_inst, dot + 1, NULL, sched.lr, 0, NULL};
  s.seed = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, &error);
  for (int i = 0; i < warmup; i++) train_step(&s);
  double first_loss = warmup > 0 ? s.loss : NAN; /* nan: no warm-up step */
  /* --lockstep: a driver (run.sh) interleaves this process and the peer
   * step by step so that both see the same machine load: after "READY",
   * each input line runs one timed step, answered by "STEP wall_ms cpu_ms";
   * end of input (or `steps` steps) ends the run. */
  if (lockstep) printf("READY\n");
  fflush(stdout);
  double *t = g_new(double, steps), *c = g_new(double, steps);
  int done = 0;
  char line[64];
  for (; done < steps && !s.error; done++) {
    if (lockstep && !fgets(line, sizeof line, stdin)) break;
    double t0 = bench_now(), c0 = cpu_now();
    train_step(&s);
    t[done] = bench_now() - t0;
    c[done] = cpu_now() - c0;
    if (lockstep) {
      printf("STEP %.3f %.3f\n", 1e3 * t[done], 1e3 * c[done]);
      fflush(stdout);
    }
  }
  if (!s.error && done == 0) g_set_error(&s.error, PS_ERROR, PS_ERROR_INVALID, "no timed step ran");
  steps = done;
  if (s.error) {
    fprintf(stderr, "bench_train_step: %s\n", s.error->message);
    return 1;
  }
  double med = bench_median(t, steps), mn = t[0], cpu = bench_median(c, steps);
  printf("# loss after warm-up %.4f, after %d timed steps %.4f\n", first_loss, steps, s.loss);
  printf("RESULT train_step pathseg device=%s precision=%s threads=%d batch=%d seq=%d "
         "ms_per_step=%.2f ms_min=%.2f "
         "cpu_ms_per_step=%.2f steps=%d "
         "params_total=%" G_GINT64_FORMAT " params_trainable=%" G_GINT64_FORMAT
         " optim_scalars=%" G_GINT64_FORMAT
         " peak_rss_mb=%.1f base_rss_mb=%.1f built_rss_mb=%.1f\n",
         device, precision, threads, batch_size, SEQ, 1e3 * med, 1e3 * mn, 1e3 * cpu, steps, cc.total, cc.trainable,
         n_train, rss_mb(), base_rss, built_rss);
  g_free(t);
  g_free(c);
  ps_tensor_free(s.seed);
  batch_clear(&b);
  return 0;
}
