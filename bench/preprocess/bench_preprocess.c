/* bench_preprocess.c — tiles per second of stage.preprocess_slides against
 * its peer, openslide-python + Pillow (peer_openslide.py), doing the same
 * job on the same slides in the same run: tissue detection (block-mean
 * thumbnail, saturation, Otsu), grid tiles with enough tissue read at level
 * 0 and saved as PNG at the same deflate level with adaptive row filters on
 * both sides. The stage does more per tile (a mask PNG, descriptors, a
 * reasoning chain, manifests).
 *
 * Both sides run as child processes (`pipeline run` and python3), timed
 * wall-clock from start to exit, interpreter and plugin loading included;
 * their CPU time (user + sys of the child and its children) is reported as
 * well, since it moves less than wall time on a loaded machine. Cases:
 *   pathseg_1          one process, one tile thread
 *   pathseg_1_openslide  the same with slide_reader: openslide (every pixel
 *                      through OpenSlide, as before tiffload was used)
 *   peer_1             one Python process
 *   pathseg_threads_N  one process, N tile threads (OpenMP)
 *   pathseg_workers_N  N worker processes (workers: N), one thread each
 *   peer_pool_N        a multiprocessing pool of N processes, a slide each
 * Each case's output is removed and the file system synced before the next
 * (untimed). Contestants alternate within each repetition; medians are reported as
 *   RESULT preprocess <case> tiles=N seconds=S tiles_per_s=R cpu_s=C tile_kb=K
 * and the speed-ups at equal cores at the end.
 *   bench_preprocess [--slide S] [--copies 8] [--reps 3] [--tile 256] [--overlap 128] [--workers 2]
 *                    [--level 6] [--python /usr/bin/python3] [--peer
 * bench/preprocess/peer_openslide.py]
 *                    [--pipeline BUILD/tools/pipeline] */
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../bench_common.h"

static int64_t tile_bytes;

/* Tiles under out/<slide>/tiles; their total size goes to tile_bytes. */
static int count_tiles(const char *out) {
  int n = 0;
  tile_bytes = 0;
  g_autoptr(GDir) d = g_dir_open(out, 0, NULL);
  for (const char *slide; d && (slide = g_dir_read_name(d));) {
    g_autofree char *tiles = g_build_filename(out, slide, "tiles", NULL);
    g_autoptr(GDir) t = g_dir_open(tiles, 0, NULL);
    for (const char *name; t && (name = g_dir_read_name(t));) {
      if (!g_str_has_suffix(name, ".png")) continue;
      g_autofree char *path = g_build_filename(tiles, name, NULL);
      GStatBuf st;
      if (g_stat(path, &st) == 0) tile_bytes += st.st_size;
      n++;
    }
  }
  return n;
}

/* Writes back what removing the last case's output left dirty. Without it
 * ext4 (without a journal, as here) skips every recently deleted inode
 * whose table block is still dirty when the next case creates files
 * (recently_deleted() in the kernel's profile): a cost that grows with the
 * files the previous contestant wrote and lands on whoever runs next. */
static void settle(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || syncfs(fd) != 0) sync();
  if (fd >= 0) close(fd);
}

static double children_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  return (double)ru.ru_utime.tv_sec + 1e-6 * ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
         1e-6 * ru.ru_stime.tv_usec;
}

/* Runs argv to completion; wall seconds, *cpu: its CPU seconds. */
static double run_child(GPtrArray *argv, double *cpu) {
  g_ptr_array_add(argv, NULL);
  g_autofree char *out = NULL, *err = NULL;
  int status = 0;
  GError *error = NULL;
  double c0 = children_cpu(), t0 = bench_now();
  gboolean ok = g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                             &err, &status, &error);
  double dt = bench_now() - t0;
  *cpu = children_cpu() - c0;
  if (!ok || !g_spawn_check_wait_status(status, &error)) {
    fprintf(stderr, "%s failed: %s\n%s%s\n", (char *)argv->pdata[0], error ? error->message : "?",
            out ? out : "", err ? err : "");
    exit(1);
  }
  return dt;
}

typedef struct {
  const char *slide, *python, *peer, *pipeline;
  int copies, reps, tile, overlap, workers, level;
} options;

