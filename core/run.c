/* run.c — a run of a pipeline: directory, log, metrics, progress, Ctrl-C,
 * checkpoints and resume (see run.h). */
#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/kernels.h>
#include <pathseg/run.h>
#include <pathseg/safetensors.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "context_internal.h"

#define CHECKPOINT_FORMAT "pathseg-checkpoint-1"

struct ps_run {
  const ps_pipeline *pipeline;
  ps_graph *graph;
  ps_context *ctx;
  char *dir;
  FILE *log;
  FILE *metrics;
  const char *stage;
  GPtrArray *stages_done;   /* char* */
  ps_safetensors *resume;   /* the checkpoint a --resume started from */
  char *resume_stage;       /* its stage, NULL when it was at a stage boundary */
  int64_t resume_step;
  gboolean quiet;
  gboolean tty;
  gint64 progress_start_us;
  int64_t progress_start_step;
  int64_t last_plain_step;
  ps_comm *comm;            /* the ranks (borrowed); rank 0 writes the run directory */
  gboolean root;
};

static volatile sig_atomic_t cancel_requested = 0;

static void on_sigint(int sig) {
  (void)sig;
  if (cancel_requested) {
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
  }
  cancel_requested = 1;
}

const char *ps_run_dir(const ps_run *run) { return run->dir; }
const ps_pipeline *ps_run_pipeline(const ps_run *run) { return run->pipeline; }
ps_graph *ps_run_graph(ps_run *run) { return run->graph; }
ps_context *ps_run_context(ps_run *run) { return run->ctx; }
const char *ps_run_stage(const ps_run *run) { return run->stage; }
gboolean ps_run_cancelled(const ps_run *run) { return cancel_requested != 0; }
ps_comm *ps_run_comm(ps_run *run) { return run->comm; }

gboolean ps_run_agree_stop(ps_run *run, GError **error) {
  if (ps_comm_size(run->comm) == 1) return TRUE;
  int64_t stop = cancel_requested != 0;
  if (!ps_comm_allreduce_max_i64(run->comm, &stop, 1, error)) return FALSE;
  if (stop) cancel_requested = 1;
  return TRUE;
}
gboolean ps_run_is_root(const ps_run *run) { return run->root; }
void ps_run_request_stop(ps_run *run) { cancel_requested = 1; }

static void end_progress_line(ps_run *run) {
  if (run->tty && run->progress_start_us) {
    fputc('\n', stderr);
    run->progress_start_us = 0;
  }
}

void ps_run_log(ps_run *run, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  g_autofree char *msg = g_strdup_vprintf(format, ap);
  va_end(ap);
  g_autoptr(GDateTime) now = g_date_time_new_now_local();
  g_autofree char *stamp = g_date_time_format(now, "%H:%M:%S");
  if (run->log) {
    fprintf(run->log, "%s [%s] %s\n", stamp, run->stage ? run->stage : "run", msg);
    fflush(run->log);
  }
  if (!run->quiet && run->root) {
    end_progress_line(run);
    fprintf(stderr, "[%s] %s\n", run->stage ? run->stage : "run", msg);
  }
}

static void json_number(GString *s, double v) {
  if (!isfinite(v)) {
    g_string_append(s, "null");
    return;
  }
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append(s, g_ascii_formatd(buf, sizeof buf, "%.9g", v));
}

