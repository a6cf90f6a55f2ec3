/* bench_preprocess.c — tiles per second of stage.preprocess_slides against
 * its peer, openslide-python + Pillow (peer_openslide.py), doing the same
 * job on the same slides in the same run: tissue detection (block-mean
 * thumbnail, saturation, Otsu), grid tiles with enough tissue read at level
 * 0 and saved as PNG (compression 6 on both sides). The stage does more per
 * tile (a mask PNG, descriptors, a reasoning chain, manifests).
 *
 * Contestants alternate within each repetition; medians are reported as
 *   RESULT preprocess <case> tiles=N seconds=S tiles_per_s=R
 * and the speed-ups against the single-process peer at the end.
 *   bench_preprocess [--slide S] [--copies 8] [--reps 3] [--tile 256] [--overlap 128] [--workers 2]
 *                    [--python /usr/bin/python3] [--peer bench/preprocess/peer_openslide.py] */
#include <glib/gstdio.h>
#include <pathseg/host.h>
#include <pathseg/run.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../bench_common.h"

static ps_registry *reg;

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

static double run_stage(const char *tmp, const char *slides, const char *out, int tile, int overlap, int workers,
                        const char *filter, int *tiles) {
  g_autofree char *yaml = g_build_filename(PS_SOURCE_DIR, "pipelines", "preprocess_slides.yaml", NULL);
  g_autofree char *s1 = g_strdup_printf("stages.preprocess.slides=%s", slides);
  g_autofree char *s2 = g_strdup_printf("stages.preprocess.out_dir=%s", out);
  g_autofree char *s3 = g_strdup_printf("stages.preprocess.tile_size=%d", tile);
  g_autofree char *s4 = g_strdup_printf("stages.preprocess.overlap=%d", overlap);
  g_autofree char *s5 = g_strdup_printf("stages.preprocess.workers=%d", workers);
  g_autofree char *s6 = g_strdup_printf("run_dir=%s/runs", tmp);
  g_autofree char *s7 = g_strdup_printf("stages.preprocess.png_filter=%s", filter);
  const char *sets[] = {s1, s2, s3, s4, s5, s6, s7, NULL};
  GError *error = NULL;
  double t0 = bench_now();
  g_autoptr(ps_pipeline) p = ps_pipeline_load(yaml, sets, ps_registry_lookup, reg, &error);
  ps_run_options opts = {NULL, TRUE};
  if (!p || !ps_run_execute(p, reg, &opts, NULL, &error)) {
    fprintf(stderr, "stage failed: %s\n", error ? error->message : "?");
    exit(1);
  }
  double dt = bench_now() - t0;
  *tiles = count_tiles(out);
  return dt;
}

static double run_peer(const char *python, const char *peer, char **paths, int n, const char *out, int tile,
                       int overlap, int workers, int *tiles) {
  GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(argv, g_strdup(python));
  g_ptr_array_add(argv, g_strdup(peer));
  g_ptr_array_add(argv, g_strdup_printf("--out=%s", out));
  g_ptr_array_add(argv, g_strdup_printf("--tile=%d", tile));
  g_ptr_array_add(argv, g_strdup_printf("--overlap=%d", overlap));
  g_ptr_array_add(argv, g_strdup_printf("--workers=%d", workers));
  for (int i = 0; i < n; i++) g_ptr_array_add(argv, g_strdup(paths[i]));
  g_ptr_array_add(argv, NULL);
  g_autofree char *stdout_text = NULL;
  int status = 0;
  GError *error = NULL;
  double t0 = bench_now();
  gboolean ok = g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &stdout_text, NULL,
                             &status, &error);
  double dt = bench_now() - t0; /* wall, interpreter start included */
  g_ptr_array_unref(argv);
  if (!ok || !g_spawn_check_wait_status(status, &error)) {
    fprintf(stderr, "peer failed: %s\n", error ? error->message : "?");
    exit(1);
  }
  *tiles = count_tiles(out);
  return dt;
}

