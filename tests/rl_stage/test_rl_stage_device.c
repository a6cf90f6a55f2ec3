/* test_rl_stage_device.c — stage.so_grpo with `device: cuda` on the CUDA
 * emulator against the same run with `device: cpu` (pipelines/rl_quick.yaml
 * on a tiny benchmark built here): with advantage.gae and the critic (two PPO
 * epochs, <SEG> left to the policy) and with advantage.group (<SEG> forced,
 * so the differentiable soft-Dice gradient is seeded at the mask), two steps
 * each with validation before and after. The emulator's device memory
 * faults on any host access, so the runs themselves show that the stage
 * reads the components' outputs (logits, masks, values, image rows,
 * gradients, parameters) only through host copies.
 *
 * What is compared, and why not everything bit for bit: llm.qwen2 decodes
 * (the rollouts' KV-cache steps) with its own batch-invariant CPU kernel
 * (qwen2_gemv.c) on the CPU and with the table's linear_forward elsewhere,
 * so the sampled log-probs (the PPO ratio's "old" side) differ in their last
 * bits between the devices, and so does everything after the first update.
 * Bit for bit: the validation before the first update, the first step's
 * rollouts (sampled text, reward terms, advantages), the reference snapshot,
 * and a device run stopped after step 1 and resumed (the snapshot read back
 * onto the device) against the uninterrupted device run. Close (relative
 * 1e-4): every later metric and rollout number and every checkpoint tensor.
 * With qwen2's decode forced through the table on the CPU as well, every
 * line and tensor here is equal bit for bit (checked by hand when this test
 * was written); make the comparison exact once the table has a
 * batch-invariant decode product. */
#include <glib/gstdio.h>
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/run.h>
#include <pathseg/safetensors.h>
#include <string.h>

#include "emu_device.h"
#include "ps_test.h"

static ps_registry *reg;
static char *tmp, *manifest;

static gboolean run_file(const char *path, const char *device, const char *const *extra,
                         const char *resume, char **dir_out, GError **error) {
  g_autoptr(GPtrArray) sets = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(sets, g_strdup_printf("run_dir=%s/runs", tmp));
  g_ptr_array_add(sets, g_strdup("threads=1"));
  if (device) g_ptr_array_add(sets, g_strdup_printf("device=%s", device));
  if (manifest) {
    g_ptr_array_add(sets, g_strdup_printf("components.bench.with.manifest=%s", manifest));
    g_ptr_array_add(sets, g_strdup_printf("components.captions.with.manifest=%s", manifest));
  }
  for (size_t i = 0; extra && extra[i]; i++) g_ptr_array_add(sets, g_strdup(extra[i]));
  g_ptr_array_add(sets, NULL);
  g_autoptr(ps_pipeline) p =
      ps_pipeline_load(path, (const char *const *)sets->pdata, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.resume_dir = resume, .quiet = TRUE};
  return ps_run_execute(p, reg, &opts, dir_out, error);
}

/* The lines of a run file with the wall-clock field removed ("time": x). */
static GPtrArray *lines_of(const char *dir, const char *name) {
  GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
  g_autofree char *path = g_build_filename(dir ? dir : "", name, NULL);
  g_autofree char *text = NULL;
  if (!dir || !g_file_get_contents(path, &text, NULL, NULL)) return out;
  g_autoptr(GRegex) re = g_regex_new("\"time\": [-0-9.e+]+, ?", 0, 0, NULL);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (size_t i = 0; lines[i]; i++)
    if (*lines[i]) g_ptr_array_add(out, g_regex_replace_literal(re, lines[i], -1, 0, "", 0, NULL));
  return out;
}

/* Closeness of two numbers that went through different decode products
 * (see the top of the file): relative 1e-4, or `tiny` absolute near 0. */
static gboolean close_to(double a, double b, double tiny) {
  return a == b || fabs(a - b) <= 1e-4 * fmax(fabs(a), fabs(b)) + tiny;
}

typedef struct {
  guint lines, exact_lines, numbers, exact_numbers;
} line_cmp;

/* Two run files line by line. The first `strict` lines must be equal as
 * text; the others must have the same text around their numbers and the
 * numbers close (counted: how many are nevertheless exact). */