void ps_run_metrics(ps_run *run, int64_t step, ...) {
  if (!run->metrics) return;
  GString *s = g_string_new(NULL);
  /* Unix time in milliseconds' precision (%.9g would round it to seconds) */
  char stamp[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append_printf(s, "{\"stage\": \"%s\", \"step\": %" G_GINT64_FORMAT ", \"time\": %s",
                         run->stage ? run->stage : "run", step,
                         g_ascii_formatd(stamp, sizeof stamp, "%.3f", (double)g_get_real_time() / 1e6));
  va_list ap;
  va_start(ap, step);
  const char *key;
  while ((key = va_arg(ap, const char *))) {
    double v = va_arg(ap, double);
    g_string_append_printf(s, ", \"%s\": ", key);
    json_number(s, v);
  }
  va_end(ap);
  g_string_append(s, "}\n");
  fputs(s->str, run->metrics);
  fflush(run->metrics);
  g_string_free(s, TRUE);
}

static void format_duration(char *buf, size_t size, double seconds) {
  if (!isfinite(seconds) || seconds < 0) {
    g_snprintf(buf, size, "--:--");
    return;
  }
  long s = (long)(seconds + 0.5);
  if (s >= 3600)
    g_snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    g_snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

void ps_run_progress(ps_run *run, int64_t step, int64_t total, const char *format, ...) {
  if (run->quiet || !run->root) return;
  gint64 now = g_get_monotonic_time();
  if (!run->progress_start_us || step < run->progress_start_step) {
    run->progress_start_us = now;
    run->progress_start_step = step;
    run->last_plain_step = -1;
  }
  va_list ap;
  va_start(ap, format);
  g_autofree char *text = format ? g_strdup_vprintf(format, ap) : g_strdup("");
  va_end(ap);
  double elapsed = (double)(now - run->progress_start_us) / 1e6;
  int64_t done = step - run->progress_start_step;
  double rate = elapsed > 0 ? (double)done / elapsed : 0;
  char eta[32];
  format_duration(eta, sizeof eta, rate > 0 ? (double)(total - step) / rate : NAN);
  if (run->tty) {
    fprintf(stderr, "\r\033[K[%s] %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "  %.2f it/s  left %s  %s",
            run->stage ? run->stage : "run", step, total, rate, eta, text);
    fflush(stderr);
  } else {
    int64_t every = total > 20 ? total / 20 : 1;
    if (step == total || step - run->last_plain_step >= every || run->last_plain_step < 0) {
      fprintf(stderr, "[%s] step %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "  %.2f it/s  left %s  %s\n",
              run->stage ? run->stage : "run", step, total, rate, eta, text);
      run->last_plain_step = step;
    }
  }
}

/* ---------------------------------------------------------------------- */
/* Checkpoints. */

typedef struct {
  ps_safetensors_writer *w;
  GError **error;
  gboolean failed;
} save_ctx;

static void save_param(const char *instance, ps_param *p, void *user) {
  save_ctx *sc = user;
  if (sc->failed) return;
  g_autofree char *key = g_strdup_printf("%s/%s", instance, p->name);
  if (!ps_safetensors_writer_add(sc->w, key, p->value, sc->error)) sc->failed = TRUE;
}

static char *stages_done_json(const ps_run *run) {
  GString *s = g_string_new("[");
  for (guint i = 0; i < run->stages_done->len; i++)
    g_string_append_printf(s, "%s\"%s\"", i ? ", " : "", (char *)g_ptr_array_index(run->stages_done, i));
  g_string_append_c(s, ']');
  return g_string_free(s, FALSE);
}

static gboolean write_checkpoint(ps_run *run, const char *stage, int64_t step, const ps_optim *opt,
                                 GError **error) {
  g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
  save_ctx sc = {w, error, FALSE};
  ps_graph_visit_params(run->graph, save_param, &sc);
  if (sc.failed) return FALSE;
  if (opt && !ps_optim_save(opt, w, error)) return FALSE;
  g_autofree char *step_s = g_strdup_printf("%" G_GINT64_FORMAT, step);
  const ps_rng *rng = ps_context_rng(run->ctx);
  g_autofree char *rng_s = g_strdup_printf("%016" G_GINT64_MODIFIER "x%016" G_GINT64_MODIFIER
                                           "x%016" G_GINT64_MODIFIER "x%016" G_GINT64_MODIFIER "x",
                                           (guint64)rng->s[0], (guint64)rng->s[1],
                                           (guint64)rng->s[2], (guint64)rng->s[3]);
  g_autofree char *done = stages_done_json(run);
  ps_safetensors_writer_set_metadata(w, "format", CHECKPOINT_FORMAT);
  ps_safetensors_writer_set_metadata(w, "pipeline", run->pipeline->name);
  if (stage) ps_safetensors_writer_set_metadata(w, "stage", stage);
  ps_safetensors_writer_set_metadata(w, "step", step_s);
  ps_safetensors_writer_set_metadata(w, "rng", rng_s);
  ps_safetensors_writer_set_metadata(w, "stages_done", done);
  ps_safetensors_writer_set_metadata(w, "config", run->pipeline->resolved_yaml);
  g_autofree char *path = g_build_filename(run->dir, "checkpoints", "last.safetensors", NULL);
  return ps_safetensors_writer_write(w, path, error);
}

gboolean ps_run_save_checkpoint(ps_run *run, int64_t step, const ps_optim *opt, GError **error) {
  /* All ranks hold the same parameters and optimizer state. */
  return !run->root || write_checkpoint(run, run->stage, step, opt, error);
}

gboolean ps_run_resume(ps_run *run, ps_optim *opt, int64_t *start_step, GError **error) {
  *start_step = 0;
  if (!run->resume || !run->resume_stage || g_strcmp0(run->resume_stage, run->stage) != 0)
    return TRUE;
  if (opt && !ps_optim_load(opt, run->resume, error)) return FALSE;
  *start_step = run->resume_step;
  ps_run_log(run, "resuming at step %" G_GINT64_FORMAT, *start_step);
  return TRUE;
}

typedef struct {
  ps_safetensors *st;
  GString *problems;
} load_ctx;

static void load_param(const char *instance, ps_param *p, void *user) {
  load_ctx *lc = user;
  g_autofree char *key = g_strdup_printf("%s/%s", instance, p->name);
  GError *error = NULL;
  const ps_tensor *t = ps_safetensors_get(lc->st, key, &error);
  if (!t || !ps_tensor_check(t, key, p->value->dtype, p->value->ndim, p->value->shape, &error)) {
    g_string_append_printf(lc->problems, "\n  %s", error->message);
    g_clear_error(&error);
    return;
  }
  if (!ps_tensor_copy_into(p->value, t, &error)) {
    g_string_append_printf(lc->problems, "\n  %s: %s", key, error->message);
    g_clear_error(&error);
  }
}

static gboolean parse_rng(const char *text, ps_rng *rng) {
  if (!text || strlen(text) != 64) return FALSE;
  for (int i = 0; i < 4; i++) {
    char part[17];
    memcpy(part, text + 16 * i, 16);
    part[16] = 0;
    char *end = NULL;
    rng->s[i] = g_ascii_strtoull(part, &end, 16);
    if (!end || *end) return FALSE;
  }
  return TRUE;
}

static gboolean open_resume(ps_run *run, GError **error) {
  g_autofree char *path = g_build_filename(run->dir, "checkpoints", "last.safetensors", NULL);
  run->resume = ps_safetensors_open(path, error);
  if (!run->resume) return FALSE;
  const char *format = ps_safetensors_metadata(run->resume, "format");
  if (g_strcmp0(format, CHECKPOINT_FORMAT) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: not a pathseg checkpoint (format '%s')", path,
                format ? format : "none");
    return FALSE;
  }
  const char *step = ps_safetensors_metadata(run->resume, "step");
  const char *done = ps_safetensors_metadata(run->resume, "stages_done");
  const char *stage = ps_safetensors_metadata(run->resume, "stage");
  if (!step || !done || !parse_rng(ps_safetensors_metadata(run->resume, "rng"), ps_context_rng(run->ctx))) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: checkpoint metadata is incomplete (step, rng, stages_done)",
                path);
    return FALSE;
  }
  run->resume_step = g_ascii_strtoll(step, NULL, 10);
  /* stages_done is a flat JSON array of names we wrote ourselves. */
  g_auto(GStrv) names = g_strsplit_set(done, "[]\", ", -1);
  for (size_t i = 0; names[i]; i++)
    if (*names[i]) g_ptr_array_add(run->stages_done, g_strdup(names[i]));
  gboolean stage_finished = FALSE;
  for (guint i = 0; stage && i < run->stages_done->len; i++)
    if (strcmp(g_ptr_array_index(run->stages_done, i), stage) == 0) stage_finished = TRUE;
  run->resume_stage = stage && !stage_finished ? g_strdup(stage) : NULL;

  load_ctx lc = {run->resume, g_string_new(NULL)};
  ps_graph_visit_params(run->graph, load_param, &lc);
  if (lc.problems->len) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s does not match this pipeline:%s", path,
                lc.problems->str);
    g_string_free(lc.problems, TRUE);
    return FALSE;
  }
  g_string_free(lc.problems, TRUE);
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* Running a pipeline. */

