/* format.c — `reward.format`, R_format: the answer has the shape the
 * method needs. The mean of four checks: the turn ended with the end token;
 * 1 <= #<SEG> <= max_seg; at least `min_words` words of reasoning come before
 * the first <SEG>; and no more than `max_tail` words follow the last one. */
#include <string.h>

#include "rewards.h"

typedef struct {
  reward_base base;
  int64_t max_seg, min_words, max_tail;
} format;

static const ps_config_key config[] = {
    {"weight", PS_TYPE_FLOAT, "0.1", 0, 1e6, NULL, "lambda_format"},
    {"max_seg", PS_TYPE_INT, "3", 1, 1000, NULL, "most <SEG> tokens allowed"},
    {"min_words", PS_TYPE_INT, "5", 0, 100000, NULL, "reasoning words required before <SEG>"},
    {"max_tail", PS_TYPE_INT, "3", 0, 100000, NULL, "words allowed after the last <SEG>"},
    {NULL},
};

static void *create(const ps_config *cfg, ps_context *ctx, GError **error) {
  format *s = g_new0(format, 1);
  s->base.weight = ps_config_float(cfg, "weight");
  s->max_seg = ps_config_int(cfg, "max_seg");
  s->min_words = ps_config_int(cfg, "min_words");
  s->max_tail = ps_config_int(cfg, "max_tail");
  return s;
}

/* Words: runs of letters or digits (special tokens like <|im_end|> count as one). */
static int64_t count_words(const char *text, size_t len) {
  int64_t n = 0;
  gboolean in = FALSE;
  for (size_t i = 0; i < len; i++) {
    gboolean w = g_ascii_isalnum(text[i]) || (text[i] & 0x80);
    if (w && !in) n++;
    in = w;
  }
  return n;
}

static double score(void *self, const ps_reward_sample *x, float *dlogits) {
  format *s = self;
  double checks = 0;
  checks += x->finished ? 1 : 0;
  checks += x->n_seg >= 1 && x->n_seg <= s->max_seg ? 1 : 0;
  if (x->n_seg >= 1) {
    checks += count_words(x->completion, (size_t)x->seg_char[0]) >= s->min_words ? 1 : 0;
    const char *tail = x->completion + x->seg_char[x->n_seg - 1] + strlen("<SEG>");
    const char *end = strstr(tail, "<|im_end|>");
    checks += count_words(tail, end ? (size_t)(end - tail) : strlen(tail)) <= s->max_tail ? 1 : 0;
  }
  return checks / 4.0;
}

static const ps_reward_iface iface = {sizeof(ps_reward_iface), ps_reward_weight, score};
static const void *capability(const char *name) { return g_strcmp0(name, "reward") == 0 ? &iface : NULL; }
static const ps_port_desc none[] = {{NULL}};
static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, g_free, NULL, NULL, NULL};
const ps_component_desc ps_reward_format_desc = {
    sizeof(ps_component_desc), PS_KIND_REWARD, "reward.format",
    "R_format: end token, a bounded number of <SEG>, reasoning before it, little after.",
    config, none, none, &vtable, capability,
};
