/* test_annotator_http.c — annotator.http against a local stub server
 * (stub_server.h) that this test starts: the chain comes from the reply and
 * the request carries the model, descriptors, seed and API key; a reply
 * without <SEG> gets one (or fails with missing_seg: error); HTTP 500 is
 * retried and named, 401 is not retried, malformed JSON, an error object,
 * a cut-off reply, a slow reply beyond timeout_s and a refused connection
 * are errors naming the URL; fallback: template gives the template chain.
 * Then stage.build_benchmark with `annotator:` naming an http instance: the
 * manifest's chains are the stub's, one request per tile, and items the
 * endpoint fails on are skipped (and a build where all fail writes no
 * manifest). */
#include <glib/gstdio.h>
#include <pathseg/annotator.h>
#include <pathseg/host.h>
#include <pathseg/run.h>

#include "annotate.h"
#include "ps_test.h"
#include "stub_server.h"

static ps_registry *reg;
static stub_server *stub;

static ps_image_descriptors desc = {0.25, 3, 900, 1.8, 0.2, 0.25, {200, 120, 180}, {230, 220, 230},
                                    "upper left", "extensive", "eosinophilic (pink)", "slightly irregular"};
static ps_annotator_item item = {sizeof(ps_annotator_item), "images/000001.png", "Where are the glands?", "gland",
                                 TRUE, "tubular", "he_classic", "colonic", "synthetic", 20, 128, 128, &desc, 4242};

static char *url_for(const char *mode) { return g_strdup_printf("http://127.0.0.1:%d/%s", stub_port(stub), mode); }

static ps_component *http(const char *mode, const char *extra, GError **error) {
  const ps_component_desc *d = ps_registry_find(reg, "annotator.http");
  if (!d) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "annotator.http is not registered");
    return NULL;
  }
  g_autofree char *url = url_for(mode);
  g_autofree char *yaml =
      g_strdup_printf("{url: \"%s\", model: stub-model, retry_delay_s: 0.01%s%s}", url,
                      strstr(extra, "timeout_s") ? "" : ", timeout_s: 5", extra);
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "test", error);
  if (!cfg) return NULL;
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
  return ps_component_new(d, cfg, "chains", ctx, error);
}

/* The chain for `item` from a fresh instance in `mode`; NULL with error. */
static char *annotate(const char *mode, const char *extra, GError **error) {
  g_autoptr(ps_component) c = http(mode, extra, error);
  if (!c) return NULL;
  const ps_annotator_iface *a = ps_component_capability(c, "annotator");
  if (!a) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "no annotator capability");
    return NULL;
  }
  return a->annotate(ps_component_self(c), &item, error);
}