/* Which OpenBLAS kernels run matters for speed by 3-4x: OpenBLAS 0.3.21 does
 * not know some newer CPUs and falls back to its SSE3 "Prescott" kernels.
 * Say so, with the fix (pathseg never overrides the user's environment). */
static void log_blas(ps_run *run) {
  const char *core = openblas_get_corename();
  ps_run_log(run, "BLAS: %s; kernels for %s, %d threads", openblas_get_config(),
             core ? core : "?", openblas_get_num_threads());
  __builtin_cpu_init();
  if (core && g_ascii_strcasecmp(core, "prescott") == 0 && __builtin_cpu_supports("avx2") &&
      !g_getenv("OPENBLAS_CORETYPE"))
    ps_run_log(run, "BLAS: this CPU has AVX2 but OpenBLAS chose its SSE3 kernels; matrix products "
               "run 3-4x faster with OPENBLAS_CORETYPE=Haswell (or SkylakeX with AVX-512) set");
}

static char *make_run_dir(const ps_pipeline *p, GError **error) {
  g_autoptr(GDateTime) now = g_date_time_new_now_local();
  g_autofree char *stamp = g_date_time_format(now, "%Y%m%d-%H%M%S");
  for (int attempt = 1; attempt < 1000; attempt++) {
    g_autofree char *leaf = attempt == 1 ? g_strdup_printf("%s-%s", p->name, stamp)
                                         : g_strdup_printf("%s-%s-%d", p->name, stamp, attempt);
    char *dir = g_build_filename(p->run_dir, leaf, NULL);
    if (g_mkdir_with_parents(p->run_dir, 0755) != 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s: %s", p->run_dir, g_strerror(errno));
      g_free(dir);
      return NULL;
    }
    if (g_mkdir(dir, 0755) == 0) return dir;
    int e = errno;
    if (e != EEXIST) {
      g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s: %s", dir, g_strerror(e));
      g_free(dir);
      return NULL;
    }
    g_free(dir);
  }
  g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot find a free run directory under %s", p->run_dir);
  return NULL;
}

