/* randstainna_fixture.c — the "fixture" capability of augmenter.randstainna:
 * runs the `randstainna.transform` fixtures (official RandStainNA on real
 * crops, the drawn target mean/std given in the config) and the
 * `cv2.cvtColor.lab` fixture (OpenCV 8-bit and float Lab) through our code,
 * producing every `output.*` tensor the file has. */
#include <json-glib/json-glib.h>
#include <string.h>

#include "lab_opencv.h"
#include "randstainna.h"
#include "randstainna_plugin.h"

/* A fixture image: dtype and [..., 3]. */
static const ps_tensor *get_image(const ps_fixture *fx, const char *name, ps_dtype dtype,
                                  GError **error) {
  const ps_tensor *t = ps_fixture_get(fx, name, error);
  if (!t) return NULL;
  if (t->dtype != dtype || t->ndim < 1 || t->shape[t->ndim - 1] != 3) {
    char buf[96];
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "fixture tensor %s: expected %s [..., 3], got %s %s", name, ps_dtype_name(dtype),
                ps_dtype_name(t->dtype), ps_shape_format(t, buf, sizeof buf));
    return NULL;
  }
  return t;
}

static size_t pixels(const ps_tensor *t) {
  return (size_t)(ps_tensor_numel(t) / 3);
}

static ps_tensor *new_like(const ps_tensor *t, ps_dtype dtype, GError **error) {
  return ps_tensor_new(dtype, t->ndim, t->shape, error);
}

static gboolean wants(const ps_fixture *fx, const char *output) {
  g_autofree char *full = g_strconcat("output.", output, NULL);
  return ps_fixture_has(fx, full);
}

/* Reads config[key] as an array of 3 numbers. */
static gboolean config_vec3(JsonObject *cfg, const char *key, double out[3], GError **error) {
  JsonNode *node = json_object_get_member(cfg, key);
  JsonArray *arr = node && JSON_NODE_HOLDS_ARRAY(node) ? json_node_get_array(node) : NULL;
  if (!arr || json_array_get_length(arr) != 3) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "randstainna fixture: config key '%s' must be an array of 3 numbers", key);
    return FALSE;
  }
  for (guint i = 0; i < 3; i++) out[i] = json_array_get_double_element(arr, i);
  return TRUE;
}

static gboolean run_transform(ps_fixture *fx, GError **error) {
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_data(parser, ps_fixture_config(fx), -1, error)) return FALSE;
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "randstainna fixture: config is not an object");
    return FALSE;
  }
  JsonObject *cfg = json_node_get_object(root);
  double tar_mean[3], tar_std[3];
  if (!config_vec3(cfg, "target_mean_f64", tar_mean, error) ||
      !config_vec3(cfg, "target_std_f64", tar_std, error))
    return FALSE;
  const ps_tensor *img = get_image(fx, "input.image_rgb", PS_DTYPE_U8, error);
  if (!img) return FALSE;
  size_t n = pixels(img);
  g_autoptr(ps_tensor) lab = new_like(img, PS_DTYPE_U8, error);
  g_autoptr(ps_tensor) out = new_like(img, PS_DTYPE_U8, error);
  if (!lab || !out) return FALSE;
  ps_lab_from_rgb_u8(img->data, lab->data, n, PS_LAB_RGB);
  g_autofree uint8_t *scratch = g_malloc(n * 3);
  if (!ps_stain_augment_rgb(img->data, n, NULL, FALSE, tar_mean, tar_std, 1e-4, scratch,
                            out->data)) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "randstainna fixture: empty input image");
    return FALSE;
  }
  if (wants(fx, "lab_float")) {
    ps_tensor *rgbf = new_like(img, PS_DTYPE_F32, error);
    if (!rgbf) return FALSE;
    const uint8_t *s = img->data;
    float *f = rgbf->data;
    /* np.float32(img) / 255 in float32, as the reference builds it */
    for (size_t i = 0; i < n * 3; i++) f[i] = (float)s[i] / 255.0f;
    ps_lab_from_rgb_f32(f, f, n, PS_LAB_RGB);
    ps_fixture_put(fx, "lab_float", rgbf);
  }
  if (wants(fx, "lab")) ps_fixture_put(fx, "lab", g_steal_pointer(&lab));
  if (wants(fx, "image_rgb")) ps_fixture_put(fx, "image_rgb", g_steal_pointer(&out));
  return TRUE;
}

