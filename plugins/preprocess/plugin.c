/* plugin.c — the `preprocess` plugin: stage.preprocess_slides cuts whole
 * slides into tissue tiles at a chosen magnification, with masks from
 * polygon annotations (or the tissue mask), template queries and reasoning
 * chains, one resumable job per slide (slide_job.c) with its tiles shared by
 * threads, `workers` slides at a time in worker processes (workers.c), a
 * Slurm array task's share of the slides per process, and a final merge of
 * the per-slide manifests (merge.c) by one process. */
#include <glib/gstdio.h>
#include <pathseg/error.h>
#include <pathseg/plugin.h>
#include <stdlib.h>
#include <string.h>

#include "png_io.h"
#include "preprocess.h"
#include "slide.h"

static const ps_config_key keys[] = {
    {"slides", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL, "whole-slide images (any OpenSlide format)"},
    {"slide_list", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "a text file, one slide per line (optionally TAB and its annotation file); relative paths are relative to it"},
    {"annotations", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL,
     "per slide of `slides`, an ASAP XML or QuPath GeoJSON of level-0 polygons (\"\": none)"},
    {"annotation_dir", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "looks up <stem>.geojson, <stem>.json or <stem>.xml for slides without annotations"},
    {"exclude_groups", PS_TYPE_STRING_LIST, "[_2, exclusion, exclude, ignore]", PS_NO_RANGE, NULL,
     "annotation groups / classifications cut out of the masks"},
    {"out_dir", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "output directory: <stem>/tiles, masks, manifest.jsonl"},
    {"magnification", PS_TYPE_INT, "20", 5, 40, NULL, "5, 10, 20 or 40 (40x = 0.25 um/px)"},
    {"mpp", PS_TYPE_FLOAT, "0", 0, 1000, NULL, "level-0 microns per pixel; 0: from the slide's properties"},
    {"mpp_tolerance", PS_TYPE_FLOAT, "0.05", 0, 0.5, NULL,
     "relative mpp difference within which a level is used without resizing"},
    {"tile_size", PS_TYPE_INT, "256", 16, 4096, NULL, "tile side in pixels at the magnification"},
    {"overlap", PS_TYPE_INT, "0", 0, 4095, NULL, "pixels shared by neighbouring tiles"},
    {"min_tissue", PS_TYPE_FLOAT, "0.5", 0, 1, NULL, "keep tiles with at least this fraction of tissue"},
    {"thumb_factor", PS_TYPE_INT, "16", 1, 4096, NULL, "level-0 pixels per tissue-mask cell"},
    {"tissue", PS_TYPE_ENUM, "otsu", PS_NO_RANGE, "otsu|fixed", "saturation threshold: Otsu or `tissue_threshold`"},
    {"tissue_threshold", PS_TYPE_FLOAT, "0.07", 0, 1, NULL, "saturation threshold when tissue: fixed"},
    {"target", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "query target; \"\": tumour with annotations, tissue without"},
    {"organ", PS_TYPE_STRING, "colonic", PS_NO_RANGE, NULL, "organ word used in reasoning chains"},
    {"keep_empty", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL, "keep tiles whose annotation mask is empty"},
    {"min_component", PS_TYPE_INT, "16", 1, 1e6, NULL, "pixels of the smallest mask piece the descriptors count"},
    {"png_compression", PS_TYPE_INT, "6", 0, 9, NULL,
     "PNG deflate level (libdeflate): 6 is zlib's and Pillow's default; 1 deflates ~1.5x faster, and its files are "
     "no larger on H&E tiles"},
    {"png_filter", PS_TYPE_ENUM, "adaptive", PS_NO_RANGE, "none|sub|up|paeth|adaptive",
     "PNG row filter; adaptive (per row, as Pillow and libpng) gives ~25% smaller tiles than none"},
    {"level_cache_mb", PS_TYPE_INT, "1024", 0, 1e6, NULL,
     "a level that gives both the tissue thumbnail and the tiles (single-level slides) is decoded once into "
     "memory when it is at most this many MB; 0: always read it twice"},
    {"slide_reader", PS_TYPE_ENUM, "auto", PS_NO_RANGE, "auto|openslide|tiff",
     "how pixels are read: auto takes libvips' tiffload for Aperio / generic-TIFF levels where it decodes "
     "exactly OpenSlide's pixels (opaque 8-bit RGB, JPEG or lossless; no compositing, ~4x faster) and OpenSlide "
     "for the rest; openslide: always OpenSlide; tiff: tiffload or an error"},
    {"seed", PS_TYPE_INT, "1", 0, 1e15, NULL, "seed of splits and reasoning chains"},
    {"workers", PS_TYPE_INT, "1", 1, 4096, NULL,
     "worker processes: each slide runs in its own `pipeline` process, this many at a time (1: slides in turn "
     "in this process); under mpirun, the ranks share the slides instead"},
    {"threads", PS_TYPE_INT, "0", 0, 1024, NULL,
     "tile threads of each worker process; 0: the pipeline's threads (or all cores) divided by workers"},
    {"worker_command", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "the pipeline executable workers run; \"\": this one when it is `pipeline`, else `pipeline` on PATH"},
    {"merge", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "merge the finished slides' manifests into out_dir/manifest.jsonl at the end (workers are run with false)"},
    {"job_index", PS_TYPE_INT, "-1", -1, 1e6, NULL,
     "this job's index in an array of job_count; -1: SLURM_ARRAY_TASK_ID or 0"},
    {"job_count", PS_TYPE_INT, "0", 0, 1e6, NULL, "jobs sharing the slides; 0: SLURM_ARRAY_TASK_COUNT or 1"},
    {"merge_only", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL, "only merge the finished slides' manifests"},
    {NULL},
};