static void run_close(ps_run *run) {
  if (run->log) fclose(run->log);
  if (run->metrics) fclose(run->metrics);
  g_clear_pointer(&run->resume, ps_safetensors_close);
  g_clear_pointer(&run->graph, ps_graph_free);
  g_clear_pointer(&run->ctx, ps_context_free);
  g_ptr_array_unref(run->stages_done);
  g_free(run->resume_stage);
  g_free(run->dir);
}

static gboolean stage_done(const ps_run *run, const char *name) {
  for (guint i = 0; i < run->stages_done->len; i++)
    if (strcmp(g_ptr_array_index(run->stages_done, i), name) == 0) return TRUE;
  return FALSE;
}

/* Rank 0's parameters to every rank: at the start (whatever each rank
 * initialised) and after a stage that ran on rank 0 alone. */
typedef struct {
  ps_comm *comm;
  GError **error;
  gboolean failed;
} bcast_ctx;

static void bcast_param(const char *instance, ps_param *p, void *user) {
  bcast_ctx *bc = user;
  if (bc->failed) return;
  if (!ps_comm_broadcast(bc->comm, p->value->data, p->value->nbytes, 0, bc->error)) {
    g_prefix_error(bc->error, "broadcasting %s/%s: ", instance, p->name);
    bc->failed = TRUE;
  }
}

static gboolean broadcast_params(ps_run *run, GError **error) {
  if (ps_comm_size(run->comm) == 1) return TRUE;
  bcast_ctx bc = {run->comm, error, FALSE};
  ps_graph_visit_params(run->graph, bcast_param, &bc);
  return !bc.failed;
}

