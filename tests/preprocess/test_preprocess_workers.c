/* test_preprocess_workers.c — slides at scale: `pipeline run
 * pipelines/preprocess_slides.yaml` (the real executable) over a slide list
 * of five copies of the CMU-1 small region with `workers: 2`:
 *   - two worker processes run at once (both start before either ends);
 *   - every slide has exactly its tissue tiles (the grid tiles whose Otsu
 *     tissue fraction is >= 0.5, recomputed here), each once, and nothing
 *     else in tiles/ or masks/; the merged manifest has every tile exactly
 *     once;
 *   - a rerun starts no worker and changes no file;
 *   - four slides made half-done (done marker, manifest and half the tiles
 *     removed), a run killed (SIGKILL, whole process group) while it
 *     resumes them, then a rerun: every slide complete, every PNG readable,
 *     and the merged manifest byte-identical to the first run's.
 * With `--mpirun MPIRUN` (test_preprocess_mpi) the same under `mpirun -np 2`:
 * each rank takes its share of the slides (both ranks process slides), rank
 * 0 merges after both are done; the kill is left out (mpirun's process tree
 * is its own), the half-done slides are resumed by the rerun. */
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "png_io.h"
#include "ps_test.h"
#include "slide.h"

#define N_SLIDES 5

static char *pipeline_exe;
static const char *mpirun; /* NULL: worker processes; else the MPI launcher */

