/* reward.h — the "reward" capability of components of kind `reward`.
 *
 * SO-GRPO scores every sampled reasoning chain with a weighted sum of reward
 * components (soft Dice, sparsity, spatial, format, length; weights from the
 * YAML). A reward sees one sample: the query, the generated text and tokens,
 * where <SEG> was emitted, and the mask predicted from the (first) <SEG>
 * hidden state with the ground truth. A differentiable reward also returns
 * its gradient with respect to the mask logits, which the stage sends back
 * through the mask decoder and SEG adapter into the <SEG> representation. */
#pragma once

#include <pathseg/plugin.h>

G_BEGIN_DECLS

typedef struct ps_reward_sample {
  const char *query;          /* the user's question */
  const char *completion;     /* the generated reasoning chain (decoded, special tokens kept) */
  int64_t n_tokens;           /* generated tokens */
  int64_t n_seg;              /* <SEG> tokens emitted */
  const int64_t *seg_at;      /* (n_seg) token index of each <SEG> in the completion */
  const int64_t *seg_char;    /* (n_seg) byte offset of each <SEG> in `completion` */
  gboolean finished;          /* ended with the end-of-turn token (not cut by max length) */
  /* The mask predicted from the first <SEG>, and the target; NULL when n_seg == 0. */
  const float *logits;        /* (H, W) mask logits */
  const float *target;        /* (H, W) in {0, 1} */
  int64_t H, W;
} ps_reward_sample;

typedef struct ps_reward_iface {
  uint32_t struct_size;
  /* The weight the component was configured with (lambda_*). */
  double (*weight)(void *self);
  /* The unweighted reward of one sample. When `dlogits` (H, W) is non-NULL
   * and the reward is differentiable, ADDS d reward / d logits to it. */
  double (*score)(void *self, const ps_reward_sample *sample, float *dlogits);
} ps_reward_iface;

G_END_DECLS