/* Rank 0 names the run directory; every rank gets the name. */
static char *shared_run_dir(ps_run *run, const ps_pipeline *pipeline, GError **error) {
  g_autofree char *dir = run->root ? make_run_dir(pipeline, error) : NULL;
  int64_t len = dir ? (int64_t)strlen(dir) + 1 : run->root ? -1 : 0;
  if (ps_comm_size(run->comm) == 1) return g_steal_pointer(&dir);
  GError *local = NULL;
  if (!ps_comm_broadcast(run->comm, &len, sizeof len, 0, &local)) {
    g_propagate_error(error, local);
    return NULL;
  }
  if (len < 0) {
    if (!run->root)
      g_set_error(error, PS_ERROR, PS_ERROR_IO, "rank 0 could not create the run directory");
    return NULL;
  }
  if (!run->root) dir = g_malloc0((gsize)len);
  if (!ps_comm_broadcast(run->comm, dir, (size_t)len, 0, error)) return NULL;
  return g_steal_pointer(&dir);
}

gboolean ps_run_execute(const ps_pipeline *pipeline, ps_registry *reg,
                         const ps_run_options *options, char **run_dir_out, GError **error) {
  (void)reg;
  ps_run run = {0};
  run.pipeline = pipeline;
  run.quiet = options && options->quiet;
  run.tty = isatty(STDERR_FILENO);
  run.stages_done = g_ptr_array_new_with_free_func(g_free);
  run.comm = options && options->comm ? options->comm : ps_context_comm(NULL);
  run.root = ps_comm_rank(run.comm) == 0;
  const int ranks = ps_comm_size(run.comm);
  gboolean ok = FALSE;
  g_autofree char *ckdir = NULL, *yaml_path = NULL, *log_path = NULL, *metrics_path = NULL;
  void (*previous)(int) = NULL;

  if (options && options->resume_dir) {
    if (!g_file_test(options->resume_dir, G_FILE_TEST_IS_DIR)) {
      g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "--resume %s: no such run directory",
                  options->resume_dir);
      goto out;
    }
    run.dir = g_strdup(options->resume_dir);
  } else {
    run.dir = shared_run_dir(&run, pipeline, error);
    if (!run.dir) goto out;
  }
  if (run_dir_out) *run_dir_out = g_strdup(run.dir);
  ckdir = g_build_filename(run.dir, "checkpoints", NULL);
  yaml_path = g_build_filename(run.dir, "pipeline.yaml", NULL);
  log_path = g_build_filename(run.dir, "log.txt", NULL);
  metrics_path = g_build_filename(run.dir, "metrics.jsonl", NULL);
  if (run.root && g_mkdir_with_parents(ckdir, 0755) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s: %s", ckdir, g_strerror(errno));
    goto out;
  }
  if (run.root && !(options && options->resume_dir) &&
      !g_file_set_contents(yaml_path, pipeline->resolved_yaml, -1, error))
    goto out;
  if (run.root) {
    run.log = fopen(log_path, "a");
    run.metrics = fopen(metrics_path, "a");
  }
  if (run.root && (!run.log || !run.metrics)) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot open the log files in %s: %s", run.dir,
                g_strerror(errno));
    goto out;
  }

  if (pipeline->device != PS_DEVICE_CPU) {
    /* Fail before building anything when the device's kernels cannot load. */
    if (!ps_kernels_get_precision(pipeline->device, pipeline->precision, error)) {
      g_prefix_error(error, "%s: device: ", pipeline->name);
      goto out;
    }
    if (ranks > 1) {
      /* Device gradients would have to travel through NCCL (or a CUDA-aware
       * MPI); the MPI backend sums host buffers. */
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                  "%s: data-parallel training (%d ranks) runs on the CPU only for now; "
                  "use device: cpu or one rank",
                  pipeline->name, ranks);
      goto out;
    }
  }
  run.ctx = ps_context_new(pipeline->device, pipeline->threads, (uint64_t)pipeline->seed);
  ps_context_set_precision(run.ctx, pipeline->precision);
  ps_context_set_comm(run.ctx, run.comm);
  run.graph = ps_graph_new(pipeline, run.ctx, error);
  if (!run.graph) goto out;
  if (options && options->resume_dir && !open_resume(&run, error)) goto out;
  if (!broadcast_params(&run, error)) goto out;
  ps_run_log(&run, "run directory %s", run.dir);
  if (ranks > 1)
    ps_run_log(&run, "%d ranks (%s backend): data-parallel stages shard each batch; rank 0 writes",
               ranks, ps_comm_backend(run.comm));
  log_blas(&run);
  if (pipeline->device != PS_DEVICE_CPU) {
    const ps_kernels *k = ps_context_kernels(run.ctx, NULL);
    ps_run_log(&run, "device %s: %s kernels, precision %s", k ? "cuda" : "?", k ? k->name : "?",
               pipeline->precision == PS_PRECISION_BF16 ? "bf16" : "f32");
  }

  cancel_requested = 0;
  previous = signal(SIGINT, on_sigint);
  ok = TRUE;
  for (size_t s = 0; s < pipeline->n_stages && ok; s++) {
    const ps_pipeline_stage *st = &pipeline->stages[s];
    run.stage = st->name;
    if (!st->enabled) {
      ps_run_log(&run, "disabled, skipped");
      continue;
    }
    if (stage_done(&run, st->name)) {
      ps_run_log(&run, "already finished in this run, skipped");
      continue;
    }
    const ps_stage_iface *iface = st->desc->capability ? st->desc->capability("stage") : NULL;
    if (!iface || !iface->run) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "%s: %s is not a stage (no 'stage' capability)",
                  st->where, st->plugin);
      ok = FALSE;
      break;
    }
    g_autoptr(ps_component) comp = ps_component_new(st->desc, st->config, st->name, run.ctx, error);
    if (!comp) {
      ok = FALSE;
      break;
    }
    gint64 t0 = g_get_monotonic_time();
    gboolean parallel = iface->struct_size >= G_STRUCT_OFFSET(ps_stage_iface, flags) + sizeof(uint32_t) &&
                        (iface->flags & PS_STAGE_DATA_PARALLEL);
    ps_run_log(&run, "starting (%s)%s", st->plugin,
               ranks > 1 ? (parallel ? " on every rank" : " on rank 0") : "");
    if (parallel || run.root) ok = iface->run(ps_component_self(comp), &run, error);
    end_progress_line(&run);
    if (ranks > 1 && !parallel) {
      /* The other ranks learn whether rank 0's stage worked, then take its
       * parameters (a failed rank in a parallel stage ends the job through
       * ps_comm_abort, since the others wait inside a collective). */
      int64_t failed = !ok;
      GError *local = NULL;
      if (!ps_comm_broadcast(run.comm, &failed, sizeof failed, 0, ok ? error : &local)) ok = FALSE;
      g_clear_error(&local);
      if (ok && failed) {
        g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "stage '%s' failed on rank 0", st->name);
        ok = FALSE;
      }
      if (ok && !broadcast_params(&run, error)) ok = FALSE;
    }
    if (!ok) break;
    if (cancel_requested) {
      g_set_error(error, PS_ERROR, PS_ERROR_CANCELLED,
                  "stopped during stage '%s'; resume with: pipeline run %s --resume %s",
                  st->name, pipeline->path, run.dir);
      ok = FALSE;
      break;
    }
    g_ptr_array_add(run.stages_done, g_strdup(st->name));
    ok = !run.root || write_checkpoint(&run, st->name, 0, NULL, error);
    ps_run_log(&run, "finished in %.1f s", (double)(g_get_monotonic_time() - t0) / 1e6);
  }
  signal(SIGINT, previous);
  run.stage = NULL;
  if (ok) ps_run_log(&run, "done: %s", run.dir);
out:
  if (!ok && run.log && error && *error) {
    fprintf(run.log, "error: %s\n", (*error)->message);
  }
  run_close(&run);
  return ok;
}
