/* test_data_parallel.c — data-parallel training is the same training.
 *
 * The tiny model of the quickstart (tests/comm/dp_tiny.yaml) trains for four
 * steps (A) as one process with a batch of 8 and (B) as two MPI ranks with
 * a batch of 4 each (`mpirun -np 2 --oversubscribe`). B's parameters must
 * equal A's up to float summation order, which Adam's division by sqrt(v)
 * can magnify for parameters whose gradient is nearly zero: measured 1.6e-6,
 * allowed 1e-4, while one step moves a parameter by up to lr = 1e-3. (C), one process with a batch of 4,
 * shows how far a wrong sharding or a missing gradient sum would land. (D)
 * stops the two-rank run after two steps and resumes it as one process:
 * resuming works with another number of ranks. Rank 0 alone writes: one run
 * directory, one metrics line per step. (E) SO-GRPO (tests/comm/dp_rl.yaml)
 * with groups of 4 shared by two ranks (2 rows each) gives the rewards,
 * advantage statistics and gradient norms of one process.
 *
 *   test_data_parallel PIPELINE_BINARY MPIRUN */
#include <glib/gstdio.h>
#include <math.h>
#include <pathseg/safetensors.h>

#include "ps_test.h"

static const char *pipeline_bin, *mpirun_bin;
static char *tmp, *yaml;

/* Runs `[mpirun -np 2] pipeline run dp_tiny.yaml --set run_dir=RUNS SETS...`
 * in tmp; returns the exit status, stderr in *err. */