static double run_stage(const options *o, const char *tmp, const char *list, const char *out,
                        int workers, int threads, const char *reader, double *cpu) {
  GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(argv, g_strdup(o->pipeline));
  g_ptr_array_add(argv, g_strdup("run"));
  g_ptr_array_add(argv,
                  g_build_filename(PS_SOURCE_DIR, "pipelines", "preprocess_slides.yaml", NULL));
  g_ptr_array_add(argv, g_strdup("--quiet"));
  char *sets[] = {
      g_strdup_printf("stages.preprocess.slide_list=%s", list),
      g_strdup_printf("stages.preprocess.out_dir=%s", out),
      g_strdup_printf("stages.preprocess.tile_size=%d", o->tile),
      g_strdup_printf("stages.preprocess.overlap=%d", o->overlap),
      g_strdup_printf("stages.preprocess.workers=%d", workers),
      g_strdup_printf("stages.preprocess.threads=%d", threads),
      g_strdup_printf("stages.preprocess.png_compression=%d", o->level),
      g_strdup("stages.preprocess.png_filter=adaptive"),
      g_strdup_printf("stages.preprocess.slide_reader=%s", reader),
      g_strdup_printf("run_dir=%s/runs", tmp),
  };
  for (size_t i = 0; i < G_N_ELEMENTS(sets); i++) {
    g_ptr_array_add(argv, g_strdup("--set"));
    g_ptr_array_add(argv, sets[i]);
  }
  double dt = run_child(argv, cpu);
  g_ptr_array_unref(argv);
  return dt;
}

static double run_peer(const options *o, char **paths, const char *out, int workers, double *cpu) {
  GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(argv, g_strdup(o->python));
  g_ptr_array_add(argv, g_strdup(o->peer));
  g_ptr_array_add(argv, g_strdup_printf("--out=%s", out));
  g_ptr_array_add(argv, g_strdup_printf("--tile=%d", o->tile));
  g_ptr_array_add(argv, g_strdup_printf("--overlap=%d", o->overlap));
  g_ptr_array_add(argv, g_strdup_printf("--workers=%d", workers));
  g_ptr_array_add(argv, g_strdup_printf("--level=%d", o->level));
  for (int i = 0; i < o->copies; i++) g_ptr_array_add(argv, g_strdup(paths[i]));
  double dt = run_child(argv, cpu);
  g_ptr_array_unref(argv);
  return dt;
}