static line_cmp compare_lines(const char *what, const char *name, const char *dir_a,
                              const char *dir_b, guint strict) {
  line_cmp r = {0};
  g_autoptr(GPtrArray) a = lines_of(dir_a, name), b = lines_of(dir_b, name);
  PS_CHECK_MSG(a->len == b->len, "%s: %s has %u lines on the cpu, %u on cuda", what, name, a->len,
               b->len);
  g_autoptr(GRegex) num = g_regex_new("-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?", 0, 0, NULL);
  for (guint i = 0; i < a->len && i < b->len; i++, r.lines++) {
    const char *x = g_ptr_array_index(a, i), *y = g_ptr_array_index(b, i);
    gboolean same = strcmp(x, y) == 0;
    r.exact_lines += same;
    if (i < strict) {
      PS_CHECK_MSG(same, "%s: %s line %u:\n  cpu  %s\n  cuda %s", what, name, i + 1, x, y);
      continue;
    }
    g_autofree char *sx = g_regex_replace_literal(num, x, -1, 0, "#", 0, NULL);
    g_autofree char *sy = g_regex_replace_literal(num, y, -1, 0, "#", 0, NULL);
    PS_CHECK_MSG(strcmp(sx, sy) == 0, "%s: %s line %u has other text:\n  cpu  %s\n  cuda %s", what, name,
                 i + 1, x, y);
    g_autoptr(GMatchInfo) mx = NULL, my = NULL;
    g_regex_match(num, x, 0, &mx);
    g_regex_match(num, y, 0, &my);
    while (g_match_info_matches(mx) && g_match_info_matches(my)) {
      g_autofree char *tx = g_match_info_fetch(mx, 0), *ty = g_match_info_fetch(my, 0);
      double vx = g_ascii_strtod(tx, NULL), vy = g_ascii_strtod(ty, NULL);
      PS_CHECK_MSG(close_to(vx, vy, 1e-7), "%s: %s line %u: %s on the cpu, %s on cuda", what, name, i + 1, tx, ty);
      r.numbers++;
      r.exact_numbers += strcmp(tx, ty) == 0;
      g_match_info_next(mx, NULL);
      g_match_info_next(my, NULL);
    }
  }
  return r;
}

/* Every tensor of two safetensors files: equal bit for bit (`exact`) or
 * element by element close; returns how many are bitwise equal (*n: how
 * many there are). */
static size_t compare_tensors(const char *what, const char *pa, const char *pb, gboolean exact,
                              size_t *n_out) {
  GError *error = NULL;
  *n_out = 0;
  g_autoptr(ps_safetensors) a = ps_safetensors_open(pa, &error);
  PS_CHECK_OK(a != NULL, error);
  g_autoptr(ps_safetensors) b = ps_safetensors_open(pb, &error);
  PS_CHECK_OK(b != NULL, error);
  if (!a || !b) return 0;
  const size_t n = ps_safetensors_count(a);
  PS_CHECK_MSG(ps_safetensors_count(b) == n, "%s: %zu tensors on the cpu, %zu on cuda", what, n,
               ps_safetensors_count(b));
  size_t same = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = ps_safetensors_name(a, i);
    const ps_tensor *ta = ps_safetensors_get(a, name, NULL);
    const ps_tensor *tb = ps_safetensors_get(b, name, NULL);
    gboolean ok = ta && tb && ta->dtype == tb->dtype && ta->nbytes == tb->nbytes;
    PS_CHECK_MSG(ok, "%s: tensor %s missing or of another size on cuda", what, name);
    if (!ok) continue;
    gboolean eq = memcmp(ta->data, tb->data, ta->nbytes) == 0;
    same += eq;
    if (exact) {
      PS_CHECK_MSG(eq, "%s: tensor %s differs between cpu and cuda", what, name);
    } else if (!eq && ta->dtype == PS_DTYPE_F32) {
      const float *fa = ps_f32(ta), *fb = ps_f32(tb);
      int64_t bad = 0, k = 0, m = ps_tensor_numel(ta);
      for (int64_t j = 0; j < m; j++)
        /* AdamW divides by sqrt(v): a parameter whose gradient is ~0 moves
         * by up to lr (1e-4) on noise, so near 0 the bound is lr / 10 */
        if (!close_to(fa[j], fb[j], 1e-5) && bad++ == 0) k = j;
      PS_CHECK_MSG(bad == 0, "%s: tensor %s: %" G_GINT64_FORMAT " elements far apart, e.g. [%" G_GINT64_FORMAT
                   "] %.9g on the cpu, %.9g on cuda", what, name, bad, k, fa[k], fb[k]);
    }
  }
  *n_out = n;
  return same;
}