typedef struct {
  pp_config cfg;
  GPtrArray *jobs; /* pp_slide_job*, all slides */
  int workers, threads;
  char *worker_command;
  int64_t job_index, job_count;
  gboolean merge_only, merge;
} stage;

static void job_free(pp_slide_job *j) {
  g_free(j->path);
  g_free(j->annotations);
  g_free(j->stem);
  g_free(j);
}

static void stage_destroy(void *self) {
  stage *st = self;
  if (!st) return;
  g_free(st->cfg.out_dir);
  g_free(st->cfg.target);
  g_free(st->cfg.tissue);
  g_free(st->cfg.organ);
  g_strfreev(st->cfg.exclude_groups);
  g_free(st->worker_command);
  if (st->jobs) g_ptr_array_unref(st->jobs);
  g_free(st);
}

/* The slide's file name without its extension. */
static char *stem_of(const char *path) {
  char *base = g_path_get_basename(path);
  char *dot = strrchr(base, '.');
  if (dot && dot != base) *dot = '\0';
  return base;
}

static void add_job(stage *st, const char *path, const char *annotations, const char *annotation_dir) {
  pp_slide_job *j = g_new0(pp_slide_job, 1);
  j->path = g_strdup(path);
  j->stem = stem_of(path);
  j->annotations = annotations && *annotations ? g_strdup(annotations) : NULL;
  static const char *const exts[] = {".geojson", ".json", ".xml"};
  for (size_t e = 0; !j->annotations && annotation_dir && *annotation_dir && e < G_N_ELEMENTS(exts); e++) {
    g_autofree char *name = g_strconcat(j->stem, exts[e], NULL);
    char *p = g_build_filename(annotation_dir, name, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_REGULAR))
      j->annotations = p;
    else
      g_free(p);
  }
  g_ptr_array_add(st->jobs, j);
}

