/* fixture.c — the harness that runs a reference fixture (tests/fixtures,
 * ../shared/fixtures/FORMAT.md) through a registered component and compares
 * every `output.*` tensor with the file's tolerance.
 *
 * Tolerances: an element passes when |got - want| <= atol + rtol * |want|;
 * `per_output` overrides atol/rtol for one output; U8 outputs use `u8_atol`
 * when given, else floor(atol) (so a fixture with atol 1 allows one level);
 * other integer outputs must match exactly. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/safetensors.h>
#include <string.h>

#include "build_config.h"

struct ps_fixture {
  char *path;
  ps_safetensors *st;
  const char *component;
  const char *config;
  const char *const *data_dirs;
  GHashTable *outputs; /* name without "output." -> ps_tensor* */
};

const char *ps_fixture_component(const ps_fixture *fx) { return fx->component; }
const char *ps_fixture_config(const ps_fixture *fx) { return fx->config; }
const char *ps_fixture_metadata(const ps_fixture *fx, const char *key) {
  return ps_safetensors_metadata(fx->st, key);
}
gboolean ps_fixture_has(const ps_fixture *fx, const char *name) {
  return ps_safetensors_has(fx->st, name);
}
const ps_tensor *ps_fixture_get(const ps_fixture *fx, const char *name, GError **error) {
  return ps_safetensors_get(fx->st, name, error);
}
ps_tensor *ps_fixture_get_f32(const ps_fixture *fx, const char *name, GError **error) {
  return ps_safetensors_get_f32(fx->st, name, error);
}

const char **ps_fixture_names(const ps_fixture *fx) {
  size_t n = ps_safetensors_count(fx->st);
  const char **names = g_new0(const char *, n + 1);
  for (size_t i = 0; i < n; i++) names[i] = ps_safetensors_name(fx->st, i);
  return names;
}

void ps_fixture_put(ps_fixture *fx, const char *name, ps_tensor *t) {
  g_hash_table_replace(fx->outputs, g_strdup(name), t);
}

char *ps_fixture_find_data(const ps_fixture *fx, const char *file_name, GError **error) {
  g_autofree char *base = g_path_get_basename(file_name);
  GPtrArray *tried = g_ptr_array_new_with_free_func(g_free);
  for (size_t i = 0; fx->data_dirs && fx->data_dirs[i]; i++)
    g_ptr_array_add(tried, g_build_filename(fx->data_dirs[i], base, NULL));
  g_autofree char *dir = g_path_get_dirname(fx->path);
  g_ptr_array_add(tried, g_build_filename(dir, base, NULL));
  const char *test_data = g_getenv("PATHSEG_TEST_DATA");
  if (test_data) g_ptr_array_add(tried, g_build_filename(test_data, base, NULL));
  g_ptr_array_add(tried, g_build_filename(PS_SOURCE_DIR, "tests", "data", base, NULL));
  char *found = NULL;
  for (guint i = 0; i < tried->len && !found; i++)
    if (g_file_test(g_ptr_array_index(tried, i), G_FILE_TEST_IS_REGULAR))
      found = g_strdup(g_ptr_array_index(tried, i));
  if (!found) {
    GString *list = g_string_new(NULL);
    for (guint i = 0; i < tried->len; i++)
      g_string_append_printf(list, "%s%s", i ? ", " : "", (char *)g_ptr_array_index(tried, i));
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "%s: data file '%s' not found (looked in: %s; pass --data-dir)", fx->path, base,
                list->str);
    g_string_free(list, TRUE);
  }
  g_ptr_array_unref(tried);
  return found;
}

void ps_fixture_result_free(ps_fixture_result *r) {
  if (!r) return;
  g_free(r->output);
  g_free(r->problem);
  g_free(r);
}

typedef struct {
  double atol, rtol, u8_atol;
  gboolean has_u8_atol;
  JsonObject *per_output; /* may be NULL */
} tolerance;

static gboolean parse_tolerance(const char *path, const char *text, JsonParser *parser,
                                tolerance *tol, GError **error) {
  tol->atol = 0;
  tol->rtol = 0;
  tol->per_output = NULL;
  tol->has_u8_atol = FALSE;
  tol->u8_atol = 0;
  if (!text) return TRUE; /* exact comparison */
  GError *local = NULL;
  if (!json_parser_load_from_data(parser, text, -1, &local) ||
      !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: metadata 'tolerance' is not a JSON object%s%s",
                path, local ? ": " : "", local ? local->message : "");
    g_clear_error(&local);
    return FALSE;
  }
  JsonObject *o = json_node_get_object(json_parser_get_root(parser));
  tol->atol = json_object_get_double_member_with_default(o, "atol", 0);
  tol->rtol = json_object_get_double_member_with_default(o, "rtol", 0);
  if (json_object_has_member(o, "u8_atol")) {
    tol->has_u8_atol = TRUE;
    tol->u8_atol = json_object_get_double_member(o, "u8_atol");
  }
  if (json_object_has_member(o, "per_output") &&
      JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "per_output")))
    tol->per_output = json_object_get_object_member(o, "per_output");
  return TRUE;
}

