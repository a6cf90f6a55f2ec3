/* test_report_browser.c — report.html renders in a browser with its images:
 * a tiny evaluation (tiny_split.c) writes the report, headless Chromium
 * dumps the DOM (the <img> tags with data: URIs, the SVG curve paths and
 * the tables must be there after parsing) and takes a screenshot (a PNG of
 * the page that is not blank). Fails with a hint when Chromium is not
 * installed (Debian package `chromium`). */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>

#include "png_io.h"
#include "ps_test.h"
#include "tiny_split.h"

static gboolean spawn(const char *dir, const char *const *argv, char **out) {
  int status = -1;
  GError *e = NULL;
  g_autofree char *err = NULL;
  if (!g_spawn_sync(dir, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, &err, &status,
                    &e)) {
    fprintf(stderr, "%s: %s\n", argv[0], e->message);
    g_clear_error(&e);
    return FALSE;
  }
  if (!g_spawn_check_wait_status(status, NULL)) {
    fprintf(stderr, "%s failed:\n%s\n", argv[0], err ? err : "");
    return FALSE;
  }
  return TRUE;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  g_autofree char *chromium = g_find_program_in_path("chromium");
  if (!chromium) chromium = g_find_program_in_path("chromium-browser");
  if (!chromium) {
    /* A missing browser fails the test (tools/install-deps.sh installs it):
     * a skipped rendering check would read as a pass. */
    fprintf(stderr, "chromium is not installed: run tools/install-deps.sh (Debian package chromium)\n");
    return 1;
  }
  GError *e = NULL;
  PS_CHECK_OK(ps_png_init(&e), e);
  g_autofree char *tmp = g_dir_make_tmp("pathseg-report-XXXXXX", &e);
  PS_CHECK_OK(tmp != NULL, e);
  if (!tmp) return ps_test_finish();
  make_tiny_split(tmp);
  const char *run_argv[] = {argv[1], "run", "tiny/eval.yaml", "--quiet", NULL};
  g_autofree char *out = NULL;
  PS_CHECK(spawn(tmp, run_argv, &out));
  const char *p = out ? strstr(out, "run finished: ") : NULL;
  PS_CHECK(p != NULL);
  if (!p) return ps_test_finish();
  g_autofree char *run = g_strstrip(g_strdup(p + strlen("run finished: ")));
  g_autofree char *html = g_build_filename(tmp, run, "report.html", NULL);
  PS_CHECK(g_file_test(html, G_FILE_TEST_IS_REGULAR));
  g_autofree char *url = g_filename_to_uri(html, NULL, NULL);
  g_autofree char *profile = g_build_filename(tmp, "profile", NULL);
  g_autofree char *udd = g_strdup_printf("--user-data-dir=%s", profile);
  g_autofree char *shot = g_build_filename(tmp, "shot.png", NULL);
  g_autofree char *shot_arg = g_strdup_printf("--screenshot=%s", shot);
  const char *common[] = {"--headless",
                          "--no-sandbox",
                          "--disable-gpu",
                          "--disable-background-networking",
                          "--disable-component-update",
                          "--no-first-run",
                          "--disable-dev-shm-usage"};
  /* the DOM after parsing */
  const char *dump[16] = {chromium};
  size_t n = 1;
  for (size_t i = 0; i < G_N_ELEMENTS(common); i++) dump[n++] = common[i];
  dump[n++] = udd;
  dump[n++] = "--dump-dom";
  dump[n++] = url;
  g_autofree char *dom = NULL;
  PS_CHECK(spawn(tmp, dump, &dom));
  PS_CHECK(dom && strstr(dom, "<img") && strstr(dom, "src=\"data:image/png;base64,"));
  PS_CHECK(dom && strstr(dom, "<svg") && strstr(dom, "<path class=\"line\" d=\"M"));
  PS_CHECK(dom && strstr(dom, "Table 2") && strstr(dom, "<table>"));
  /* a screenshot that is not blank */
  const char *snap[16] = {chromium};
  n = 1;
  for (size_t i = 0; i < G_N_ELEMENTS(common); i++) snap[n++] = common[i];
  snap[n++] = udd;
  snap[n++] = "--window-size=1000,800";
  snap[n++] = shot_arg;
  snap[n++] = url;
  PS_CHECK(spawn(tmp, snap, NULL));
  int w = 0, h = 0;
  g_autofree uint8_t *px = ps_png_read(shot, 3, &w, &h, &e);
  PS_CHECK_OK(px != NULL, e);
  if (px) {
    int64_t distinct = 0;
    for (int64_t i = 3; i < (int64_t)w * h * 3; i += 3) distinct += memcmp(px + i, px, 3) != 0;
    PS_CHECK_MSG(w == 1000 && distinct > 1000,
                 "screenshot %dx%d, %" G_GINT64_FORMAT " pixels differ from the first", w, h,
                 distinct);
  }
  if (!g_getenv("PATHSEG_KEEP_TMP")) {
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  } else {
    fprintf(stderr, "kept %s\n", tmp);
  }
  return ps_test_finish();
}
