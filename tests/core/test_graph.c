/* test_graph.c — the graph executor: forward in order, backward through the
 * components that need it, gradients summed over fan-out, frozen parameters
 * without gradient buffers, and parameter gradients that agree with central
 * finite differences of the whole graph's loss. Uses the example plugin. */
#include <pathseg/graph.h>
#include <pathseg/host.h>
#include <pathseg/dataset.h>
#include <pathseg/safetensors.h>
#include <glib/gstdio.h>

#include "ps_test.h"

static const char *yaml =
    "name: graph-test\n"
    "seed: 3\n"
    "components:\n"
    "  toy: {plugin: example.toy_regression, with: {in_features: 5, out_features: 3, noise: 0.1}}\n"
    "  first: {plugin: example.linear, with: {in_features: 5, out_features: 7, init_std: 0.5}, inputs: {x: data.x}}\n"
    "  second: {plugin: example.linear, with: {in_features: 7, out_features: 3, init_std: 0.5}, inputs: {x: first.y}}\n"
    "  loss_a: {plugin: example.mse, inputs: {pred: second.y, target: data.y}}\n"
    "  loss_b: {plugin: example.mse, inputs: {pred: second.y, target: data.y}}\n"
    "%s"
    "stages: {}\n";

static ps_pipeline *load(ps_registry *reg, const char *extra, GError **error) {
  g_autofree char *text = g_strdup_printf(yaml, extra);
  g_autofree char *dir = g_dir_make_tmp("ps-graph-XXXXXX", NULL);
  g_autofree char *path = g_build_filename(dir, "graph.yaml", NULL);
  g_file_set_contents(path, text, -1, NULL);
  ps_pipeline *p = ps_pipeline_load(path, NULL, ps_registry_lookup, reg, error);
  g_unlink(path);
  g_rmdir(dir);
  return p;
}

/* loss_a + loss_b on the current batch. */
static double total_loss(ps_graph *g, const ps_ports *batch) {
  GError *error = NULL;
  if (!ps_graph_forward(g, batch, NULL, &error)) {
    fprintf(stderr, "forward: %s\n", error->message);
    g_clear_error(&error);
    return NAN;
  }
  return (double)ps_f32(ps_graph_output(g, "loss_a", "loss"))[0] +
         ps_f32(ps_graph_output(g, "loss_b", "loss"))[0];
}

typedef struct {
  const char *instance, *name;
  ps_param *found;
} find_ctx;

static void find_param(const char *instance, ps_param *p, void *user) {
  find_ctx *fc = user;
  if (strcmp(instance, fc->instance) == 0 && strcmp(p->name, fc->name) == 0) fc->found = p;
}

static ps_param *param(ps_graph *g, const char *instance, const char *name) {
  find_ctx fc = {instance, name, NULL};
  ps_graph_visit_params(g, find_param, &fc);
  return fc.found;
}

static gboolean backward(ps_graph *g, const ps_ports *batch) {
  GError *error = NULL;
  g_autoptr(ps_tensor) one = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, NULL);
  ps_f32(one)[0] = 1.0f;
  ps_graph_zero_grad(g);
  gboolean ok = !isnan(total_loss(g, batch)) &&
                ps_graph_seed_grad(g, "loss_a", "loss", one, &error) &&
                ps_graph_seed_grad(g, "loss_b", "loss", one, &error) && ps_graph_backward(g, &error);
  if (!ok && error) fprintf(stderr, "backward: %s\n", error->message);
  g_clear_error(&error);
  return ok;
}

/* Central differences of the total loss against the analytic gradient for a
 * few entries of a parameter. The loss is a quadratic in each weight, so
 * central differences are exact up to rounding. */
static void check_gradient(ps_graph *g, const ps_ports *batch, const char *instance, const char *name) {
  ps_param *p = param(g, instance, name);
  PS_CHECK_MSG(p && p->grad, "%s.%s has no gradient", instance, name);
  if (!p || !p->grad) return;
  int64_t n = ps_tensor_numel(p->value);
  for (int64_t k = 0; k < n; k += 1 + n / 5) {
    float *w = ps_f32(p->value) + k;
    float saved = *w;
    const float h = 1e-2f;
    *w = saved + h;
    double up = total_loss(g, batch);
    *w = saved - h;
    double down = total_loss(g, batch);
    *w = saved;
    double numeric = (up - down) / (2.0 * h);
    double analytic = ps_f32(p->grad)[k];
    PS_CHECK_MSG(fabs(numeric - analytic) <= 2e-3 + 2e-3 * fabs(numeric),
                 "%s.%s[%" G_GINT64_FORMAT "]: analytic %.6g, numeric %.6g", instance, name, k,
                 analytic, numeric);
  }
}

