/* tiny_split.c — a 3-row manifest (8x4 tiles, masks, two sources) with
 * ready-made predictions and answers, and a pipeline that scores them with
 * stage.evaluate and writes report.html: the hand-checkable evaluation of
 * test_evaluate and the page test_report_browser opens. */
#include <glib.h>
#include <glib/gstdio.h>

#include "png_io.h"
#include "ps_test.h"
#include "tiny_split.h"

/* A 3-row manifest with masks and ready-made predictions, scored by hand. */
void make_tiny_split(const char *tmp) {
  g_autofree char *d = g_build_filename(tmp, "tiny", NULL);
  g_autofree char *pd = g_build_filename(tmp, "tiny", "pred", NULL);
  g_mkdir_with_parents(pd, 0755);
  const int W = 8, H = 4;
  uint8_t img[8 * 4 * 3];
  for (int i = 0; i < W * H * 3; i++) img[i] = (uint8_t)(i * 7);
  /* gt and pred per row as strings of 32 pixels ('1' inside) */
  const char *gt[3] = {"11110000111100000000000000000000", "00000000000000000000000000000000",
                       "11111111111111110000000000000000"};
  const char *pr[3] = {"11000000110000001100000000000000", NULL,
                       "11111111000000000000000000000000"};
  const char *src[3] = {"alpha", "alpha", "beta"};
  GString *man = g_string_new(NULL);
  GError *e = NULL;
  for (int r = 0; r < 3; r++) {
    uint8_t m[32], p[32];
    for (int k = 0; k < 32; k++) m[k] = gt[r][k] == '1' ? 255 : 0;
    g_autofree char *ip = g_strdup_printf("%s/img%d.png", d, r),
                    *mp = g_strdup_printf("%s/mask%d.png", d, r);
    PS_CHECK_OK(ps_png_write(ip, img, W, H, 3, &e), e);
    PS_CHECK_OK(ps_png_write(mp, m, W, H, 1, &e), e);
    g_autofree char *reason =
        g_strdup_printf("The target is region %d. The segmentation is <SEG>.", r);
    if (pr[r]) {
      for (int k = 0; k < 32; k++) p[k] = pr[r][k] == '1' ? 255 : 0;
      g_autofree char *pp = g_strdup_printf("%s/img%d.png", pd, r);
      PS_CHECK_OK(ps_png_write(pp, p, W, H, 1, &e), e);
    }
    g_autofree char *tp = g_strdup_printf("%s/img%d.txt", pd, r);
    g_file_set_contents(tp, reason, -1, NULL);
    g_string_append_printf(
        man,
        "{\"image\":\"img%d.png\",\"mask\":\"mask%d.png\",\"query\":\"Find region %d.\","
        "\"reasoning\":\"%s\",\"source\":\"%s\",\"group\":\"p%d\",\"target\":\"t\","
        "\"split\":\"test\",\"width\":8,\"height\":4}\n",
        r, r, r, reason, src[r], r);
  }
  g_autofree char *mpath = g_strdup_printf("%s/manifest.jsonl", d);
  g_file_set_contents(mpath, man->str, -1, NULL);
  g_string_free(man, TRUE);
  /* the "model" whose predictions these are: a run directory with training curves */
  g_autofree char *fr = g_build_filename(tmp, "tiny", "fakerun", NULL);
  g_mkdir_with_parents(fr, 0755);
  g_autofree char *mj = g_build_filename(fr, "metrics.jsonl", NULL);
  g_file_set_contents(mj,
                      "{\"stage\":\"sft\",\"step\":1,\"loss\":2.5,\"grad_norm\":1.0}\n"
                      "{\"stage\":\"sft\",\"step\":2,\"loss\":2.0,\"grad_norm\":3.0}\n"
                      "{\"stage\":\"sft\",\"step\":2,\"val_seg_loss.dice\":0.25}\n"
                      "{\"stage\":\"sft\",\"step\":3,\"loss\":1.2,\"grad_norm\":2.0}\n"
                      "{\"stage\":\"sft\",\"step\":4,\"val_seg_loss.dice\":0.5}\n",
                      -1, NULL);
  g_autofree char *yaml = g_strdup_printf(
      "name: tinyeval\nrun_dir: runs\nstages:\n  evaluate:\n    plugin: stage.evaluate\n"
      "    manifest: %s\n    predictions: %s\n    model: %s\n    splits: [test]\n    set: tiny\n"
      "  report:\n    plugin: stage.report\n",
      mpath, pd, fr);
  g_autofree char *yp = g_build_filename(tmp, "tiny", "eval.yaml", NULL);
  g_file_set_contents(yp, yaml, -1, NULL);
}
