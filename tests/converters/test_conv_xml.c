/* test_conv_xml.c — the annotation parsers and the polygon rasteriser:
 * ASAP groups (positive, carved out, ignored), Order, Dot annotations,
 * decimal commas, errors naming file:line; ImageScope regions, microns per
 * pixel, NegativeROA holes, instance ids in document order; and the
 * scanline rasteriser against point-in-polygon at every pixel centre for
 * random (also self-intersecting) polygons, offsets and downsamples. */
#include <math.h>
#include <string.h>

#include "asap_xml.h"
#include "conv_test_util.h"
#include "imagescope_xml.h"
#include "ps_test.h"

static void test_asap_parse(void) {
  const char *xml =
      "\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<ASAP_Annotations>\n<Annotations>\n"
      "<Annotation Name=\"A\" Type=\"Polygon\" PartOfGroup=\"_0\"><Coordinates>"
      "<Coordinate Order=\"2\" X=\"30\" Y=\"30\"/><Coordinate Order=\"0\" X=\"10\" Y=\"10\"/>"
      "<Coordinate Order=\"1\" X=\"30,5\" Y=\"10\"/></Coordinates></Annotation>\n"
      "<Annotation Name=\"B\" Type=\"Spline\" PartOfGroup=\"Exclusion\"><Coordinates>"
      "<Coordinate Order=\"0\" X=\"1\" Y=\"1\"/><Coordinate Order=\"1\" X=\"2\" Y=\"1\"/>"
      "<Coordinate Order=\"2\" X=\"2\" Y=\"2\"/></Coordinates></Annotation>\n"
      "<Annotation Name=\"C\" Type=\"Dot\" PartOfGroup=\"_0\"><Coordinates><Coordinate Order=\"0\" X=\"5\" Y=\"5\"/></Coordinates></Annotation>\n"
      "<Annotation Name=\"D\" Type=\"Polygon\" PartOfGroup=\"metastases?\"><Coordinates>"
      "<Coordinate Order=\"0\" X=\"100\" Y=\"1\"/><Coordinate Order=\"1\" X=\"200\" Y=\"1\"/>"
      "<Coordinate Order=\"2\" X=\"200\" Y=\"300\"/></Coordinates></Annotation>\n"
      "</Annotations><AnnotationGroups><Group Name=\"_0\" PartOfGroup=\"None\" Color=\"#F00\"><Attributes/></Group></AnnotationGroups>\n"
      "</ASAP_Annotations>\n";
  GError *error = NULL;
  g_autoptr(ps_asap_annotations) a = ps_asap_parse(xml, -1, "t.xml", &error);
  PS_CHECK_OK(a != NULL, error);
  if (!a) return;
  PS_CHECK(a->polygons->len == 3 && a->dropped == 1);
  const ps_asap_polygon *p = g_ptr_array_index(a->polygons, 0);
  PS_CHECK(p->n == 3 && p->sign == 1 && p->xy[0] == 10 && p->xy[2] == 30.5 && p->xy[4] == 30 && strcmp(p->name, "A") == 0);
  PS_CHECK(((ps_asap_polygon *)g_ptr_array_index(a->polygons, 1))->sign == -1);
  PS_CHECK(((ps_asap_polygon *)g_ptr_array_index(a->polygons, 2))->sign == 0);
  double box[4];
  PS_CHECK(ps_asap_bounds(a, 1, box) && box[0] == 10 && box[1] == 10 && box[2] == 30.5 && box[3] == 30);
  PS_CHECK(ps_asap_bounds(a, 0, box) && box[2] == 200 && box[3] == 300);
  PS_CHECK(ps_asap_group_sign("_1") == 1 && ps_asap_group_sign("Tumor") == 1 && ps_asap_group_sign("_2") == -1 &&
           ps_asap_group_sign("None") == 0 && ps_asap_group_sign(NULL) == 0);

  PS_CHECK_FAILS_WITH(ps_asap_parse("<A><B></A>", -1, "bad.xml", &error) != NULL, error, "bad.xml");
  PS_CHECK_FAILS_WITH(ps_asap_parse("<ASAP_Annotations>\n<Annotations>\n<Annotation><Coordinates>\n"
                                    "<Coordinate Order=\"0\" X=\"1e999\" Y=\"1\"/>", -1, "inf.xml", &error) != NULL,
                      error, "inf.xml:4:");
  PS_CHECK_FAILS_WITH(ps_asap_read("/nonexistent/x.xml", &error) != NULL, error, "/nonexistent/x.xml");
}

