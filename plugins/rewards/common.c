/* common.c — the spatial vocabulary and helpers shared by the rewards. */
#include <string.h>

#include "rewards.h"

double ps_reward_weight(void *self) { return ((reward_base *)self)->weight; }

typedef struct {
  const char *words;
  double x, y;
} place;

/* Longer phrases first, so "upper left" wins over "left". */
static const place places[] = {
    {"upper left", 1 / 6.0, 1 / 6.0},   {"top left", 1 / 6.0, 1 / 6.0},
    {"upper right", 5 / 6.0, 1 / 6.0},  {"top right", 5 / 6.0, 1 / 6.0},
    {"lower left", 1 / 6.0, 5 / 6.0},   {"bottom left", 1 / 6.0, 5 / 6.0},
    {"lower right", 5 / 6.0, 5 / 6.0},  {"bottom right", 5 / 6.0, 5 / 6.0},
    {"upper centre", 0.5, 1 / 6.0},     {"upper center", 0.5, 1 / 6.0},
    {"lower centre", 0.5, 5 / 6.0},     {"lower center", 0.5, 5 / 6.0},
    {"centre left", 1 / 6.0, 0.5},      {"center left", 1 / 6.0, 0.5},
    {"centre right", 5 / 6.0, 0.5},     {"center right", 5 / 6.0, 0.5},
    {"upper", 0.5, 1 / 6.0},            {"top", 0.5, 1 / 6.0},
    {"lower", 0.5, 5 / 6.0},            {"bottom", 0.5, 5 / 6.0},
    {"left", 1 / 6.0, 0.5},             {"right", 5 / 6.0, 0.5},
    {"centre", 0.5, 0.5},               {"center", 0.5, 0.5},
    {"middle", 0.5, 0.5},
};

static const char *const boundary_words[] = {
    "border", "boundary", "margin", "edge", "outline", "contour", "periphery", "surround",
    "adjacent", "between", "inside", "within", "around", NULL,
};

/* Whole-word, case-insensitive search. */
static gboolean has_word(const char *lower, const char *word) {
  size_t n = strlen(word);
  for (const char *p = strstr(lower, word); p; p = strstr(p + 1, word)) {
    gboolean start = p == lower || !g_ascii_isalpha(p[-1]);
    gboolean end = !g_ascii_isalpha(p[n]);
    if (start && end) return TRUE;
  }
  return FALSE;
}

gboolean ps_location_point(const char *text, double *x, double *y) {
  if (!text) return FALSE;
  g_autofree char *lower = g_ascii_strdown(text, -1);
  for (size_t i = 0; i < G_N_ELEMENTS(places); i++) {
    if (has_word(lower, places[i].words)) {
      *x = places[i].x;
      *y = places[i].y;
      return TRUE;
    }
  }
  return FALSE;
}

gboolean ps_has_spatial_word(const char *text, const char *const *extra) {
  double x, y;
  if (!text) return FALSE;
  if (ps_location_point(text, &x, &y)) return TRUE;
  g_autofree char *lower = g_ascii_strdown(text, -1);
  for (size_t i = 0; boundary_words[i]; i++)
    if (has_word(lower, boundary_words[i])) return TRUE;
  for (size_t i = 0; extra && extra[i]; i++) {
    g_autofree char *w = g_ascii_strdown(extra[i], -1);
    if (has_word(lower, w)) return TRUE;
  }
  return FALSE;
}

gboolean ps_mask_centroid(const float *logits, int64_t H, int64_t W, float threshold, double *x, double *y) {
  double sx = 0, sy = 0;
  int64_t n = 0;
  for (int64_t r = 0; r < H; r++)
    for (int64_t c = 0; c < W; c++)
      if (logits[r * W + c] > threshold) {
        sx += c + 0.5;
        sy += r + 0.5;
        n++;
      }
  if (!n) return FALSE;
  *x = sx / (double)n / (double)W;
  *y = sy / (double)n / (double)H;
  return TRUE;
}