static gboolean read_slide_list(stage *st, const char *list, const char *annotation_dir, GError **error) {
  g_autofree char *text = NULL;
  if (!g_file_get_contents(list, &text, NULL, error)) return FALSE;
  g_autofree char *base = g_path_get_dirname(list);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (size_t i = 0; lines[i]; i++) {
    char *line = g_strstrip(lines[i]);
    if (!*line || *line == '#') continue;
    g_auto(GStrv) f = g_strsplit(line, "\t", 2);
    g_autofree char *path = g_path_is_absolute(f[0]) ? g_strdup(f[0]) : g_build_filename(base, f[0], NULL);
    g_autofree char *ann = NULL;
    if (f[1] && *g_strstrip(f[1]))
      ann = g_path_is_absolute(f[1]) ? g_strdup(f[1]) : g_build_filename(base, f[1], NULL);
    add_job(st, path, ann, annotation_dir);
  }
  return TRUE;
}

static int64_t env_int(const char *name, int64_t fallback) {
  const char *v = g_getenv(name);
  char *end = NULL;
  if (!v || !*v) return fallback;
  int64_t x = g_ascii_strtoll(v, &end, 10);
  return end && *end == '\0' ? x : fallback;
}

static void *stage_create(const ps_config *c, ps_context *ctx, GError **error) {
  if (!ps_png_init(error) || !ps_slide_init_vips(error)) return NULL;
  stage *st = g_new0(stage, 1);
  pp_config *cfg = &st->cfg;
  st->jobs = g_ptr_array_new_with_free_func((GDestroyNotify)job_free);
  cfg->out_dir = g_strdup(ps_config_string(c, "out_dir"));
  cfg->target = g_strdup(ps_config_string(c, "target"));
  cfg->tissue = g_strdup(ps_config_string(c, "tissue"));
  cfg->organ = g_strdup(ps_config_string(c, "organ"));
  cfg->tissue_threshold = ps_config_float(c, "tissue_threshold");
  cfg->magnification = (int)ps_config_int(c, "magnification");
  cfg->mpp = ps_config_float(c, "mpp");
  cfg->mpp_tolerance = ps_config_float(c, "mpp_tolerance");
  cfg->tile_size = (int)ps_config_int(c, "tile_size");
  cfg->overlap = (int)ps_config_int(c, "overlap");
  cfg->thumb_factor = (int)ps_config_int(c, "thumb_factor");
  cfg->min_component = (int)ps_config_int(c, "min_component");
  cfg->min_tissue = ps_config_float(c, "min_tissue");
  cfg->keep_empty = ps_config_bool(c, "keep_empty");
  cfg->seed = (uint64_t)ps_config_int(c, "seed");
  cfg->png_compression = (int)ps_config_int(c, "png_compression");
  cfg->level_cache_mb = ps_config_int(c, "level_cache_mb");
  ps_slide_reader_from_name(ps_config_string(c, "slide_reader"), &cfg->slide_reader); /* an enum key: valid */
  if (!pp_png_filter_from_name(ps_config_string(c, "png_filter"), &cfg->png_filter)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "png_filter: unknown filter '%s'", ps_config_string(c, "png_filter"));
    goto fail;
  }
  size_t ne = 0;
  const char *const *ex = ps_config_string_list(c, "exclude_groups", &ne);
  cfg->exclude_groups = g_new0(char *, ne + 1);
  for (size_t i = 0; i < ne; i++) cfg->exclude_groups[i] = g_strdup(ex[i]);
  st->workers = (int)ps_config_int(c, "workers");
  st->merge_only = ps_config_bool(c, "merge_only");
  st->merge = ps_config_bool(c, "merge");
  st->threads = (int)ps_config_int(c, "threads");
  st->worker_command = g_strdup(ps_config_string(c, "worker_command"));
  if (cfg->magnification != 5 && cfg->magnification != 10 && cfg->magnification != 20 && cfg->magnification != 40) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "magnification: %d is not one of 5, 10, 20, 40", cfg->magnification);
    goto fail;
  }
  if (cfg->overlap >= cfg->tile_size) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "overlap: %d must be smaller than tile_size %d", cfg->overlap,
                cfg->tile_size);
    goto fail;
  }

  const char *adir = ps_config_string(c, "annotation_dir");
  size_t ns = 0, na = 0;
  const char *const *slides = ps_config_string_list(c, "slides", &ns);
  const char *const *anns = ps_config_string_list(c, "annotations", &na);
  if (na && na != ns) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "annotations: %zu entries for %zu slides (use \"\" for none)", na,
                ns);
    goto fail;
  }
  for (size_t i = 0; i < ns; i++) add_job(st, slides[i], na ? anns[i] : NULL, adir);
  const char *list = ps_config_string(c, "slide_list");
  if (*list && !read_slide_list(st, list, adir, error)) {
    g_prefix_error(error, "slide_list: ");
    goto fail;
  }
  if (st->jobs->len == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slides: no slide given (slides or slide_list)");
    goto fail;
  }
  /* Each slide's outputs live under its stem: two slides may not share one. */
  g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
  for (guint i = 0; i < st->jobs->len; i++) {
    pp_slide_job *j = g_ptr_array_index(st->jobs, i);
    const char *other = g_hash_table_lookup(seen, j->stem);
    if (other) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slides: %s and %s have the same name '%s'", other, j->path,
                  j->stem);
      goto fail;
    }
    g_hash_table_insert(seen, j->stem, j->path);
  }

  st->job_count = ps_config_int(c, "job_count");
  st->job_index = ps_config_int(c, "job_index");
  if (st->job_count <= 0) st->job_count = MAX(env_int("SLURM_ARRAY_TASK_COUNT", 1), 1);
  if (st->job_index < 0)
    st->job_index = env_int("SLURM_ARRAY_TASK_ID", 0) - env_int("SLURM_ARRAY_TASK_MIN", 0);
  if (st->job_index < 0 || st->job_index >= st->job_count) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "job_index: %" G_GINT64_FORMAT " is not in 0..%" G_GINT64_FORMAT,
                st->job_index, st->job_count - 1);
    goto fail;
  }
  return st;
