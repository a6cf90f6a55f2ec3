/* run.h — a run of a pipeline: its directory, log, metrics, progress line,
 * cancellation and checkpoints. Stage plugins receive the ps_run.
 *
 * Layout of a run directory (runs/<name>-<YYYYmmdd-HHMMSS>/):
 *   pipeline.yaml          the resolved (merged, overridden) pipeline
 *   log.txt                everything the run logged
 *   metrics.jsonl          one JSON object per line: stage, step, time, values
 *   checkpoints/last.safetensors   parameters, optimizer state, step, RNG
 *                          state and the resolved config (written atomically)
 *
 * Ctrl-C sets the cancelled flag: stages finish the current step, save a
 * checkpoint and return; the command then says how to resume. */
#pragma once

#include <glib.h>
#include <pathseg/comm.h>
#include <pathseg/graph.h>
#include <pathseg/optim.h>
#include <pathseg/registry.h>

G_BEGIN_DECLS

typedef struct ps_run ps_run;

const char *ps_run_dir(const ps_run *run);
const ps_pipeline *ps_run_pipeline(const ps_run *run);
ps_graph *ps_run_graph(ps_run *run);
ps_context *ps_run_context(ps_run *run);
/* The name of the stage being run ("sft"). */
const char *ps_run_stage(const ps_run *run);
gboolean ps_run_cancelled(const ps_run *run);
/* Asks the run to stop after the current step, as Ctrl-C does (a stage's
 * `stop_after_steps`, a time-boxed cluster job). */
void ps_run_request_stop(ps_run *run);
/* Data-parallel stages call this once per step, before ps_run_cancelled:
 * when any rank was asked to stop (Ctrl-C reaches ranks at different
 * steps), every rank is, so that all stop at the same step. Collective; a
 * no-op with one rank. FALSE only when the ranks cannot communicate. */
gboolean ps_run_agree_stop(ps_run *run, GError **error);
/* The ranks of this run (see comm.h); size 1 without mpirun. */
ps_comm *ps_run_comm(ps_run *run);
/* TRUE on rank 0, the rank that writes the run directory. */
gboolean ps_run_is_root(const ps_run *run);

void ps_run_log(ps_run *run, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* Appends {"stage":..,"step":..,"time":..,KEY:VALUE...} to metrics.jsonl.
 * Arguments after `step` are (const char *key, double value) pairs ending
 * with NULL. */
void ps_run_metrics(ps_run *run, int64_t step, ...) G_GNUC_NULL_TERMINATED;
/* A live progress line on a terminal (step/total, rate, time left, text);
 * a plain line every `log_every` steps otherwise. */
void ps_run_progress(ps_run *run, int64_t step, int64_t total, const char *format, ...)
    G_GNUC_PRINTF(4, 5);

/* Saves parameters, `opt` state (may be NULL), step and RNG state. */
gboolean ps_run_save_checkpoint(ps_run *run, int64_t step, const ps_optim *opt, GError **error);
/* The step the current stage resumes from (0 when it starts fresh). When the
 * run was resumed inside this stage, restores `opt` from the checkpoint. */
gboolean ps_run_resume(ps_run *run, ps_optim *opt, int64_t *start_step, GError **error);

/* Capability "stage" of a stage component.
 *
 * With several ranks, a stage without PS_STAGE_DATA_PARALLEL runs on rank 0
 * only; the other ranks wait and then receive rank 0's parameters. A stage
 * with the flag runs on every rank and shares the work itself: it shards its
 * data by ps_comm_rank/ps_comm_size (ps_loader_options.shard_*), and its
 * ps_optim sums gradients across ranks before each step. Only rank 0's
 * ps_run_log, ps_run_metrics, ps_run_progress and checkpoints reach the
 * run directory (the calls are no-ops elsewhere), so stages call them as
 * usual. */
enum { PS_STAGE_DATA_PARALLEL = 1u << 0 };

typedef struct ps_stage_iface {
  uint32_t struct_size;
  gboolean (*run)(void *self, ps_run *run, GError **error);
  uint32_t flags; /* PS_STAGE_* (added in ABI 1.1; absent means 0) */
} ps_stage_iface;

/* ---------------------------------------------------------------------- */
/* Host side: the `pipeline run` command. */

typedef struct ps_run_options {
  const char *resume_dir; /* --resume RUN, or NULL */
  gboolean quiet;
  ps_comm *comm;          /* the ranks of a data-parallel run (borrowed), or NULL */
} ps_run_options;

/* Creates (or reopens) the run directory and runs every enabled stage in
 * order. On cancel returns FALSE with PS_ERROR_CANCELLED. */
gboolean ps_run_execute(const ps_pipeline *pipeline, ps_registry *reg,
                         const ps_run_options *options, char **run_dir_out, GError **error);

G_END_DECLS
