/* preprocess.h — what the files of the `preprocess` plugin share: the
 * resolved configuration of stage.preprocess_slides, the per-slide job
 * (slide_job.c), the worker processes (workers.c) and the merge of
 * per-slide manifests (merge.c).
 *
 * Output layout (out_dir):
 *   <stem>/tiles/<x>_<y>.png   RGB tiles (x, y: level-0 top-left corner)
 *   <stem>/masks/<x>_<y>.png   0/255 masks
 *   <stem>/manifest.jsonl      the slide's rows (paths relative to <stem>/)
 *   <stem>/done                written last: the slide is finished
 *   <stem>/.partial/           PNGs being written (emptied when the slide is done)
 *   manifest.jsonl             all slides (paths relative to out_dir) */
#pragma once

#include <glib.h>
#include <pathseg/run.h>
#include <stdint.h>

#include "png_write.h"
#include "slide.h"

typedef struct pp_config {
  char *out_dir;
  char *target;
  char *organ;            /* word in the reasoning chains */
  char *tissue;           /* "otsu" | "fixed" */
  double tissue_threshold; /* saturation threshold for "fixed" */
  int magnification;      /* 5, 10, 20, 40 */
  double mpp;             /* override; 0: from the slide */
  double mpp_tolerance;   /* relative: a level this close to the wanted mpp is read as is */
  int tile_size, overlap, thumb_factor, min_component;
  double min_tissue;
  gboolean keep_empty;    /* keep tiles whose annotation mask is empty */
  char **exclude_groups;  /* NULL-terminated */
  uint64_t seed;
  int png_compression;    /* deflate level 0..9 */
  pp_png_filter png_filter;
  int64_t level_cache_mb; /* read a level whose thumbnail and tiles share it once, up to this size */
  ps_slide_reader slide_reader; /* pixels through tiffload where identical to OpenSlide's, or forced */
} pp_config;

/* One slide to process. */
typedef struct pp_slide_job {
  char *path, *annotations, *stem;
} pp_slide_job;

/* Thread-safe logging and progress shared by the jobs of one run. */
typedef struct pp_shared {
  ps_run *run;
  GMutex lock;
  int rank; /* > 0: an MPI rank whose ps_run_log is a no-op; pp_log prints to stderr */
  int64_t tiles_done, tiles_total;
} pp_shared;

void pp_log(pp_shared *sh, const char *format, ...) G_GNUC_PRINTF(2, 3);
void pp_progress(pp_shared *sh, int64_t add_done, int64_t add_total, const char *stem);

typedef struct pp_job_result {
  int64_t tiles, written, skipped_empty;
  gboolean done; /* finished now or before */
} pp_job_result;

/* Processes one slide with `threads` tile threads. FALSE (with the reason in
 * error) when the slide is skipped: unreadable, no mpp, empty mask,
 * cancelled. Writes the per-slide manifest and `done` only on success. */
gboolean pp_slide_job_run(const pp_config *cfg, const pp_slide_job *job, int threads, pp_shared *sh,
                          pp_job_result *result, GError **error);

/* out_dir/<stem>/done exists. */
gboolean pp_slide_done(const pp_config *cfg, const char *stem);

/* Concatenates the per-slide manifests of `jobs` that are done into
 * out_dir/manifest.jsonl (atomically, rewritten only when its content
 * changes); splits 8:1:1 grouped by slide. *rows: rows written. */
gboolean pp_merge(const pp_config *cfg, GPtrArray *jobs, int64_t *rows, gboolean *rewritten, GError **error);

/* Slides processed and skipped by one process (or its workers). */
typedef struct pp_pool_result {
  int ok, skipped;
  char *first_skip; /* the first skip's reason, for the error when nothing is usable */
} pp_pool_result;

/* How worker processes are started: `executable run <run>/pipeline.yaml`
 * with this stage's slides set to one slide. */
typedef struct pp_worker_spec {
  ps_run *run;
  const char *executable;
  const char *out_dir;
  int workers; /* processes at a time */
  int threads; /* tile threads of each */
} pp_worker_spec;

/* The `pipeline` executable: `configured` when set, this process when it is
 * `pipeline`, else `pipeline` on PATH. */
char *pp_worker_executable(const char *configured, GError **error);

/* Runs each of `jobs` (pp_slide_job*) in its own worker process, w->workers
 * at a time, and waits for all. Slides that fail are counted and logged in
 * res; FALSE only when a worker cannot be started. */
gboolean pp_run_workers(const pp_worker_spec *w, GPtrArray *jobs, pp_shared *sh, pp_pool_result *res,
                        GError **error);