int main(int argc, char **argv) {
  const char *slide = PS_SOURCE_DIR "/tests/data/CMU-1-Small-Region.svs";
  const char *python = "/usr/bin/python3", *peer = PS_SOURCE_DIR "/bench/preprocess/peer_openslide.py";
  int copies = 8, reps = 3, tile = 256, overlap = 128, workers = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--slide")) slide = argv[i + 1];
    else if (!strcmp(argv[i], "--copies")) copies = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--tile")) tile = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--overlap")) overlap = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--workers")) workers = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--python")) python = argv[i + 1];
    else if (!strcmp(argv[i], "--peer")) peer = argv[i + 1];
    else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  g_autofree char *tmp = g_dir_make_tmp("ps-bench-preprocess-XXXXXX", NULL);
  char **paths = g_new0(char *, copies + 1);
  GString *list = g_string_new("[");
  for (int i = 0; i < copies; i++) {
    paths[i] = g_strdup_printf("%s/slide%02d.svs", tmp, i);
    if (symlink(slide, paths[i]) != 0) {
      fprintf(stderr, "cannot link %s\n", paths[i]);
      return 1;
    }
    g_string_append_printf(list, "%s%s", i ? ", " : "", paths[i]);
  }
  g_string_append(list, "]");

  /* _all: PNG filter "all" (adaptive, as Pillow): the same bytes on disk as the peer. */
  enum { STAGE_W, STAGE_W_ALL, STAGE_1, PEER_1, PEER_W, N_CASES };
  const char *names[N_CASES] = {"pathseg_stage_workers", "pathseg_stage_workers_filter_all", "pathseg_stage_1",
                                "peer_openslide_pillow_1", "peer_openslide_pillow_pool"};
  double *t[N_CASES];
  int tiles[N_CASES] = {0};
  int64_t bytes[N_CASES] = {0};
  for (int c = 0; c < N_CASES; c++) t[c] = g_new0(double, reps);
  for (int r = 0; r < reps; r++)
    for (int c = 0; c < N_CASES; c++) {
      g_autofree char *out = g_strdup_printf("%s/out-%d-%d", tmp, c, r);
      if (c == STAGE_W || c == STAGE_W_ALL || c == STAGE_1)
        t[c][r] = run_stage(tmp, list->str, out, tile, overlap, c == STAGE_1 ? 1 : workers,
                            c == STAGE_W_ALL ? "all" : "none", &tiles[c]);
      else
        t[c][r] = run_peer(python, peer, paths, copies, out, tile, overlap, c == PEER_W ? workers : 1, &tiles[c]);
      bytes[c] = tile_bytes;
      g_autofree char *rm = g_strdup_printf("rm -rf '%s'", out);
      if (system(rm) != 0) fprintf(stderr, "cannot remove %s\n", out);
    }
  double med[N_CASES];
  printf("slides: %d x %s, tile %d, overlap %d, workers %d, %d reps, %d cores\n", copies, slide, tile, overlap,
         workers, reps, (int)g_get_num_processors());
  for (int c = 0; c < N_CASES; c++) {
    med[c] = bench_median(t[c], reps);
    printf("RESULT preprocess %s tiles=%d seconds=%.3f tiles_per_s=%.1f tile_kb=%.1f\n", names[c], tiles[c], med[c],
           tiles[c] / med[c], tiles[c] ? bytes[c] / 1024.0 / tiles[c] : 0.0);
  }
  if (tiles[STAGE_W] != tiles[PEER_1]) printf("WARNING: tile counts differ (%d vs %d)\n", tiles[STAGE_W], tiles[PEER_1]);
  printf("RESULT preprocess speedup stage_workers_vs_peer_1=%.2f stage_workers_all_vs_peer_1=%.2f "
         "stage_workers_vs_peer_pool=%.2f stage_1_vs_peer_1=%.2f\n",
         (tiles[STAGE_W] / med[STAGE_W]) / (tiles[PEER_1] / med[PEER_1]),
         (tiles[STAGE_W_ALL] / med[STAGE_W_ALL]) / (tiles[PEER_1] / med[PEER_1]),
         (tiles[STAGE_W] / med[STAGE_W]) / (tiles[PEER_W] / med[PEER_W]),
         (tiles[STAGE_1] / med[STAGE_1]) / (tiles[PEER_1] / med[PEER_1]));
  for (int c = 0; c < N_CASES; c++) g_free(t[c]);
  g_strfreev(paths);
  g_string_free(list, TRUE);
  g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
  if (system(rm) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
  ps_registry_free(reg);
  return 0;
}