/* cpu vs cuda runs of two steps: the validation before the first update
 * (metrics line 1) and the first step's rollouts (sampled text, reward terms,
 * advantages) and the reference snapshot bit for bit; what follows the first
 * update close (see the top of the file). */
static void compare_runs(const char *what, const char *dir_cpu, const char *dir_dev,
                         int64_t rows_per_step) {
  PS_CHECK_MSG(dir_cpu && dir_dev, "%s: a run directory is missing", what);
  if (!dir_cpu || !dir_dev) return;
  line_cmp m = compare_lines(what, "metrics.jsonl", dir_cpu, dir_dev, 1);
  line_cmp ro = compare_lines(what, "rollouts-so_grpo.jsonl", dir_cpu, dir_dev, (guint)rows_per_step);
  PS_CHECK_MSG(ro.lines == 2 * rows_per_step, "%s: %u rollout rows", what, ro.lines);
  /* the steps' metrics are there on the device */
  g_autoptr(GPtrArray) lines = lines_of(dir_dev, "metrics.jsonl");
  guint steps = 0, vals = 0;
  for (guint i = 0; i < lines->len; i++) {
    const char *l = g_ptr_array_index(lines, i);
    steps += strstr(l, "\"policy_loss\": ") && strstr(l, "\"grad_norm\": ") &&
             !strstr(l, "\"policy_loss\": null");
    vals += strstr(l, "\"val_dice\": ") != NULL;
  }
  PS_CHECK_MSG(steps == 2 && vals == 2, "%s: %u step lines, %u validation lines", what, steps, vals);
  size_t nref = 0, nck = 0;
  g_autofree char *rc = g_build_filename(dir_cpu, "reference-so_grpo.safetensors", NULL);
  g_autofree char *rd = g_build_filename(dir_dev, "reference-so_grpo.safetensors", NULL);
  compare_tensors(what, rc, rd, TRUE, &nref);
  g_autofree char *pc = g_build_filename(dir_cpu, "checkpoints", "last.safetensors", NULL);
  g_autofree char *pd = g_build_filename(dir_dev, "checkpoints", "last.safetensors", NULL);
  size_t ck_same = compare_tensors(what, pc, pd, FALSE, &nck);
  printf("%s: %u metric lines (%u equal as text; %u of %u later numbers exact), %u rollout rows (%u "
         "equal), %zu reference tensors equal, %zu of %zu checkpoint tensors bitwise equal, the rest "
         "close\n", what, m.lines, m.exact_lines, m.exact_numbers, m.numbers, ro.lines, ro.exact_lines,
         nref, ck_same, nck);
  PS_CHECK(m.lines >= 4 && nref > 0 && nck > nref);
}