int main(void) {
  GError *error = NULL;
  g_autoptr(ps_registry) reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  PS_CHECK(ps_registry_find(reg, "example.linear") != NULL);

  g_autoptr(ps_pipeline) p = load(reg, "", &error);
  PS_CHECK_OK(p != NULL, error);
  if (!p) return ps_test_finish();
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 11);
  g_autoptr(ps_graph) g = ps_graph_new(p, ctx, &error);
  PS_CHECK_OK(g != NULL, error);
  if (!g) return ps_test_finish();

  /* What a loss depends on (stage.fit trains only that by default). */
  g_auto(GStrv) up_a = ps_graph_upstream(g, "loss_a"), up_first = ps_graph_upstream(g, "first");
  g_autofree char *ua = up_a ? g_strjoinv(",", up_a) : NULL, *uf = up_first ? g_strjoinv(",", up_first) : NULL;
  PS_CHECK_MSG(ua && strcmp(ua, "first,second,loss_a") == 0, "upstream of loss_a: %s", ua ? ua : "NULL");
  PS_CHECK_MSG(uf && strcmp(uf, "first") == 0, "upstream of first: %s", uf ? uf : "NULL");
  PS_CHECK(ps_graph_upstream(g, "nobody") == NULL);

  const ps_dataset_iface *ds = ps_graph_capability(g, "toy", "dataset");
  void *toy = ps_graph_self(g, "toy", NULL);
  PS_CHECK(ds != NULL);
  int64_t idx[6] = {0, 1, 2, 3, 4, 5};
  ps_rng rng;
  ps_rng_seed(&rng, 1);
  const ps_ports *batch = ds->batch(toy, "train", idx, 6, &rng, &error);
  PS_CHECK_OK(batch != NULL, error);

  /* Everything trains: both layers get gradients that match finite differences,
   * including the fan-out of second.y into two losses. */
  const ps_role full[] = {PS_ROLE_FULL};
  int64_t n = ps_graph_set_trainable(g, full, 1, NULL, &error);
  PS_CHECK_MSG(n == 5 * 7 + 7 + 7 * 3 + 3, "trainable = %" G_GINT64_FORMAT, n);
  PS_CHECK(backward(g, batch));
  check_gradient(g, batch, "second", "weight");
  check_gradient(g, batch, "second", "bias");
  check_gradient(g, batch, "first", "weight");
  check_gradient(g, batch, "first", "bias");

  /* Gradients accumulate across backward passes (+=) until zeroed. */
  ps_param *w2 = param(g, "second", "weight");
  float once = ps_f32(w2->grad)[0];
  g_autoptr(ps_tensor) one = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, NULL);
  ps_f32(one)[0] = 1.0f;
  total_loss(g, batch);
  PS_CHECK_OK(ps_graph_seed_grad(g, "loss_a", "loss", one, &error), error);
  PS_CHECK_OK(ps_graph_seed_grad(g, "loss_b", "loss", one, &error), error);
  PS_CHECK_OK(ps_graph_backward(g, &error), error);
  PS_CHECK_NEAR(ps_f32(w2->grad)[0], 2 * once, 1e-5 * fabs(once) + 1e-7);

  /* Only `second` trains: `first` has no gradient buffers. */
  const char *only[] = {"second", NULL};
  n = ps_graph_set_trainable(g, full, 1, only, &error);
  PS_CHECK(n == 7 * 3 + 3);
  PS_CHECK(param(g, "first", "weight")->grad == NULL);
  PS_CHECK(backward(g, batch));
  check_gradient(g, batch, "second", "weight");

  /* Nothing trains: backward is a no-op that still succeeds. */
  PS_CHECK(ps_graph_set_trainable(g, full, 1, (const char *[]){"nothing", NULL}, &error) == 0);
  PS_CHECK(backward(g, batch));

  /* A role override in the pipeline freezes `first`. */
  g_autoptr(ps_pipeline) p3 =
      load(reg, "  frozen_copy: {plugin: example.linear, with: {in_features: 5, out_features: 2}, "
                "inputs: {x: data.x}, roles: {\"*\": frozen}}\n",
           &error);
  PS_CHECK_OK(p3 != NULL, error);
  if (p3) {
    g_autoptr(ps_graph) g3 = ps_graph_new(p3, ctx, &error);
    PS_CHECK_OK(g3 != NULL, error);
    if (g3) {
      n = ps_graph_set_trainable(g3, full, 1, NULL, &error);
      PS_CHECK(n == 5 * 7 + 7 + 7 * 3 + 3);
      PS_CHECK(param(g3, "frozen_copy", "weight")->grad == NULL);
      /* Forward of a target runs only what it depends on. */
      const char *targets[] = {"first", NULL};
      PS_CHECK_OK(ps_graph_forward(g3, batch, targets, &error), error);
      PS_CHECK(ps_graph_output(g3, "first", "y") != NULL);
      g_autofree char *plan = ps_graph_describe(g3);
      PS_CHECK(strstr(plan, "frozen_copy: example.linear") && strstr(plan, "frozen 12"));
    }
  }

  /* Weights load by name; problems are reported together. */
  {
    g_autofree char *dir = g_dir_make_tmp("ps-weights-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "w.safetensors", NULL);
    g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
    g_autoptr(ps_tensor) good = ps_tensor_new4(PS_DTYPE_F32, 3, 7, -1, -1, NULL);
    for (int i = 0; i < 21; i++) ps_f32(good)[i] = (float)i;
    g_autoptr(ps_tensor) bad = ps_tensor_new4(PS_DTYPE_F32, 4, -1, -1, -1, NULL);
    PS_CHECK_OK(ps_safetensors_writer_add(w, "model.weight", good, &error), error);
    PS_CHECK_OK(ps_safetensors_writer_add(w, "model.bias", bad, &error), error);
    PS_CHECK_OK(ps_safetensors_writer_add(w, "model.extra", bad, &error), error);
    PS_CHECK_OK(ps_safetensors_writer_write(w, path, &error), error);
    gboolean ok = ps_graph_load_weights(g, "second", path, "model.", TRUE, &error);
    PS_CHECK(!ok);
    PS_CHECK_MSG(error && strstr(error->message, "2 problems") &&
                     strstr(error->message, "wrong shape: model.bias is [4] in the file, [3] in the model") &&
                     strstr(error->message, "unexpected: model.extra"),
                 "%s", error ? error->message : "no error");
    g_clear_error(&error);
    PS_CHECK_NEAR(ps_f32(param(g, "second", "weight")->value)[20], 20.0, 0);
    g_unlink(path);
    g_rmdir(dir);
  }
  return ps_test_finish();
}