static int run(gboolean mpi, const char *runs, const char *const *sets, const char *resume, char **err) {
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
  if (mpi) {
    g_ptr_array_add(argv, g_strdup(mpirun_bin));
    g_ptr_array_add(argv, g_strdup("-np"));
    g_ptr_array_add(argv, g_strdup("2"));
    g_ptr_array_add(argv, g_strdup("--oversubscribe"));
  }
  g_ptr_array_add(argv, g_strdup(pipeline_bin));
  g_ptr_array_add(argv, g_strdup("run"));
  g_ptr_array_add(argv, g_strdup(yaml));
  g_ptr_array_add(argv, g_strdup("--quiet"));
  g_ptr_array_add(argv, g_strdup("--set"));
  g_ptr_array_add(argv, g_strdup_printf("run_dir=%s", runs));
  for (size_t i = 0; sets && sets[i]; i++) {
    g_ptr_array_add(argv, g_strdup("--set"));
    g_ptr_array_add(argv, g_strdup(sets[i]));
  }
  if (resume) {
    g_ptr_array_add(argv, g_strdup("--resume"));
    g_ptr_array_add(argv, g_strdup(resume));
  }
  g_ptr_array_add(argv, NULL);
  /* Under the sanitizers, the ranks' leak reports need full stacks to match
   * the Open MPI suppressions in tests/lsan.supp (its components are
   * dlclosed at exit and leave frames without a module name otherwise). */
  g_auto(GStrv) env = g_get_environ();
  const char *asan = g_environ_getenv(env, "ASAN_OPTIONS");
  if (mpi && asan) {
    g_autofree char *full = g_strconcat(asan, ":fast_unwind_on_malloc=0", NULL);
    env = g_environ_setenv(env, "ASAN_OPTIONS", full, TRUE);
  }
  int status = -1;
  GError *error = NULL;
  g_autofree char *out = NULL;
  if (!g_spawn_sync(tmp, (char **)argv->pdata, env, G_SPAWN_DEFAULT, NULL, NULL, &out, err, &status,
                    &error)) {
    fprintf(stderr, "spawn: %s\n", error->message);
    g_clear_error(&error);
    return -1;
  }
  if (!g_spawn_check_wait_status(status, NULL)) fprintf(stderr, "%s\n%s\n", out, err ? *err : "");
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The single run directory under `runs`, or NULL. */
static char *only_run(const char *runs, int *count) {
  g_autoptr(GDir) d = g_dir_open(runs, 0, NULL);
  char *found = NULL;
  *count = 0;
  const char *name;
  while (d && (name = g_dir_read_name(d))) {
    (*count)++;
    g_free(found);
    found = g_build_filename(runs, name, NULL);
  }
  return found;
}

/* Largest |a - b| over every parameter (not optimizer state) of two
 * checkpoints; -1 when they differ in names or shapes. */
static double max_param_diff(const char *run_a, const char *run_b) {
  g_autofree char *pa = g_build_filename(run_a, "checkpoints", "last.safetensors", NULL);
  g_autofree char *pb = g_build_filename(run_b, "checkpoints", "last.safetensors", NULL);
  GError *error = NULL;
  ps_safetensors *a = ps_safetensors_open(pa, &error);
  ps_safetensors *b = a ? ps_safetensors_open(pb, &error) : NULL;
  double worst = -1;
  if (a && b && ps_safetensors_count(a) == ps_safetensors_count(b)) {
    worst = 0;
    for (size_t i = 0; i < ps_safetensors_count(a) && worst >= 0; i++) {
      const char *name = ps_safetensors_name(a, i);
      if (g_str_has_prefix(name, "optim.")) continue;
      g_autoptr(ps_tensor) ta = ps_safetensors_get_f32(a, name, &error);
      g_autoptr(ps_tensor) tb = ta ? ps_safetensors_get_f32(b, name, &error) : NULL;
      if (!tb || ps_tensor_numel(ta) != ps_tensor_numel(tb)) {
        worst = -1;
        break;
      }
      for (int64_t k = 0; k < ps_tensor_numel(ta); k++)
        worst = fmax(worst, fabs((double)ps_f32(ta)[k] - (double)ps_f32(tb)[k]));
    }
  }
  if (error) fprintf(stderr, "%s\n", error->message);
  g_clear_error(&error);
  if (a) ps_safetensors_close(a);
  if (b) ps_safetensors_close(b);
  return worst;
}

/* The value of `key` on the metrics line of `step` that has it, or NAN. */
static double metric(const char *run_dir, int step, const char *key) {
  g_autofree char *path = g_build_filename(run_dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return NAN;
  g_autofree char *want_step = g_strdup_printf("\"step\": %d,", step);
  g_autofree char *want_key = g_strdup_printf("\"%s\": ", key);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (size_t i = 0; lines[i]; i++) {
    const char *k = strstr(lines[i], want_key);
    if (strstr(lines[i], want_step) && k) return g_ascii_strtod(k + strlen(want_key), NULL);
  }
  return NAN;
}

static guint loss_lines(const char *run_dir) {
  g_autofree char *path = g_build_filename(run_dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return 0;
  guint n = 0;
  for (const char *p = text; (p = strstr(p, "\"loss\":")); p++) n++;
  return n;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_data_parallel PIPELINE_BINARY MPIRUN\n");
    return 2;
  }
  pipeline_bin = argv[1];
  mpirun_bin = argv[2];
  GError *error = NULL;
  tmp = g_dir_make_tmp("ps-dp-XXXXXX", &error);
  PS_CHECK_OK(tmp != NULL, error);
  yaml = ps_test_source_path("tests/comm/dp_tiny.yaml");
  g_autofree char *runs_a = g_build_filename(tmp, "a", NULL), *runs_b = g_build_filename(tmp, "b", NULL),
                  *runs_c = g_build_filename(tmp, "c", NULL), *runs_d = g_build_filename(tmp, "d", NULL);

  const char *half[] = {"stages.sft.batch_size=4", NULL};
  g_autofree char *err_b = NULL, *err_d = NULL;
  PS_CHECK(run(FALSE, runs_a, NULL, NULL, NULL) == 0);
  PS_CHECK(run(TRUE, runs_b, half, NULL, &err_b) == 0);
  PS_CHECK(run(FALSE, runs_c, half, NULL, NULL) == 0);
  int na = 0, nb = 0, nc = 0, nd = 0;
  g_autofree char *a = only_run(runs_a, &na), *b = only_run(runs_b, &nb), *c = only_run(runs_c, &nc);
  PS_CHECK_MSG(na == 1 && nb == 1 && nc == 1, "run directories: %d %d %d (the ranks must share one)", na, nb, nc);

  /* (B) equals (A); (C) does not. */
  double ab = a && b ? max_param_diff(a, b) : -1, ac = a && c ? max_param_diff(a, c) : -1;
  printf("max |A - B| = %.3g (2 ranks x 4 vs 1 x 8); max |A - C| = %.3g (1 x 4)\n", ab, ac);
  PS_CHECK_MSG(ab >= 0 && ab < 1e-4, "two ranks drifted from one process: %g", ab);
  PS_CHECK_MSG(ac > 1e-3, "the control run is too close (%g): the test could not tell", ac);
  PS_CHECK_MSG(b && loss_lines(b) == 4, "rank 0 alone writes metrics: %u loss lines, want 4", b ? loss_lines(b) : 0);

  /* (D) two ranks stop after 2 steps; one process resumes with the same
   * global batch and ends where (A) did. */
  const char *stop[] = {"stages.sft.batch_size=4", "stages.sft.stop_after_steps=2", NULL};
  int rc = run(TRUE, runs_d, stop, NULL, &err_d);
  PS_CHECK_MSG(rc != 0 && err_d && strstr(err_d, "--resume"), "the stopped run should say how to resume (rc %d)", rc);
  g_autofree char *d = only_run(runs_d, &nd);
  PS_CHECK(nd == 1 && d);
  if (d) {
    PS_CHECK(run(FALSE, runs_d, NULL, d, NULL) == 0);
    double ad = a ? max_param_diff(a, d) : -1;
    printf("max |A - D| = %.3g (2 ranks for 2 steps, resumed as 1 process)\n", ad);
    PS_CHECK_MSG(ad >= 0 && ad < 1e-4, "resume with another number of ranks drifted: %g", ad);
  }
  /* (E) */
  g_free(yaml);
  yaml = ps_test_source_path("tests/comm/dp_rl.yaml");
  g_autofree char *runs_e1 = g_build_filename(tmp, "e1", NULL), *runs_e2 = g_build_filename(tmp, "e2", NULL);
  PS_CHECK(run(FALSE, runs_e1, NULL, NULL, NULL) == 0);
  PS_CHECK(run(TRUE, runs_e2, NULL, NULL, NULL) == 0);
  int ne1 = 0, ne2 = 0;
  g_autofree char *e1 = only_run(runs_e1, &ne1), *e2 = only_run(runs_e2, &ne2);
  const char *keys[] = {"reward", "adv_mean", "adv_std", "reward/r_len", "grad_norm", "param_delta"};
  for (int step = 1; step <= 2 && e1 && e2; step++)
    for (size_t k = 0; k < G_N_ELEMENTS(keys); k++) {
      double one = metric(e1, step, keys[k]), two = metric(e2, step, keys[k]);
      printf("so_grpo step %d %s: 1 process %.9g, 2 ranks %.9g\n", step, keys[k], one, two);
      PS_CHECK_MSG(isfinite(one) && isfinite(two) && fabs(one - two) <= 1e-5 * fmax(1, fabs(one)),
                   "step %d %s: %g (1 process) vs %g (2 ranks)", step, keys[k], one, two);
    }
  /* the rollout really had several reward values to normalise */
  PS_CHECK(e1 && metric(e1, 1, "adv_std") > 0.5);

  g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
  if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  g_free(yaml);
  g_free(tmp);
  return ps_test_finish();
}