int main(int argc, char **argv) {
  options o = {PS_SOURCE_DIR "/tests/data/CMU-1-Small-Region.svs",
               "/usr/bin/python3",
               PS_SOURCE_DIR "/bench/preprocess/peer_openslide.py",
               PS_BUILD_DIR "/tools/pipeline",
               8,
               3,
               256,
               128,
               2,
               6};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--slide"))
      o.slide = argv[i + 1];
    else if (!strcmp(argv[i], "--copies"))
      o.copies = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps"))
      o.reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--tile"))
      o.tile = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--overlap"))
      o.overlap = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--workers"))
      o.workers = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--level"))
      o.level = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--python"))
      o.python = argv[i + 1];
    else if (!strcmp(argv[i], "--peer"))
      o.peer = argv[i + 1];
    else if (!strcmp(argv[i], "--pipeline"))
      o.pipeline = argv[i + 1];
    else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (o.copies < 1 || o.reps < 1 || o.workers < 1) {
    fprintf(stderr, "--copies, --reps and --workers must be >= 1\n");
    return 2;
  }
  g_autofree char *tmp = g_dir_make_tmp("ps-bench-preprocess-XXXXXX", NULL);
  char **paths = g_new0(char *, o.copies + 1);
  GString *list = g_string_new("");
  for (int i = 0; i < o.copies; i++) {
    paths[i] = g_strdup_printf("%s/slide%02d.svs", tmp, i);
    if (symlink(o.slide, paths[i]) != 0) {
      fprintf(stderr, "cannot link %s\n", paths[i]);
      return 1;
    }
    g_string_append_printf(list, "%s\n", paths[i]);
  }
  g_autofree char *list_path = g_build_filename(tmp, "slides.txt", NULL);
  if (!g_file_set_contents(list_path, list->str, -1, NULL)) return 1;

  enum { STAGE_1, PEER_1, STAGE_T, STAGE_W, PEER_W, STAGE_1_OS, N_CASES };
  char *names[N_CASES] = {
      g_strdup("pathseg_1"), g_strdup("peer_1"), g_strdup_printf("pathseg_threads_%d", o.workers),
      g_strdup_printf("pathseg_workers_%d", o.workers), g_strdup_printf("peer_pool_%d", o.workers),
      g_strdup("pathseg_1_openslide")};
  double *t[N_CASES], *c[N_CASES];
  int tiles[N_CASES] = {0};
  int64_t bytes[N_CASES] = {0};
  for (int k = 0; k < N_CASES; k++) t[k] = g_new0(double, o.reps), c[k] = g_new0(double, o.reps);
  for (int r = 0; r < o.reps; r++)
    for (int k = 0; k < N_CASES; k++) {
      g_autofree char *out = g_strdup_printf("%s/out-%d-%d", tmp, k, r);
      switch (k) {
      case STAGE_1:
        t[k][r] = run_stage(&o, tmp, list_path, out, 1, 1, "auto", &c[k][r]);
        break;
      case STAGE_1_OS:
        t[k][r] = run_stage(&o, tmp, list_path, out, 1, 1, "openslide", &c[k][r]);
        break;
      case STAGE_T:
        t[k][r] = run_stage(&o, tmp, list_path, out, 1, o.workers, "auto", &c[k][r]);
        break;
      case STAGE_W:
        t[k][r] = run_stage(&o, tmp, list_path, out, o.workers, 1, "auto", &c[k][r]);
        break;
      case PEER_1:
        t[k][r] = run_peer(&o, paths, out, 1, &c[k][r]);
        break;
      default:
        t[k][r] = run_peer(&o, paths, out, o.workers, &c[k][r]);
        break;
      }
      tiles[k] = count_tiles(out);
      bytes[k] = tile_bytes;
      g_autofree char *rm = g_strdup_printf("rm -rf '%s'", out);
      if (system(rm) != 0) fprintf(stderr, "cannot remove %s\n", out);
      settle(tmp);
    }
  double med[N_CASES], cpu[N_CASES], rate[N_CASES];
  printf("slides: %d x %s, tile %d, overlap %d, png level %d (adaptive filter both sides), workers "
         "%d, %d reps, "
         "%d cores\n",
         o.copies, o.slide, o.tile, o.overlap, o.level, o.workers, o.reps,
         (int)g_get_num_processors());
  for (int k = 0; k < N_CASES; k++) {
    med[k] = bench_median(t[k], o.reps);
    cpu[k] = bench_median(c[k], o.reps);
    rate[k] = tiles[k] / med[k];
    printf("RESULT preprocess %s tiles=%d seconds=%.3f tiles_per_s=%.1f cpu_s=%.3f tile_kb=%.1f\n",
           names[k], tiles[k], med[k], rate[k], cpu[k],
           tiles[k] ? bytes[k] / 1024.0 / tiles[k] : 0.0);
  }
  for (int k = 1; k < N_CASES; k++)
    if (tiles[k] != tiles[0])
      printf("WARNING: tile counts differ (%s %d, %s %d)\n", names[0], tiles[0], names[k],
             tiles[k]);
  printf(
      "RESULT preprocess speedup level=%d one_core=%.2f threads_vs_pool=%.2f workers_vs_pool=%.2f "
      "cpu_time_one_core=%.2f one_core_openslide_reader=%.2f\n",
      o.level, rate[STAGE_1] / rate[PEER_1], rate[STAGE_T] / rate[PEER_W],
      rate[STAGE_W] / rate[PEER_W], cpu[PEER_1] / cpu[STAGE_1], rate[STAGE_1_OS] / rate[PEER_1]);
  for (int k = 0; k < N_CASES; k++) g_free(t[k]), g_free(c[k]), g_free(names[k]);
  g_strfreev(paths);
  g_string_free(list, TRUE);
  g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
  if (system(rm) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
  return 0;
}
