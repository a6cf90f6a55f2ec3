/* test_rl_stage.c — stage.so_grpo and stage.grpo end to end at the tiny
 * preset (pipelines/rl_quick.yaml) on a benchmark built here: rewards and
 * metrics are logged and the parameters move; the same seed gives the same
 * metrics; the GRPO advantages the stage used equal ps_group_advantages on
 * the rewards it logged; validation Dice before the first update and after
 * the last, with the running best, the same in stage.grpo and stage.so_grpo
 * and across a resume; with GAE the critic learns (value loss falls); the
 * soft-Dice gradient reaches adapter.seg only with differentiable_reward;
 * every ablation file validates and ablation_no_gae runs. */
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/run.h>
#include <string.h>

#include "ps_test.h"
#include "rl_math.h"

static ps_registry *reg;
static char *tmp, *manifest;

static gboolean run_resume(const char *path, const char *const *extra, const char *resume, char **dir_out,
                           GError **error) {
  g_autoptr(GPtrArray) sets = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(sets, g_strdup_printf("run_dir=%s/runs", tmp));
  g_ptr_array_add(sets, g_strdup("threads=1"));
  if (manifest) {
    g_ptr_array_add(sets, g_strdup_printf("components.bench.with.manifest=%s", manifest));
    g_ptr_array_add(sets, g_strdup_printf("components.captions.with.manifest=%s", manifest));
  }
  for (size_t i = 0; extra && extra[i]; i++) g_ptr_array_add(sets, g_strdup(extra[i]));
  g_ptr_array_add(sets, NULL);
  g_autoptr(ps_pipeline) p = ps_pipeline_load(path, (const char *const *)sets->pdata, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.resume_dir = resume, .quiet = TRUE};
  return ps_run_execute(p, reg, &opts, dir_out, error);
}

static gboolean run_file(const char *path, const char *const *extra, char **dir_out, GError **error) {
  return run_resume(path, extra, NULL, dir_out, error);
}