fail:
  stage_destroy(st);
  return NULL;
}

/* One slide in this process, logged; counted in res. */
static void run_here(stage *st, const pp_slide_job *job, int threads, pp_shared *sh, pp_pool_result *res) {
  pp_job_result r;
  GError *e = NULL;
  if (pp_slide_job_run(&st->cfg, job, threads, sh, &r, &e)) {
    res->ok++;
    if (r.tiles || r.written)
      pp_log(sh, "slide %s: %" G_GINT64_FORMAT " tiles (%" G_GINT64_FORMAT " written, %" G_GINT64_FORMAT
                 " with an empty mask skipped)",
             job->path, r.tiles, r.written, r.skipped_empty);
    else
      pp_log(sh, "slide %s: already done", job->path);
    return;
  }
  res->skipped++;
  /* Slide errors name the slide already; others (annotation files) get it here. */
  if (strstr(e->message, job->path))
    pp_log(sh, "skipped: %s", e->message);
  else
    pp_log(sh, "skipped slide %s: %s", job->path, e->message);
  if (!res->first_skip) res->first_skip = g_strdup(e->message);
  g_error_free(e);
}

/* The final merge of the finished slides' manifests (one process). */
static gboolean merge(stage *st, ps_run *run, GError **error) {
  pp_config *cfg = &st->cfg;
  guint pending = 0;
  for (guint i = 0; i < st->jobs->len; i++)
    pending += !pp_slide_done(cfg, ((pp_slide_job *)g_ptr_array_index(st->jobs, i))->stem);
  /* A single job has tried every slide: it merges what is done. In an array,
   * the job that finds every slide done merges (or a later merge_only run). */
  if (pending && !st->merge_only && st->job_count > 1) {
    ps_run_log(run, "merge: %u slide(s) not done yet (other jobs, or skipped); rerun with merge_only: true", pending);
    return TRUE;
  }
  int64_t rows = 0;
  gboolean rewritten = FALSE;
  if (!pp_merge(cfg, st->jobs, &rows, &rewritten, error)) return FALSE;
  ps_run_log(run, "merge: %s/manifest.jsonl, %" G_GINT64_FORMAT " rows from %u slide(s)%s", cfg->out_dir, rows,
             st->jobs->len - pending, rewritten ? "" : " (unchanged)");
  if (rows == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "merge: no finished slide in %s", cfg->out_dir);
    return FALSE;
  }
  return TRUE;
}