static gboolean run_lab(ps_fixture *fx, GError **error) {
  if (wants(fx, "lab_from_bgr_u8") || wants(fx, "bgr_roundtrip_u8")) {
    const ps_tensor *bgr = get_image(fx, "input.bgr_u8", PS_DTYPE_U8, error);
    if (!bgr) return FALSE;
    ps_tensor *lab = new_like(bgr, PS_DTYPE_U8, error);
    if (!lab) return FALSE;
    ps_lab_from_rgb_u8(bgr->data, lab->data, pixels(bgr), PS_LAB_BGR);
    if (wants(fx, "bgr_roundtrip_u8")) {
      ps_tensor *rt = new_like(bgr, PS_DTYPE_U8, error);
      if (!rt) {
        ps_tensor_free(lab);
        return FALSE;
      }
      ps_lab_to_rgb_u8(lab->data, rt->data, pixels(bgr), PS_LAB_BGR);
      ps_fixture_put(fx, "bgr_roundtrip_u8", rt);
    }
    if (wants(fx, "lab_from_bgr_u8"))
      ps_fixture_put(fx, "lab_from_bgr_u8", lab);
    else
      ps_tensor_free(lab);
  }
  if (wants(fx, "bgr_from_lab_u8")) {
    const ps_tensor *lab = get_image(fx, "input.lab_u8", PS_DTYPE_U8, error);
    if (!lab) return FALSE;
    ps_tensor *bgr = new_like(lab, PS_DTYPE_U8, error);
    if (!bgr) return FALSE;
    ps_lab_to_rgb_u8(lab->data, bgr->data, pixels(lab), PS_LAB_BGR);
    ps_fixture_put(fx, "bgr_from_lab_u8", bgr);
  }
  if (wants(fx, "lab_from_bgr_f32")) {
    const ps_tensor *bgr = get_image(fx, "input.bgr_f32", PS_DTYPE_F32, error);
    if (!bgr) return FALSE;
    ps_tensor *lab = new_like(bgr, PS_DTYPE_F32, error);
    if (!lab) return FALSE;
    ps_lab_from_rgb_f32(bgr->data, lab->data, pixels(bgr), PS_LAB_BGR);
    ps_fixture_put(fx, "lab_from_bgr_f32", lab);
  }
  if (wants(fx, "bgr_from_lab_f32")) {
    const ps_tensor *lab = get_image(fx, "input.lab_f32", PS_DTYPE_F32, error);
    if (!lab) return FALSE;
    ps_tensor *bgr = new_like(lab, PS_DTYPE_F32, error);
    if (!bgr) return FALSE;
    ps_lab_to_rgb_f32(lab->data, bgr->data, pixels(lab), PS_LAB_BGR);
    ps_fixture_put(fx, "bgr_from_lab_f32", bgr);
  }
  return TRUE;
}

static gboolean fixture_run(ps_fixture *fx, ps_context *ctx, GError **error) {
  const char *component = ps_fixture_component(fx);
  if (g_strcmp0(component, "randstainna.transform") == 0) return run_transform(fx, error);
  if (g_strcmp0(component, "cv2.cvtColor.lab") == 0) return run_lab(fx, error);
  g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
              "augmenter.randstainna cannot run fixture component '%s'",
              component ? component : "(none)");
  return FALSE;
}

static const char *const fixture_components[] = {"randstainna.transform", "cv2.cvtColor.lab", NULL};

const ps_fixture_iface ps_randstainna_fixture_iface = {
    .struct_size = sizeof(ps_fixture_iface),
    .components = fixture_components,
    .run = fixture_run,
};