static double element(const ps_tensor *t, int64_t i) {
  switch (t->dtype) {
  case PS_DTYPE_F32: return ((const float *)t->data)[i];
  case PS_DTYPE_F64: return ((const double *)t->data)[i];
  case PS_DTYPE_BF16: return ps_bf16_to_f32(((const uint16_t *)t->data)[i]);
  case PS_DTYPE_F16: return ps_f16_to_f32(((const uint16_t *)t->data)[i]);
  case PS_DTYPE_I32: return ((const int32_t *)t->data)[i];
  case PS_DTYPE_I64: return (double)((const int64_t *)t->data)[i];
  case PS_DTYPE_U8:
  case PS_DTYPE_BOOL: return ((const uint8_t *)t->data)[i];
  default: return NAN;
  }
}

static gboolean is_float(ps_dtype d) {
  return d == PS_DTYPE_F32 || d == PS_DTYPE_F64 || d == PS_DTYPE_BF16 || d == PS_DTYPE_F16;
}

static ps_fixture_result *compare_output(const char *name, const ps_tensor *want,
                                         const ps_tensor *got, const tolerance *tol) {
  ps_fixture_result *r = g_new0(ps_fixture_result, 1);
  r->output = g_strdup(name);
  r->atol = tol->atol;
  r->rtol = tol->rtol;
  if (tol->per_output && json_object_has_member(tol->per_output, name)) {
    JsonObject *po = json_object_get_object_member(tol->per_output, name);
    if (po) {
      r->atol = json_object_get_double_member_with_default(po, "atol", r->atol);
      r->rtol = json_object_get_double_member_with_default(po, "rtol", r->rtol);
    }
  }
  if (!is_float(want->dtype)) {
    r->rtol = 0;
    r->atol = want->dtype == PS_DTYPE_U8 ? (tol->has_u8_atol ? tol->u8_atol : floor(r->atol)) : 0;
  }
  if (!got) {
    r->problem = g_strdup("the component did not produce it");
    return r;
  }
  char a[128], b[128];
  if (got->ndim != want->ndim || memcmp(got->shape, want->shape, sizeof(int64_t) * want->ndim) != 0) {
    /* A scalar [1] and a 0-d tensor hold the same single value. */
    if (!(ps_tensor_numel(got) == 1 && ps_tensor_numel(want) == 1)) {
      r->problem = g_strdup_printf("shape %s, expected %s", ps_shape_format(got, a, sizeof a),
                                   ps_shape_format(want, b, sizeof b));
      return r;
    }
  }
  int64_t n = ps_tensor_numel(want);
  gboolean ok = TRUE;
  for (int64_t i = 0; i < n; i++) {
    double w = element(want, i), g = element(got, i);
    double d = fabs(g - w);
    if (isnan(w) && isnan(g)) continue;
    if (isnan(d)) d = INFINITY;
    if (d > r->max_abs_err) r->max_abs_err = d;
    if (w != 0 && d / fabs(w) > r->max_rel_err) r->max_rel_err = d / fabs(w);
    if (!(d <= r->atol + r->rtol * fabs(w))) ok = FALSE;
  }
  r->passed = ok;
  return r;
}

gboolean ps_fixture_run_file(const ps_registry *reg, const char *path,
                             const char *const *data_dirs, GPtrArray *results, GError **error) {
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, error);
  if (!st) return FALSE;
  const char *component = ps_safetensors_metadata(st, "component");
  if (!component) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: not a fixture (no 'component' in __metadata__)", path);
    return FALSE;
  }
  const ps_fixture_iface *iface = NULL;
  const ps_component_desc *desc = ps_registry_find_fixture(reg, component, &iface);
  if (!desc) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "no component '%s' is registered (fixture %s)",
                component, path);
    return FALSE;
  }
  g_autoptr(JsonParser) parser = json_parser_new();
  tolerance tol;
  if (!parse_tolerance(path, ps_safetensors_metadata(st, "tolerance"), parser, &tol, error))
    return FALSE;

  ps_fixture fx = {0};
  fx.path = (char *)path;
  fx.st = st;
  fx.component = component;
  fx.config = ps_safetensors_metadata(st, "config");
  if (!fx.config) fx.config = "{}";
  fx.data_dirs = data_dirs;
  fx.outputs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)ps_tensor_free);

  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 0, 0);
  GError *local = NULL;
  if (!iface->run(&fx, ctx, &local)) {
    g_set_error(error, PS_ERROR, local ? (ps_error_code)local->code : PS_ERROR_FAILED,
                "%s: %s failed: %s", path, desc->name, local ? local->message : "(no reason)");
    g_clear_error(&local);
    g_hash_table_destroy(fx.outputs);
    return FALSE;
  }
  gboolean all = TRUE;
  size_t n = ps_safetensors_count(st);
  size_t compared = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = ps_safetensors_name(st, i);
    if (!g_str_has_prefix(name, "output.")) continue;
    const ps_tensor *want = ps_safetensors_get(st, name, error);
    if (!want) {
      g_hash_table_destroy(fx.outputs);
      return FALSE;
    }
    const ps_tensor *got = g_hash_table_lookup(fx.outputs, name + strlen("output."));
    ps_fixture_result *r = compare_output(name, want, got, &tol);
    all = all && r->passed;
    compared++;
    if (results)
      g_ptr_array_add(results, r);
    else
      ps_fixture_result_free(r);
  }
  g_hash_table_destroy(fx.outputs);
  if (compared == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: the fixture has no output.* tensors", path);
    return FALSE;
  }
  return all;
}
