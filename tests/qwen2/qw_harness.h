/* qw_harness.h — drives llm.qwen2 through its vtable (loaded from the build
 * tree's plugin) for the qwen2 tests: instance creation from YAML config
 * text, input/output/gradient ports, random parameters, and a test loss
 * L = w_loss * loss + <R_h, hidden> + <R_l, logits> accumulated in double. */
#pragma once

#include <pathseg/host.h>
#include <pathseg/pipeline.h>

#include "ps_test.h"
#include <pathseg/generate.h>

#define QW_PORTS 8

typedef struct {
  const ps_component_desc *desc;
  void *self;
  ps_context *ctx;
  ps_port in_items[QW_PORTS], out_items[QW_PORTS], gin_items[QW_PORTS], gout_items[QW_PORTS];
  ps_ports in, out, gin, gout;
  /* the test loss */
  double w_loss;
  ps_tensor *r_hidden, *r_logits; /* NULL: no term */
  ps_tensor *g_loss;              /* [1] = w_loss, the loss port's gradient */
} qw_comp;

/* Loads the plugins once (ps_registry_scan) and returns the registry. */
ps_registry *qw_registry(void);
gboolean qw_init(qw_comp *c, const char *yaml, uint64_t seed);
/* qw_init with a context on `device` (the CUDA emulator in tests). */
gboolean qw_init_on(qw_comp *c, const char *yaml, uint64_t seed, ps_device device);
void qw_clear(qw_comp *c);
void qw_set_input(qw_comp *c, const char *port, ps_tensor *t, gboolean needs_grad);
ps_tensor *qw_output(qw_comp *c, const char *port);
ps_tensor *qw_input_grad(qw_comp *c, const char *port);
/* Weights N(0, std), norm weights 1 + N(0, std), LoRA A and B N(0, std). */
void qw_randomize(qw_comp *c, ps_rng *rng, double std);
/* Gives every parameter for which pred() holds a zeroed grad buffer; NULL for the rest. */
void qw_train(qw_comp *c, gboolean (*pred)(const ps_param *p));
ps_param *qw_param(qw_comp *c, const char *name);
gboolean qw_forward(qw_comp *c);
double qw_loss(qw_comp *c);       /* forward, then the test loss */
gboolean qw_backward(qw_comp *c); /* backward of the test loss after qw_forward */

ps_tensor *qw_randn(ps_rng *rng, double std, int64_t d0, int64_t d1, int64_t d2);
ps_tensor *qw_ids(int64_t B, int64_t T, const int32_t *values);