/* This process's slides: in turn here, or one worker process each. `local`:
 * processes of this run sharing the machine (MPI ranks on the node). */
static gboolean process_slides(stage *st, ps_run *run, GPtrArray *mine, int local, pp_shared *sh,
                               pp_pool_result *res, GError **error) {
  const ps_pipeline *p = ps_run_pipeline(run);
  const int cores = p && p->threads > 0 ? p->threads : MAX(1, (int)g_get_num_processors() / MAX(local, 1));
  int workers = MAX(1, MIN(st->workers, (int)mine->len));
  const int threads = st->threads > 0 ? st->threads : MAX(1, cores / workers);
  if (workers == 1) {
    pp_log(sh, "%u slide(s) in this process, %d tile thread(s)", mine->len, threads);
    for (guint i = 0; i < mine->len && !ps_run_cancelled(run); i++)
      run_here(st, g_ptr_array_index(mine, i), threads, sh, res);
    return TRUE;
  }
  /* Finished slides are checked here (settings, no process); the rest go to workers. */
  g_autoptr(GPtrArray) pending = g_ptr_array_new();
  for (guint i = 0; i < mine->len; i++) {
    pp_slide_job *job = g_ptr_array_index(mine, i);
    if (pp_slide_done(&st->cfg, job->stem))
      run_here(st, job, 1, sh, res);
    else
      g_ptr_array_add(pending, job);
  }
  if (pending->len == 0) return TRUE;
  g_autofree char *exe = pp_worker_executable(st->worker_command, error);
  if (!exe) return FALSE;
  pp_worker_spec spec = {run, exe, st->cfg.out_dir, MIN(workers, (int)pending->len), threads};
  ps_run_log(run, "%u slide(s) to do: %d worker process(es) x %d tile thread(s) (%s)", pending->len, spec.workers,
             threads, exe);
  return pp_run_workers(&spec, pending, sh, res, error);
}