/* Values of `key` in metrics.jsonl, in order. */
static GArray *metric(const char *dir, const char *key) {
  GArray *values = g_array_new(FALSE, FALSE, sizeof(double));
  g_autofree char *path = g_build_filename(dir ? dir : "", "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  if (!dir || !g_file_get_contents(path, &text, NULL, NULL)) return values;
  g_autofree char *needle = g_strdup_printf("\"%s\": ", key);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (size_t i = 0; lines[i]; i++) {
    const char *at = strstr(lines[i], needle);
    if (!at) continue;
    double v = strncmp(at + strlen(needle), "null", 4) == 0 ? NAN : g_ascii_strtod(at + strlen(needle), NULL);
    g_array_append_val(values, v);
  }
  return values;
}

static double at(GArray *a, guint i) { return i < a->len ? g_array_index(a, double, i) : NAN; }

/* The GRPO rows of rollouts-so_grpo.jsonl: advantages equal
 * ps_group_advantages(rewards) step by step. Returns rows checked. */
static int check_group_advantages(const char *dir, int64_t G) {
  g_autofree char *path = g_build_filename(dir, "rollouts-so_grpo.jsonl", NULL);
  g_autofree char *text = NULL;
  PS_CHECK(g_file_get_contents(path, &text, NULL, NULL));
  if (!text) return 0;
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  g_autoptr(GArray) rew = g_array_new(FALSE, FALSE, sizeof(float));
  g_autoptr(GArray) adv = g_array_new(FALSE, FALSE, sizeof(float));
  int checked = 0;
  int64_t cur = -1;
  for (size_t i = 0;; i++) {
    int64_t step = -2;
    float r = 0, a = 0;
    if (lines[i] && *lines[i]) {
      g_autoptr(JsonParser) jp = json_parser_new();
      PS_CHECK(json_parser_load_from_data(jp, lines[i], -1, NULL));
      JsonObject *o = json_node_get_object(json_parser_get_root(jp));
      step = json_object_get_int_member(o, "step");
      r = (float)json_object_get_double_member(o, "reward");
      a = (float)json_object_get_double_member(o, "advantage");
    }
    if (step != cur && rew->len > 0) {
      g_autofree float *want = g_new(float, rew->len);
      GError *error = NULL;
      PS_CHECK_OK(ps_group_advantages((float *)rew->data, rew->len, G, PS_SCALE_GROUP, 1e-4, want, &error), error);
      for (guint k = 0; k < rew->len; k++, checked++) PS_CHECK_NEAR(g_array_index(adv, float, k), want[k], 1e-5);
      g_array_set_size(rew, 0);
      g_array_set_size(adv, 0);
    }
    if (!lines[i] || !*lines[i]) break;
    cur = step;
    g_array_append_val(rew, r);
    g_array_append_val(adv, a);
  }
  return checked;
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  GError *error = NULL;
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  tmp = g_dir_make_tmp("rl_stage-XXXXXX", NULL);
  g_autofree char *quick = ps_test_source_path("pipelines/quickstart.yaml");
  g_autofree char *rlq = ps_test_source_path("pipelines/rl_quick.yaml");
  g_autofree char *data = g_build_filename(tmp, "data", NULL);

  /* a tiny benchmark */
  g_autofree char *out_set = g_strdup_printf("stages.build.out_dir=%s", data);
  const char *build[] = {out_set, "stages.build.tiles=24", "stages.build.zeroshot_tiles=4",
                         "stages.build.patients=6", "stages.vlm_pretrain.enabled=false",
                         "stages.sft.enabled=false", "stages.ssl_pretrain.enabled=false",
                         "stages.so_grpo.enabled=false", "stages.evaluate.enabled=false",
                         "stages.report.enabled=false", NULL};
  PS_CHECK_OK(run_file(quick, build, NULL, &error), error);
  manifest = g_build_filename(data, "manifest.jsonl", NULL);

  /* SO-GRPO with GAE: metrics, moving parameters, determinism */
  const char *gae[] = {"stages.so_grpo.steps=3", "stages.so_grpo.max_new_tokens=16", NULL};
  g_autofree char *dir_a = NULL, *dir_b = NULL;
  PS_CHECK_OK(run_file(rlq, gae, &dir_a, &error), error);
  PS_CHECK_OK(run_file(rlq, gae, &dir_b, &error), error);
  g_autoptr(GArray) ra = metric(dir_a, "reward"), rb = metric(dir_b, "reward");
  g_autoptr(GArray) da = metric(dir_a, "param_delta"), db = metric(dir_b, "param_delta");
  g_autoptr(GArray) va = metric(dir_a, "value_loss"), ka = metric(dir_a, "kl");
  g_autoptr(GArray) la = metric(dir_a, "reward/r_len");
  PS_CHECK(ra->len == 3 && da->len == 3 && la->len == 3);
  for (guint i = 0; i < ra->len; i++) {
    PS_CHECK(isfinite(at(ra, i)) && isfinite(at(va, i)));
    PS_CHECK(at(ra, i) == at(rb, i) && at(da, i) == at(db, i)); /* same seed, same run */
  }
  PS_CHECK(at(da, 0) > 0 && at(da, 2) > at(da, 0)); /* the policy moves away from the reference */
  PS_CHECK(at(ka, 0) == 0 && at(ka, 2) > 0);        /* KL to the frozen snapshot: 0, then grows */

  /* validation (the same protocol in both stages): val_dice before the first
   * update (step 0) and after the last; best_val_dice is the running maximum
   * and best_val_dice_step the step that reached it */
  g_autoptr(GArray) vda = metric(dir_a, "val_dice"), vdb = metric(dir_b, "val_dice");
  g_autoptr(GArray) bda = metric(dir_a, "best_val_dice"), bsa = metric(dir_a, "best_val_dice_step");
  PS_CHECK_MSG(vda->len == 2 && bda->len == 2 && bsa->len == 2, "%u val_dice lines", vda->len);
  if (vda->len == 2 && bda->len == 2 && bsa->len == 2) {
    PS_CHECK(at(vda, 0) >= 0 && at(vda, 0) <= 1 && at(vda, 1) >= 0 && at(vda, 1) <= 1);
    PS_CHECK(at(bda, 0) == at(vda, 0) && at(bsa, 0) == 0);
    PS_CHECK(at(bda, 1) == fmax(at(vda, 0), at(vda, 1)));
    PS_CHECK(at(bsa, 1) == (at(vda, 1) > at(vda, 0) ? 3 : 0));
    PS_CHECK(at(vdb, 0) == at(vda, 0) && at(vdb, 1) == at(vda, 1)); /* deterministic */
  }
  /* stage.grpo validates the same way: from the same weights, the same step-0 Dice */
  const char *grpo_stage[] = {"stages.so_grpo.plugin=stage.grpo", "stages.so_grpo.advantage=grpo",
                              "stages.so_grpo.critic=", "stages.so_grpo.steps=1",
                              "stages.so_grpo.max_new_tokens=16", NULL};
  g_autofree char *dir_gs = NULL;
  PS_CHECK_OK(run_file(rlq, grpo_stage, &dir_gs, &error), error);
  g_autoptr(GArray) vdg = metric(dir_gs, "val_dice"), bsg = metric(dir_gs, "best_val_dice_step");
  PS_CHECK_MSG(vdg->len == 2 && at(vdg, 0) == at(vda, 0), "stage.grpo val_dice at step 0: %g (so_grpo %g)",
               at(vdg, 0), at(vda, 0));
  PS_CHECK(bsg->len == 2 && (at(bsg, 1) == 0 || at(bsg, 1) == 1));

  /* a run stopped after step 1 and resumed ends exactly as the run above
   * (batches, sampling, optimizer state and the reference snapshot) */
  const char *stop[] = {"stages.so_grpo.steps=3", "stages.so_grpo.max_new_tokens=16",
                        "stages.so_grpo.stop_after_steps=1", NULL};
  g_autofree char *dir_s = NULL;
  PS_CHECK_FAILS_WITH(run_file(rlq, stop, &dir_s, &error), error, "resume");
  PS_CHECK_OK(dir_s && run_resume(rlq, gae, dir_s, NULL, &error), error);
  g_autoptr(GArray) rs = metric(dir_s, "reward"), ks = metric(dir_s, "kl"), ds2 = metric(dir_s, "param_delta");
  PS_CHECK(rs->len == 3);
  for (guint i = 0; i < 3; i++)
    PS_CHECK(at(rs, i) == at(ra, i) && at(ks, i) == at(ka, i) && at(ds2, i) == at(da, i));
  /* ... and its validation continues: the same final val_dice and best */
  g_autoptr(GArray) vds = metric(dir_s, "val_dice"), bds = metric(dir_s, "best_val_dice");
  PS_CHECK(vds->len == 2 && at(vds, 1) == at(vda, 1) && bds->len == 2 && at(bds, 1) == at(bda, 1));

  /* the critic learns: with only the critic training on a constant return
   * (R_len with no free tokens), the value loss falls; with vf_coef 0 it
   * cannot */
  const char *critic[] = {"stages.so_grpo.steps=8", "stages.so_grpo.max_new_tokens=8",
                          "stages.so_grpo.train_components=[critic]", "stages.so_grpo.lr=0.002",
                          "stages.so_grpo.schedule=constant", "stages.so_grpo.vf_coef=1.0",
                          "components.r_len.with.free_tokens=0", "components.r_len.with.weight=1.0", NULL};
  const char *no_critic[] = {"stages.so_grpo.steps=8", "stages.so_grpo.max_new_tokens=8",
                             "stages.so_grpo.train_components=[critic]", "stages.so_grpo.lr=0.002",
                             "stages.so_grpo.schedule=constant", "stages.so_grpo.vf_coef=0.0",
                             "components.r_len.with.free_tokens=0", "components.r_len.with.weight=1.0", NULL};
  g_autofree char *dir_c = NULL, *dir_c0 = NULL;
  PS_CHECK_OK(run_file(rlq, critic, &dir_c, &error), error);
  PS_CHECK_OK(run_file(rlq, no_critic, &dir_c0, &error), error);
  g_autoptr(GArray) vc = metric(dir_c, "value_loss"), vc0 = metric(dir_c0, "value_loss");
  PS_CHECK(vc->len == 8 && vc0->len == 8);
  PS_CHECK_MSG(at(vc, 6) + at(vc, 7) < 0.5 * (at(vc, 0) + at(vc, 1)), "value loss %g %g -> %g %g", at(vc, 0),
               at(vc, 1), at(vc, 6), at(vc, 7));
  PS_CHECK_MSG(at(vc0, 6) + at(vc0, 7) > 0.8 * (at(vc0, 0) + at(vc0, 1)), "value loss without training %g -> %g",
               at(vc0, 0), at(vc0, 7));

  /* a second PPO epoch on the same rollout sees a moved policy: ratio != 1 */
  const char *epochs[] = {"stages.so_grpo.steps=1", "stages.so_grpo.max_new_tokens=8", "stages.so_grpo.ppo_epochs=2",
                          "stages.so_grpo.lr=0.001", NULL};
  const char *epoch1[] = {"stages.so_grpo.steps=1", "stages.so_grpo.max_new_tokens=8", "stages.so_grpo.lr=0.001", NULL};
  g_autofree char *dir_e = NULL, *dir_e1 = NULL;
  PS_CHECK_OK(run_file(rlq, epochs, &dir_e, &error), error);
  PS_CHECK_OK(run_file(rlq, epoch1, &dir_e1, &error), error);
  g_autoptr(GArray) re2 = metric(dir_e, "ratio"), re1 = metric(dir_e1, "ratio");
  PS_CHECK_MSG(fabs(at(re1, 0) - 1) < 1e-5 && fabs(at(re2, 0) - 1) > 1e-4, "ratio %g (1 epoch), %g (2)", at(re1, 0),
               at(re2, 0));

  /* GRPO: the stage's advantages are ps_group_advantages of its rewards */
  const char *grpo[] = {"stages.so_grpo.steps=2", "stages.so_grpo.max_new_tokens=16", "stages.so_grpo.advantage=grpo",
                        "stages.so_grpo.seg_mode=fixed", "stages.so_grpo.dump_rollouts=true", NULL};
  g_autofree char *dir_g = NULL;
  PS_CHECK_OK(run_file(rlq, grpo, &dir_g, &error), error);
  PS_CHECK(dir_g && check_group_advantages(dir_g, 4) == 16);

  /* the reward gradient reaches the adapter only when enabled */
  const char *diff_on[] = {"stages.so_grpo.steps=1", "stages.so_grpo.max_new_tokens=8",
                           "stages.so_grpo.seg_mode=fixed", NULL};
  const char *diff_off[] = {"stages.so_grpo.steps=1", "stages.so_grpo.max_new_tokens=8",
                            "stages.so_grpo.seg_mode=fixed", "stages.so_grpo.differentiable_reward=false", NULL};
  g_autofree char *dir_on = NULL, *dir_off = NULL;
  PS_CHECK_OK(run_file(rlq, diff_on, &dir_on, &error), error);
  PS_CHECK_OK(run_file(rlq, diff_off, &dir_off, &error), error);
  g_autoptr(GArray) gon = metric(dir_on, "grad_norm/seg_adapter"), goff = metric(dir_off, "grad_norm/seg_adapter");
  PS_CHECK_MSG(at(gon, 0) > 0, "adapter grad %g with the differentiable reward", at(gon, 0));
  PS_CHECK_MSG(at(goff, 0) == 0, "adapter grad %g without it", at(goff, 0));

  /* every ablation file validates; ablation_no_gae runs at the tiny preset
   * (rl_quick.yaml's size overrides on top of it) */
  g_autofree char *pdir = ps_test_source_path("pipelines");
  g_autoptr(GDir) d = g_dir_open(pdir, 0, NULL);
  int n_abl = 0;
  for (const char *f; d && (f = g_dir_read_name(d));) {
    if (!g_str_has_prefix(f, "ablation_") || !g_str_has_suffix(f, ".yaml")) continue;
    g_autofree char *path = g_build_filename(pdir, f, NULL);
    g_autoptr(ps_pipeline) p = ps_pipeline_load(path, NULL, ps_registry_lookup, reg, &error);
    PS_CHECK_OK(p != NULL, error);
    n_abl++;
  }
  PS_CHECK(n_abl >= 14);
  g_autofree char *overlay = NULL;
  PS_CHECK(g_file_get_contents(rlq, &overlay, NULL, NULL));
  const char *body = overlay ? strstr(overlay, "\ncomponents:") : NULL;
  PS_CHECK(body != NULL);
  g_autofree char *abl = ps_test_source_path("pipelines/ablation_no_gae.yaml");
  g_autofree char *text = g_strdup_printf("extends: %s\nname: no_gae_tiny\n%s", abl, body ? body : "");
  g_autofree char *tiny = g_build_filename(tmp, "no_gae_tiny.yaml", NULL);
  g_file_set_contents(tiny, text, -1, NULL);
  const char *few[] = {"stages.so_grpo.steps=2", "stages.so_grpo.max_new_tokens=8", NULL};
  g_autofree char *dir_n = NULL;
  PS_CHECK_OK(run_file(tiny, few, &dir_n, &error), error);
  g_autoptr(GArray) vn = metric(dir_n, "value_loss"), rn = metric(dir_n, "reward");
  PS_CHECK(rn->len == 2 && isnan(at(vn, 0))); /* group advantages: no critic */

  g_free(manifest);
  ps_registry_free(reg);
  ps_test_rm_tree(tmp); /* the benchmark and the runs */
  g_free(tmp);
  return ps_test_finish();
}