static int cmp_names(gconstpointer a, gconstpointer b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Grid tiles (T px, level 0) with tissue fraction >= 0.5 of the 16 px Otsu
 * mask: their file names "x_y.png", sorted. */
static GPtrArray *expected_names(const char *slide_path, int T) {
  GError *error = NULL;
  GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(ps_slide) s = ps_slide_open(slide_path, &error);
  PS_CHECK_OK(s != NULL, error);
  if (!s) return out;
  uint8_t *mask = NULL;
  int64_t mw = 0, mh = 0, W = 0, H = 0;
  double thr = 0;
  PS_CHECK_OK(ps_slide_tissue_mask(s, 0, 16, &mask, &mw, &mh, &thr, &error), error);
  ps_slide_level_size(s, 0, &W, &H);
  for (int64_t y = 0; mask && y + T <= H; y += T)
    for (int64_t x = 0; x + T <= W; x += T) {
      int on = 0, all = 0;
      for (int64_t cy = y / 16; cy < MIN((y + T + 15) / 16, mh); cy++)
        for (int64_t cx = x / 16; cx < MIN((x + T + 15) / 16, mw); cx++)
          on += mask[cy * mw + cx], all++;
      if (all && 2 * on >= all)
        g_ptr_array_add(out,
                        g_strdup_printf("%" G_GINT64_FORMAT "_%" G_GINT64_FORMAT ".png", x, y));
    }
  g_free(mask);
  g_ptr_array_sort(out, cmp_names);
  return out;
}

/* Every file name in dir, sorted. */
static GPtrArray *list_dir(const char *dir) {
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  for (const char *name; d && (name = g_dir_read_name(d));) g_ptr_array_add(names, g_strdup(name));
  g_ptr_array_sort(names, cmp_names);
  return names;
}

/* dir holds exactly `want` (names), nothing more, nothing twice. */
static void check_exactly(const char *dir, GPtrArray *want) {
  g_autoptr(GPtrArray) have = list_dir(dir);
  gboolean same = have->len == want->len;
  for (guint i = 0; same && i < have->len; i++)
    same = strcmp(g_ptr_array_index(have, i), g_ptr_array_index(want, i)) == 0;
  PS_CHECK_MSG(same, "%s: %u files, want exactly the %u tissue tiles (first: %s)", dir, have->len,
               want->len, have->len ? (const char *)g_ptr_array_index(have, 0) : "-");
}

static void scan_mtimes(const char *dir, uint64_t *sum, int *count) {
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  for (const char *name; d && (name = g_dir_read_name(d));) {
    g_autofree char *p = g_build_filename(dir, name, NULL);
    struct stat st;
    if (stat(p, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      scan_mtimes(p, sum, count);
    } else {
      *sum += (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec; /* wraps */
      (*count)++;
    }
  }
}

static void own_group(gpointer data) {
  (void)data;
  setpgid(0, 0);
}

/* argv for `pipeline run preprocess_slides.yaml` over the list into out. */
static GPtrArray *pipeline_argv(const char *tmp, const char *list, const char *out) {
  GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
  if (mpirun) {
    const char *pre[] = {mpirun, "-np", "2", "--oversubscribe"};
    for (size_t i = 0; i < G_N_ELEMENTS(pre); i++) g_ptr_array_add(argv, g_strdup(pre[i]));
  }
  g_ptr_array_add(argv, g_strdup(pipeline_exe));
  g_ptr_array_add(argv, g_strdup("run"));
  g_ptr_array_add(argv, ps_test_source_path("pipelines/preprocess_slides.yaml"));
  const char *sets[] = {"stages.preprocess.slide_list=%s", "stages.preprocess.out_dir=%s",
                        "run_dir=%s/runs"};
  const char *vals[] = {list, out, tmp};
  for (int i = 0; i < 3; i++) {
    g_ptr_array_add(argv, g_strdup("--set"));
    g_ptr_array_add(argv, g_strdup_printf(sets[i], vals[i]));
  }
  g_ptr_array_add(argv, g_strdup("--set"));
  g_ptr_array_add(argv, g_strdup("stages.preprocess.workers=2"));
  g_ptr_array_add(argv, g_strdup("--set"));
  g_ptr_array_add(argv, g_strdup("stages.preprocess.threads=1"));
  g_ptr_array_add(argv, g_strdup("--quiet"));
  g_ptr_array_add(argv, NULL);
  return argv;
}

/* Runs the pipeline to the end; returns its exit status (0: success), the
 * run's log.txt in *log and the command's stderr (other ranks) in *err. */
static int run_pipeline(const char *tmp, const char *list, const char *out, char **log,
                        char **err) {
  g_autoptr(GPtrArray) argv = pipeline_argv(tmp, list, out);
  g_autofree char *so = NULL, *se = NULL;
  int status = -1;
  GError *error = NULL;
  PS_CHECK_OK(g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &so, &se,
                           &status, &error),
              error);
  if (status != 0) g_printerr("pipeline failed:\n%s%s", so ? so : "", se ? se : "");
  /* "run finished: DIR" names the run directory. */
  const char *dir = so ? strstr(so, "run finished: ") : NULL;
  if (log && dir) {
    g_autofree char *d = g_strndup(dir + 14, strcspn(dir + 14, "\n"));
    g_autofree char *path = g_build_filename(d, "log.txt", NULL);
    g_file_get_contents(path, log, NULL, NULL);
  }
  if (err) *err = g_steal_pointer(&se);
  return status;
}

static int count_substr(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* Every manifest row's image exactly once, and all of `want` per slide. */
static void check_manifest(const char *out, GPtrArray *want) {
  g_autofree char *path = g_build_filename(out, "manifest.jsonl", NULL), *text = NULL;
  PS_CHECK_MSG(g_file_get_contents(path, &text, NULL, NULL), "no merged manifest %s", path);
  if (!text) return;
  g_auto(GStrv) lines = g_strsplit(g_strstrip(text), "\n", -1);
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  int dup = 0;
  for (size_t i = 0; lines[i]; i++) {
    const char *ip = strstr(lines[i], "\"image\":\"");
    PS_CHECK(ip != NULL);
    if (!ip) continue;
    char *image = g_strndup(ip + 9, strcspn(ip + 9, "\""));
    dup += g_hash_table_contains(seen, image);
    g_hash_table_add(seen, image);
  }
  PS_CHECK_MSG(dup == 0 && g_strv_length(lines) == N_SLIDES * want->len,
               "manifest: %u rows (%d repeated), want %u", g_strv_length(lines), dup,
               N_SLIDES * want->len);
  int missing = 0;
  for (int s = 0; s < N_SLIDES; s++)
    for (guint k = 0; k < want->len; k++) {
      g_autofree char *image =
          g_strdup_printf("s%d/tiles/%s", s, (const char *)g_ptr_array_index(want, k));
      missing += !g_hash_table_contains(seen, image);
    }
  PS_CHECK_MSG(missing == 0, "manifest: %d tiles missing", missing);
}

static void check_slides(const char *out, GPtrArray *want) {
  for (int s = 0; s < N_SLIDES; s++) {
    g_autofree char *tiles = g_strdup_printf("%s/s%d/tiles", out, s),
                    *masks = g_strdup_printf("%s/s%d/masks", out, s);
    g_autofree char *done = g_strdup_printf("%s/s%d/done", out, s);
    check_exactly(tiles, want);
    check_exactly(masks, want);
    PS_CHECK_MSG(g_file_test(done, G_FILE_TEST_IS_REGULAR), "%s missing", done);
  }
}

int main(int argc, char **argv) {
  GError *error = NULL;
  PS_CHECK_OK(ps_png_init(&error), error);
  const char *build = g_getenv("PATHSEG_BUILD_DIR");
  pipeline_exe = g_build_filename(build ? build : ".", "tools", "pipeline", NULL);
  if (argc >= 3 && strcmp(argv[1], "--mpirun") == 0) mpirun = argv[2];
  PS_CHECK_MSG(g_file_test(pipeline_exe, G_FILE_TEST_IS_EXECUTABLE), "no %s", pipeline_exe);
  g_autofree char *src = ps_test_source_path("tests/data/CMU-1-Small-Region.svs");
  g_autofree char *tmp = g_dir_make_tmp("ps-preprocess-workers-XXXXXX", NULL);
  g_autofree char *out = g_build_filename(tmp, "out", NULL);
  g_autofree char *list = g_build_filename(tmp, "slides.txt", NULL);
  GString *lines = g_string_new("# five copies of one slide, relative to this list\n");
  for (int i = 0; i < N_SLIDES; i++) {
    g_autofree char *link = g_strdup_printf("%s/s%d.svs", tmp, i);
    PS_CHECK(symlink(src, link) == 0);
    g_string_append_printf(lines, "s%d.svs\n", i);
  }
  PS_CHECK(g_file_set_contents(list, lines->str, -1, NULL));
  g_string_free(lines, TRUE);
  g_autoptr(GPtrArray) want = expected_names(src, 256);
  PS_CHECK_MSG(want->len > 5, "%u tissue tiles", want->len);

  /* 1. Two workers (or two ranks) over five slides. */
  g_autofree char *log = NULL, *err = NULL;
  PS_CHECK(run_pipeline(tmp, list, out, &log, &err) == 0);
  if (!mpirun) {
    PS_CHECK_MSG(log && strstr(log, "2 worker process(es)"), "log:\n%s", log);
    g_autofree char *done_needle = g_strdup_printf(": done, tiles: %u (", want->len);
    PS_CHECK_MSG(count_substr(log, "worker process ") == N_SLIDES &&
                     count_substr(log, done_needle) == N_SLIDES,
                 "one worker per slide expected:\n%s", log);
    /* Both first workers start before either finishes: they run at once. */
    const char *second = log ? strstr(strstr(log, "worker process ") + 1, "worker process ") : NULL;
    const char *first_done = log ? strstr(log, ": done, ") : NULL;
    PS_CHECK_MSG(second && first_done && second < first_done, "workers did not overlap:\n%s", log);
  } else {
    /* Rank 0 (the run log) takes slides 0, 2, 4; rank 1 (stderr) 1 and 3. */
    PS_CHECK_MSG(log && strstr(log, "on every rank") && count_substr(log, " tiles (") == 3 &&
                     strstr(log, "5 slide(s) done, 0 skipped (all ranks)"),
                 "rank 0 log:\n%s", log);
    PS_CHECK_MSG(err && count_substr(err, "rank 1: slide ") >= 2 &&
                     strstr(err, "s1.svs: 27 tiles") && strstr(err, "s3.svs: 27 tiles"),
                 "rank 1 output:\n%s", err);
  }
  check_slides(out, want);
  check_manifest(out, want);
  g_autofree char *manifest_path = g_build_filename(out, "manifest.jsonl", NULL), *manifest1 = NULL;
  g_file_get_contents(manifest_path, &manifest1, NULL, NULL);

  /* 2. A rerun skips everything: no worker, no file touched. */
  uint64_t sum1 = 0, sum2 = 0;
  int n1 = 0, n2 = 0;
  scan_mtimes(out, &sum1, &n1);
  g_usleep(20000);
  g_autofree char *log2 = NULL, *err2 = NULL;
  PS_CHECK(run_pipeline(tmp, list, out, &log2, &err2) == 0);
  scan_mtimes(out, &sum2, &n2);
  PS_CHECK_MSG(n1 == n2 && sum1 == sum2, "rerun changed files: %d -> %d", n1, n2);
  PS_CHECK_MSG(log2 && count_substr(log2, "worker process ") == 0 &&
                   count_substr(log2, "already done") + count_substr(err2, "already done") ==
                       N_SLIDES,
               "rerun log:\n%s", log2);

  /* 3. Half-done slides, a run killed while resuming them, a rerun. */
  for (int s = 1; s < N_SLIDES; s++) {
    g_autofree char *dir = g_strdup_printf("%s/s%d", out, s);
    g_autofree char *done = g_build_filename(dir, "done", NULL),
                    *m = g_build_filename(dir, "manifest.jsonl", NULL);
    PS_CHECK(g_unlink(done) == 0 && g_unlink(m) == 0);
    for (guint k = 0; k < want->len; k += 2) {
      g_autofree char *t =
          g_strdup_printf("%s/tiles/%s", dir, (const char *)g_ptr_array_index(want, k));
      g_autofree char *mk =
          g_strdup_printf("%s/masks/%s", dir, (const char *)g_ptr_array_index(want, k));
      PS_CHECK(g_unlink(t) == 0 && g_unlink(mk) == 0);
    }
  }
  if (!mpirun) {
    g_autoptr(GPtrArray) argv = pipeline_argv(tmp, list, out);
    GPid pid = 0;
    PS_CHECK_OK(g_spawn_async(NULL, (char **)argv->pdata, NULL,
                              G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL, own_group,
                              NULL, &pid, &error),
                error);
    /* Kill the whole group (the parent and its workers) once a tile reappears. */
    g_autofree char *probe =
        g_strdup_printf("%s/s1/tiles/%s", out, (const char *)g_ptr_array_index(want, 0));
    g_autofree char *probe2 =
        g_strdup_printf("%s/s2/tiles/%s", out, (const char *)g_ptr_array_index(want, 0));
    for (int i = 0; i < 2000 && !g_file_test(probe, G_FILE_TEST_EXISTS) &&
                    !g_file_test(probe2, G_FILE_TEST_EXISTS);
         i++)
      g_usleep(5000);
    PS_CHECK(kill(-pid, SIGKILL) == 0);
    int status = 0;
    PS_CHECK(waitpid(pid, &status, 0) == pid);
    g_spawn_close_pid(pid);
  }
  g_autofree char *log3 = NULL;
  PS_CHECK(run_pipeline(tmp, list, out, &log3, NULL) == 0);
  check_slides(out, want);
  check_manifest(out, want);
  g_autofree char *manifest3 = NULL;
  g_file_get_contents(manifest_path, &manifest3, NULL, NULL);
  PS_CHECK_MSG(manifest1 && manifest3 && strcmp(manifest1, manifest3) == 0,
               "the resumed run's merged manifest differs from the first run's");
  /* Every tile written by the killed or resumed runs is a whole PNG. */
  int broken = 0;
  for (int s = 1; s < N_SLIDES; s++)
    for (guint k = 0; k < want->len; k++) {
      g_autofree char *t =
          g_strdup_printf("%s/s%d/tiles/%s", out, s, (const char *)g_ptr_array_index(want, k));
      int w = 0, h = 0;
      g_autofree uint8_t *px = ps_png_read(t, 3, &w, &h, NULL);
      broken += !px || w != 256 || h != 256;
    }
  PS_CHECK_MSG(broken == 0, "%d broken tiles after the kill", broken);
  PS_CHECK_MSG(log3 && count_substr(log3, "worker process ") <= N_SLIDES - 1, "resume log:\n%s",
               log3);
  if (!mpirun)
    g_print("after the kill, the rerun resumed %d of the %d half-done slides\n",
            count_substr(log3, "worker process "), N_SLIDES - 1);

  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
  if (system(cmd) != 0) g_printerr("cannot remove %s\n", tmp);
  g_free(pipeline_exe);
  return ps_test_finish();
}