static void test_imagescope(void) {
  const char *xml =
      "<Annotations MicronsPerPixel=\"0.252500\"><Annotation Id=\"1\"><Regions>"
      "<RegionAttributeHeaders><AttributeHeader Id=\"9999\" Name=\"Region\"/></RegionAttributeHeaders>"
      "<Region Id=\"1\" NegativeROA=\"0\"><Attributes/><Vertices><Vertex X=\"0\" Y=\"0\"/><Vertex X=\"10\" Y=\"0\"/>"
      "<Vertex X=\"10\" Y=\"10\"/><Vertex X=\"0\" Y=\"10\"/></Vertices></Region>"
      "<Region Id=\"2\" NegativeROA=\"0\"><Vertices><Vertex X=\"5\" Y=\"5\"/><Vertex X=\"15\" Y=\"5\"/>"
      "<Vertex X=\"15\" Y=\"15\"/><Vertex X=\"5\" Y=\"15\"/></Vertices></Region>"
      "<Region Id=\"3\" NegativeROA=\"1\"><Vertices><Vertex X=\"1\" Y=\"1\"/><Vertex X=\"3\" Y=\"1\"/>"
      "<Vertex X=\"3\" Y=\"3\"/><Vertex X=\"1\" Y=\"3\"/></Vertices></Region>"
      "<Region Id=\"4\"><Vertices><Vertex X=\"1\" Y=\"1\"/></Vertices></Region>"
      "<Region Id=\"5\"><Vertices><Vertex X=\"100\" Y=\"100\"/><Vertex X=\"110\" Y=\"100\"/><Vertex X=\"110\" Y=\"110\"/></Vertices></Region>"
      "</Regions></Annotation></Annotations>";
  GError *error = NULL;
  g_autoptr(ps_imagescope) s = ps_imagescope_parse(xml, -1, "m.xml", &error);
  PS_CHECK_OK(s != NULL, error);
  if (!s) return;
  PS_CHECK(s->regions->len == 4 && s->dropped == 1);
  PS_CHECK_NEAR(s->microns_per_pixel, 0.2525, 1e-12);
  int32_t lab[20 * 20];
  int outside = -1;
  int drawn = ps_imagescope_rasterise(s, lab, 20, 20, &outside);
  PS_CHECK(drawn == 3 && outside == 1);
  int wrong = 0;
  for (int y = 0; y < 20; y++)
    for (int x = 0; x < 20; x++) {
      int want = 0;
      if (x < 10 && y < 10) want = 1;
      if (x >= 5 && x < 15 && y >= 5 && y < 15) want = 2; /* later regions overwrite */
      if (x >= 1 && x < 3 && y >= 1 && y < 3) want = 0;    /* the hole */
      wrong += lab[y * 20 + x] != want;
    }
  PS_CHECK_MSG(wrong == 0, "%d label pixels wrong", wrong);
  PS_CHECK_FAILS_WITH(ps_imagescope_parse("<Annotations><Region><Vertices><Vertex X=\"a\" Y=\"1\"/>", -1, "v.xml", &error) != NULL,
                      error, "v.xml:1: <Vertex> needs numeric X and Y");
}

static uint32_t rng_state = 12345;
static double urand(void) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return (rng_state >> 8) / 16777216.0;
}

static void test_raster_random(void) {
  int mismatches = 0, cases = 0;
  int64_t positives = 0;
  for (int t = 0; t < 200; t++) {
    const int W = 17 + t % 23, H = 11 + t % 29;
    double ds = t % 3 == 0 ? 1.0 : t % 3 == 1 ? 2.0 : 0.75 + urand() * 3;
    double x0 = (urand() - 0.3) * 50, y0 = (urand() - 0.3) * 50;
    ps_asap_annotations a = {g_ptr_array_new(), 0};
    ps_asap_polygon polys[3];
    double xy[3][2 * 9];
    for (int k = 0; k < 3; k++) {
      int n = 3 + (int)(urand() * 7);
      for (int i = 0; i < n; i++) {
        xy[k][2 * i] = x0 + (urand() * 1.2 - 0.1) * W * ds;
        xy[k][2 * i + 1] = y0 + (urand() * 1.2 - 0.1) * H * ds;
        if (t % 5 == 0) xy[k][2 * i] = floor(xy[k][2 * i]), xy[k][2 * i + 1] = floor(xy[k][2 * i + 1]);
      }
      polys[k] = (ps_asap_polygon){NULL, NULL, NULL, n, xy[k], k == 2 ? -1 : 1};
      g_ptr_array_add(a.polygons, &polys[k]);
    }
    g_autofree uint8_t *m = g_malloc((size_t)W * H);
    int64_t on = ps_asap_rasterise(&a, m, W, H, x0, y0, ds);
    int64_t count = 0;
    for (int i = 0; i < H; i++)
      for (int j = 0; j < W; j++) {
        double x = x0 + (j + 0.5) * ds, y = y0 + (i + 0.5) * ds;
        gboolean in = (tu_inside(xy[0], polys[0].n, x, y) || tu_inside(xy[1], polys[1].n, x, y)) &&
                      !tu_inside(xy[2], polys[2].n, x, y);
        mismatches += in != (m[(size_t)i * W + j] != 0);
        count += in;
      }
    PS_CHECK(on == count);
    positives += count;
    cases++;
    g_ptr_array_unref(a.polygons);
  }
  PS_CHECK_MSG(mismatches == 0, "%d pixels differ from point-in-polygon over %d cases", mismatches, cases);
  PS_CHECK(positives > 10000);
}

/* Coordinates far outside the raster are clipped, not cast out of range. */
static void test_raster_far(void) {
  uint8_t m[6 * 4];
  int wrong = 0;
  double huge[8] = {-1e12, -1e12, 1e12, -1e12, 1e12, 1e12, -1e12, 1e12};
  ps_asap_polygon p = {NULL, NULL, NULL, 4, huge, 1};
  GPtrArray *list = g_ptr_array_new();
  g_ptr_array_add(list, &p);
  ps_asap_annotations a = {list, 0};
  PS_CHECK(ps_asap_rasterise(&a, m, 6, 4, 1e9, -1e9, 4) == 24);
  double away[6] = {1e15, 1e15, 2e15, 1e15, 2e15, 3e15};
  p.xy = away;
  p.n = 3;
  PS_CHECK(ps_asap_rasterise(&a, m, 6, 4, 0, 0, 1) == 0);
  double nan_poly[6] = {0, 0, NAN, 5, 5, 5};
  p.xy = nan_poly;
  PS_CHECK(ps_asap_rasterise(&a, m, 6, 4, 0, 0, 1) == 0);
  for (int i = 0; i < 24; i++) wrong += m[i] != 0;
  PS_CHECK(wrong == 0);
  g_ptr_array_unref(list);
}

int main(void) {
  test_raster_far();
  test_asap_parse();
  test_imagescope();
  test_raster_random();
  return ps_test_finish();
}