static void test_component(void) {
  GError *error = NULL;
  g_setenv("PS_TEST_STUB_KEY", "sekret-123", TRUE);
  g_autofree char *ok = annotate("ok", ", api_key_env: PS_TEST_STUB_KEY", &error);
  PS_CHECK_OK(ok != NULL, error);
  PS_CHECK_MSG(ok && strcmp(ok, "STUB seed=4242: the tile shows the target as described. So the mask is <SEG>.") == 0,
               "%s", ok);
  g_autofree char *body = stub_last_body(stub);
  g_autofree char *auth = stub_last_auth(stub);
  PS_CHECK(strstr(body, "\"model\":\"stub-model\"") && strstr(body, "\"seed\":4242"));
  PS_CHECK(strstr(body, "Question: Where are the glands?") && strstr(body, "Location: upper left"));
  PS_CHECK(strstr(body, "\"role\":\"system\"") && strstr(body, "\"max_tokens\":400"));
  PS_CHECK_MSG(strcmp(auth, "Bearer sekret-123") == 0, "auth '%s'", auth);
  /* The key is never in the request body, and without api_key_env there is no header. */
  PS_CHECK(!strstr(body, "sekret"));
  g_free(annotate("ok", "", &error));
  g_clear_error(&error);
  g_autofree char *auth2 = stub_last_auth(stub);
  PS_CHECK(strcmp(auth2, "") == 0);

  /* api_key_env naming an unset variable fails at create, naming it. */
  g_unsetenv("PS_TEST_NO_SUCH_KEY");
  ps_component *nokey = http("ok", ", api_key_env: PS_TEST_NO_SUCH_KEY", &error);
  PS_CHECK(!nokey && error && strstr(error->message, "PS_TEST_NO_SUCH_KEY"));
  g_clear_error(&error);

  /* No <SEG>: appended, or an error with missing_seg: error. */
  g_autofree char *noseg = annotate("noseg", "", &error);
  PS_CHECK_OK(noseg != NULL, error);
  PS_CHECK(noseg && strcmp(noseg, "The glands are crowded and irregular. <SEG>") == 0);
  g_autofree char *url_noseg = url_for("noseg");
  PS_CHECK_FAILS_WITH(annotate("noseg", ", missing_seg: error, retries: 0", &error) != NULL, error, "no <SEG>");
  g_autofree char *twoseg = annotate("twoseg", "", &error);
  PS_CHECK_OK(twoseg != NULL, error);
  PS_CHECK_MSG(twoseg && strcmp(twoseg, "First then the glands: <SEG>.") == 0, "%s", twoseg);

  /* HTTP 500: retried `retries` times, then an error naming the URL and the status. */
  int before = stub_count(stub, "e500");
  char *e500 = annotate("e500", ", retries: 2", &error);
  PS_CHECK(!e500 && error && strstr(error->message, "HTTP 500") && strstr(error->message, "/e500/v1/chat/completions") &&
           strstr(error->message, "3 attempts"));
  if (error) printf("e500: %s\n", error->message);
  g_clear_error(&error);
  PS_CHECK(stub_count(stub, "e500") - before == 3);
  /* A transient 500 is survived by a retry. */
  g_autofree char *flaky = annotate("flaky", ", retries: 1", &error);
  PS_CHECK_OK(flaky && g_str_has_prefix(flaky, "STUB seed=4242"), error);
  PS_CHECK(stub_count(stub, "flaky") == 2);
  /* 401 is not retried. */
  PS_CHECK_FAILS_WITH(annotate("e401", ", retries: 3", &error) != NULL, error, "HTTP 401");
  PS_CHECK(stub_count(stub, "e401") == 1);
  /* Malformed JSON, an error object, a cut-off reply. */
  PS_CHECK_FAILS_WITH(annotate("badjson", ", retries: 1", &error) != NULL, error, "/badjson/v1/chat/completions: reply is not JSON");
  PS_CHECK(stub_count(stub, "badjson") == 2);
  PS_CHECK_FAILS_WITH(annotate("errobj", ", retries: 0", &error) != NULL, error, "model not loaded");
  PS_CHECK_FAILS_WITH(annotate("length", ", retries: 0", &error) != NULL, error, "max_tokens");
  /* A reply slower than timeout_s. */
  char *slow = annotate("slow", ", retries: 0, timeout_s: 0.3", &error);
  PS_CHECK(!slow && error && strstr(error->message, "timeout_s") && strstr(error->message, "/slow/v1/chat/completions"));
  if (error) printf("slow: %s\n", error->message);
  g_clear_error(&error);
  /* Nobody listening. */
  const ps_component_desc *d = ps_registry_find(reg, "annotator.http");
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, "{url: \"http://127.0.0.1:1\", retries: 0, timeout_s: 2}",
                                             "test", &error);
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
  g_autoptr(ps_component) refused = cfg ? ps_component_new(d, cfg, "x", ctx, &error) : NULL;
  PS_CHECK_OK(refused != NULL, error);
  if (refused) {
    const ps_annotator_iface *a = ps_component_capability(refused, "annotator");
    PS_CHECK_FAILS_WITH(a->annotate(ps_component_self(refused), &item, &error) != NULL, error,
                        "POST http://127.0.0.1:1/v1/chat/completions");
  }
  /* A bad URL is refused at create. */
  g_autoptr(ps_config) bad_url = ps_config_parse(d->config, "{url: \"ftp://x\"}", "test", &error);
  PS_CHECK_FAILS_WITH(bad_url && ps_component_new(d, bad_url, "x", ctx, &error) != NULL, error, "ftp://x");

  /* fallback: template gives exactly the template chain of the item. */
  g_autofree char *fb = annotate("e500", ", retries: 0, fallback: template", &error);
  g_autofree char *tmpl = ps_template_chain(&item);
  PS_CHECK_OK(fb != NULL, error);
  PS_CHECK(fb && strcmp(fb, tmpl) == 0);
}

static gboolean run_build(const char *tmp, const char *mode, const char *name, GError **error) {
  g_autofree char *url = url_for(mode);
  g_autofree char *yaml = g_strdup_printf(
      "name: annot_http_%s\nseed: 1\n"
      "components:\n  chains:\n    plugin: annotator.http\n"
      "    with: {url: \"%s\", model: stub-model, retries: 0, timeout_s: 5}\n"
      "stages:\n  build:\n    plugin: stage.build_benchmark\n    out_dir: %s/%s\n    annotator: chains\n"
      "    tiles: 6\n    zeroshot_tiles: 0\n    patients: 2\n    tile_size: 64\n",
      name, url, tmp, name);
  g_autofree char *path = g_strdup_printf("%s/%s.yaml", tmp, name);
  g_file_set_contents(path, yaml, -1, NULL);
  g_autofree char *runs = g_strdup_printf("run_dir=%s/runs", tmp);
  const char *sets[] = {runs, NULL};
  g_autoptr(ps_pipeline) p = ps_pipeline_load(path, sets, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.quiet = TRUE};
  return ps_run_execute(p, reg, &opts, NULL, error);
}