int main(void) {
  ps_test_use_cuda_emulator();
  GError *error = NULL;
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  tmp = g_dir_make_tmp("rl_stage_device-XXXXXX", NULL);
  g_autofree char *quick = ps_test_source_path("pipelines/quickstart.yaml");
  g_autofree char *rlq = ps_test_source_path("pipelines/rl_quick.yaml");
  g_autofree char *data = g_build_filename(tmp, "data", NULL);

  /* a tiny benchmark (on the CPU) */
  g_autofree char *out_set = g_strdup_printf("stages.build.out_dir=%s", data);
  const char *build[] = {out_set, "stages.build.tiles=24", "stages.build.zeroshot_tiles=4",
                         "stages.build.patients=6", "stages.vlm_pretrain.enabled=false",
                         "stages.sft.enabled=false", "stages.ssl_pretrain.enabled=false",
                         "stages.so_grpo.enabled=false", "stages.evaluate.enabled=false",
                         "stages.report.enabled=false", NULL};
  PS_CHECK_OK(run_file(quick, "cpu", build, NULL, NULL, &error), error);
  manifest = g_build_filename(data, "manifest.jsonl", NULL);

  /* GAE with the critic: value loss and its seed, two PPO epochs (the
   * second forward, the clipped value loss), <SEG> where the policy puts it */
  const char *gae[] = {"stages.so_grpo.steps=2", "stages.so_grpo.max_new_tokens=8",
                       "stages.so_grpo.ppo_epochs=2", "stages.so_grpo.eval_batches=1",
                       "stages.so_grpo.dump_rollouts=true", NULL};
  g_autofree char *gc = NULL, *gd = NULL;
  PS_CHECK_OK(run_file(rlq, "cpu", gae, NULL, &gc, &error), error);
  PS_CHECK_OK(run_file(rlq, "cuda", gae, NULL, &gd, &error), error);
  compare_runs("gae", gc, gd, 8); /* 2 prompts x 4 completions a step */

  /* the group advantage, <SEG> forced: every row has a mask, so the rewards
   * score it and the soft-Dice gradient seeds decoder.masks */
  const char *grp[] = {"stages.so_grpo.steps=2", "stages.so_grpo.max_new_tokens=8",
                       "stages.so_grpo.advantage=grpo", "stages.so_grpo.seg_mode=fixed",
                       "stages.so_grpo.eval_batches=1", "stages.so_grpo.dump_rollouts=true", NULL};
  g_autofree char *rc = NULL, *rd = NULL;
  PS_CHECK_OK(run_file(rlq, "cpu", grp, NULL, &rc, &error), error);
  PS_CHECK_OK(run_file(rlq, "cuda", grp, NULL, &rd, &error), error);
  compare_runs("group", rc, rd, 8);
  g_autoptr(GPtrArray) gl = lines_of(rd, "metrics.jsonl");
  gboolean adapter_grad = FALSE;
  for (guint i = 0; i < gl->len; i++) {
    const char *at = strstr(g_ptr_array_index(gl, i), "\"grad_norm/seg_adapter\": ");
    adapter_grad |= at && g_ascii_strtod(at + strlen("\"grad_norm/seg_adapter\": "), NULL) > 0;
  }
  PS_CHECK_MSG(adapter_grad, "group: the reward gradient did not reach seg_adapter on cuda");

  /* a device run stopped after step 1 and resumed (the snapshot read back
   * onto the device) ends exactly as the uninterrupted device run */
  const char *stop[] = {"stages.so_grpo.steps=2", "stages.so_grpo.max_new_tokens=8",
                        "stages.so_grpo.ppo_epochs=2", "stages.so_grpo.eval_batches=1",
                        "stages.so_grpo.stop_after_steps=1", NULL};
  const char *go_on[] = {"stages.so_grpo.steps=2", "stages.so_grpo.max_new_tokens=8",
                         "stages.so_grpo.ppo_epochs=2", "stages.so_grpo.eval_batches=1", NULL};
  g_autofree char *sd = NULL;
  PS_CHECK_FAILS_WITH(run_file(rlq, "cuda", stop, NULL, &sd, &error), error, "resume");
  PS_CHECK_OK(sd && run_file(rlq, "cuda", go_on, sd, NULL, &error), error);
  if (sd && gd) {
    g_autoptr(GPtrArray) a = lines_of(gd, "metrics.jsonl"), b = lines_of(sd, "metrics.jsonl");
    /* the resumed run's steps and final validation equal the device run's */
    guint matched = 0;
    for (guint i = 0; i < b->len; i++) {
      const char *y = g_ptr_array_index(b, i);
      if (!strstr(y, "\"policy_loss\"") && !strstr(y, "\"val_dice\"")) continue;
      gboolean found = FALSE;
      for (guint j = 0; j < a->len && !found; j++) found = strcmp(g_ptr_array_index(a, j), y) == 0;
      PS_CHECK_MSG(found, "resumed cuda run: no line of the uninterrupted one equals\n  %s", y);
      matched += found;
    }
    PS_CHECK_MSG(matched >= 3, "resumed cuda run: %u lines matched", matched);
    g_autofree char *pa = g_build_filename(gd, "checkpoints", "last.safetensors", NULL);
    g_autofree char *pb = g_build_filename(sd, "checkpoints", "last.safetensors", NULL);
    size_t n = 0;
    PS_CHECK(compare_tensors("resumed", pa, pb, TRUE, &n) == n && n > 0);
  }

  g_free(manifest);
  ps_registry_free(reg);
  ps_test_rm_tree(tmp);
  g_free(tmp);
  return ps_test_finish();
}