static gboolean stage_run(void *self, ps_run *run, GError **error) {
  stage *st = self;
  pp_config *cfg = &st->cfg;
  if (g_mkdir_with_parents(cfg->out_dir, 0755) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "out_dir: cannot create %s", cfg->out_dir);
    return FALSE;
  }
  /* Under mpirun every rank runs this stage (PS_STAGE_DATA_PARALLEL) and
   * takes its share of the slides; within a Slurm array task's share, too.
   * Slide i belongs to share i mod shares. */
  ps_comm *comm = ps_run_comm(run);
  const int rank = comm ? ps_comm_rank(comm) : 0, ranks = comm ? ps_comm_size(comm) : 1;
  const int64_t share = st->job_index * ranks + rank, shares = st->job_count * ranks;
  pp_shared sh = {run, {0}, rank, 0, 0};
  g_mutex_init(&sh.lock);
  pp_pool_result res = {0, 0, NULL};
  gboolean ok = TRUE;
  int64_t n_mine = 0;
  if (!st->merge_only) {
    g_autoptr(GPtrArray) mine = g_ptr_array_new();
    for (guint i = 0; i < st->jobs->len; i++)
      if ((int64_t)i % shares == share) g_ptr_array_add(mine, g_ptr_array_index(st->jobs, i));
    n_mine = mine->len;
    if (ranks > 1 && st->workers > 1 && rank == 0)
      ps_run_log(run, "workers: %d ignored under mpirun: each of the %d ranks is one worker", st->workers, ranks);
    if (ranks > 1) st->workers = 1;
    const int local = ranks > 1 ? (int)MAX(env_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_int("MPI_LOCALNRANKS", 1)), 1) : 1;
    pp_log(&sh, "job %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT ": %u of %u slides", share, shares, mine->len,
           st->jobs->len);
    ok = process_slides(st, run, mine, local, &sh, &res, error);
  }
  g_mutex_clear(&sh.lock);
  /* Every rank learns the totals (and whether any rank failed or was
   * stopped), so that all take the same branch below. */
  double totals[5] = {res.ok, res.skipped, (double)n_mine, !ok, ps_run_cancelled(run)};
  if (ranks > 1) {
    GError *local_error = NULL;
    if (!ps_comm_allreduce_f64(comm, totals, G_N_ELEMENTS(totals), ok ? error : &local_error)) ok = FALSE;
    g_clear_error(&local_error);
    if (ok && totals[3] > 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "preprocess: another rank failed (see its output)");
      ok = FALSE;
    }
  }
  if (!st->merge_only)
    ps_run_log(run, "%.0f slide(s) done, %.0f skipped%s", totals[0], totals[1], ranks > 1 ? " (all ranks)" : "");
  if (ok && !st->merge_only && totals[4] > 0) {
    g_free(res.first_skip);
    return TRUE; /* finished tiles stay; rerunning resumes */
  }
  if (ok && !st->merge_only && totals[2] > 0 && totals[0] == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "no usable slide: all %.0f skipped (reasons in the log; first: %s)",
                totals[2], res.first_skip ? res.first_skip : "on another rank");
    ok = FALSE;
  }
  g_free(res.first_skip);
  if (!ok) return FALSE;
  if (!st->merge && !st->merge_only) return TRUE;
  /* One process merges: rank 0, after every rank has finished its slides. */
  if (ranks > 1 && !ps_comm_barrier(comm, error)) return FALSE;
  int64_t failed = rank == 0 ? !merge(st, run, error) : 0;
  if (ranks > 1) {
    GError *local_error = NULL;
    if (!ps_comm_broadcast(comm, &failed, sizeof failed, 0, rank == 0 && !failed ? error : &local_error)) failed = 1;
    if (rank != 0 && failed) {
      if (local_error)
        g_propagate_error(error, local_error), local_error = NULL;
      else
        g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "preprocess: the merge failed on rank 0");
    }
    g_clear_error(&local_error);
  }
  return !failed;
}

static const ps_port_desc no_ports[] = {{NULL}};
/* Every rank runs the stage under mpirun; it shares the slides itself. */
static const ps_stage_iface stage_iface = {sizeof(ps_stage_iface), stage_run, PS_STAGE_DATA_PARALLEL};
static const void *capability(const char *name) { return strcmp(name, "stage") == 0 ? &stage_iface : NULL; }
static const ps_component_vtable vtable = {
    sizeof(ps_component_vtable), stage_create, stage_destroy, NULL, NULL, NULL,
};
static const ps_component_desc desc = {
    sizeof(ps_component_desc), PS_KIND_STAGE, "stage.preprocess_slides",
    "Cuts whole-slide images into tissue tiles at 5/10/20/40x with masks from ASAP XML or GeoJSON polygons, "
    "template queries and reasoning chains: one resumable job per slide (tile threads; worker processes, a "
    "Slurm array or MPI ranks for many slides), PNGs and per-slide manifests merged into one manifest by one "
    "process, with splits grouped by slide.",
    keys, no_ports, no_ports, &vtable, capability,
};
static const ps_component_desc *const components[] = {&desc, NULL};
static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "preprocess",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Whole-slide preprocessing (tiles, masks, reasoning chains, manifests) through libvips.",
    .components = components,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