static void test_build(const char *tmp) {
  GError *error = NULL;
  int before = stub_count(stub, "ok");
  PS_CHECK_OK(run_build(tmp, "ok", "ok", &error), error);
  PS_CHECK(stub_count(stub, "ok") - before == 6);
  g_autofree char *manifest = g_build_filename(tmp, "ok", "manifest.jsonl", NULL);
  g_autofree char *text = NULL;
  PS_CHECK(g_file_get_contents(manifest, &text, NULL, NULL));
  g_auto(GStrv) lines = g_strsplit(text ? g_strstrip(text) : "", "\n", -1);
  PS_CHECK(g_strv_length(lines) == 6);
  g_autoptr(GHashTable) seeds = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  for (size_t i = 0; lines[i]; i++) {
    const char *r = strstr(lines[i], "\"reasoning\":\"STUB seed=");
    PS_CHECK_MSG(r && strstr(lines[i], "So the mask is <SEG>.\""), "%s", lines[i]);
    if (r) g_hash_table_add(seeds, g_strndup(r + 12, strcspn(r + 12, ":")));
  }
  /* Each tile sent its own seed. */
  PS_CHECK(g_hash_table_size(seeds) == 6);

  /* Every second request fails: those tiles are skipped, the rest kept. */
  PS_CHECK_OK(run_build(tmp, "alt", "alt", &error), error);
  g_autofree char *alt = g_build_filename(tmp, "alt", "manifest.jsonl", NULL);
  g_autofree char *alt_text = NULL;
  PS_CHECK(g_file_get_contents(alt, &alt_text, NULL, NULL));
  g_auto(GStrv) alt_lines = g_strsplit(alt_text ? g_strstrip(alt_text) : "", "\n", -1);
  PS_CHECK_MSG(g_strv_length(alt_lines) == 3, "%u rows", g_strv_length(alt_lines));
  /* The skips are in the run's log with the reason. */
  g_autofree char *cmd = g_strdup_printf("grep -q 'skipped images/.*HTTP 500' %s/runs/annot_http_alt-*/log.txt", tmp);
  PS_CHECK(system(cmd) == 0);

  /* All fail: the stage fails and writes no manifest. */
  PS_CHECK_FAILS_WITH(run_build(tmp, "e500", "none", &error), error, "no usable tiles");
  g_autofree char *none = g_build_filename(tmp, "none", "manifest.jsonl", NULL);
  PS_CHECK(!g_file_test(none, G_FILE_TEST_EXISTS));

  /* `annotator:` naming nothing, or a component that is not an annotator. */
  g_autofree char *bad = g_strdup_printf("%s/bad.yaml", tmp);
  g_autofree char *yaml = g_strdup_printf(
      "name: bad\nstages:\n  build:\n    plugin: stage.build_benchmark\n    out_dir: %s/bad\n"
      "    annotator: nobody\n    tiles: 2\n    zeroshot_tiles: 0\n    tile_size: 64\n", tmp);
  g_file_set_contents(bad, yaml, -1, NULL);
  g_autofree char *runs = g_strdup_printf("run_dir=%s/runs", tmp);
  const char *sets[] = {runs, NULL};
  g_autoptr(ps_pipeline) p = ps_pipeline_load(bad, sets, ps_registry_lookup, reg, &error);
  PS_CHECK_OK(p != NULL, error);
  ps_run_options opts = {.quiet = TRUE};
  PS_CHECK_FAILS_WITH(p && ps_run_execute(p, reg, &opts, NULL, &error), error, "no component 'nobody'");
}

int main(void) {
  GError *error = NULL;
  /* The stub is local: a proxy from the environment must not be asked. */
  const char *proxies[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
  for (size_t i = 0; i < G_N_ELEMENTS(proxies); i++) g_unsetenv(proxies[i]);
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  stub = stub_start(&error);
  PS_CHECK_OK(stub != NULL, error);
  if (!stub) return ps_test_finish();
  g_autofree char *tmp = g_dir_make_tmp("ps-annot-http-XXXXXX", NULL);
  test_component();
  test_build(tmp);
  stub_stop(stub);
  ps_registry_free(reg);
  g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
  if (ps_test_failed_ == 0 && system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  return ps_test_finish();
}
