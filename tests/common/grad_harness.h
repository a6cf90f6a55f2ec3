/* grad_harness.h — drives components through their vtables (loaded from the
 * build tree's plugins) for gradient tests: ports, gradient buffers for a
 * chosen set of parameters, a linear loss L = sum_o <R_o, out_o> accumulated
 * in double over the float outputs, and central finite differences on
 * parameter and input entries. Components can be chained (one's output feeds
 * the next one's input) to check gradients through a pipeline's edge.
 * Used by tests/ruipath, tests/heads and tests/sam. */
#pragma once

#include <pathseg/host.h>
#include <pathseg/kernels.h>

#include "ps_test.h"

#define GH_MAX_PORTS 8

typedef struct gh_comp {
  const ps_component_desc *desc;
  void *self;
  ps_context *ctx;
  ps_port in_items[GH_MAX_PORTS], out_items[GH_MAX_PORTS], gin_items[GH_MAX_PORTS],
      gout_items[GH_MAX_PORTS];
  ps_ports in, out, gin, gout;
  ps_tensor *R[GH_MAX_PORTS]; /* loss weights per output (NULL: no loss on it) */
  gboolean pinned;            /* every forward starts from rng0 (same dropout masks) */
  ps_rng rng0;
  /* The function is only piecewise smooth (ReLU): an entry that fails at
   * step eps is retried at eps / 4, where it may also match a one-sided
   * difference (see gh_check_one). Set after gh_init. */
  gboolean kinks;
  /* A chain (gh_link): output link_out feeds next's input next->link_in. */
  struct gh_comp *prev, *next;
  const char *link_out, *link_in;
} gh_comp;

/* The registry of the build tree's plugins (PATHSEG_PLUGIN_PATH). */
ps_registry *gh_registry(void);
/* Creates component `name` with YAML flow-mapping config text. */
gboolean gh_init(gh_comp *c, ps_registry *reg, ps_context *ctx, const char *name, const char *yaml);
void gh_clear(gh_comp *c);
void gh_set_input(gh_comp *c, const char *port, ps_tensor *t, gboolean needs_grad);
/* Chains `up`'s output `out_port` into `down`'s input `in_port` (which then
 * asks for its gradient). The functions below take any component of a chain
 * and run all of it, from its first component; the loss sums every
 * component's R terms. */
void gh_link(gh_comp *up, const char *out_port, gh_comp *down, const char *in_port);
/* Gives every parameter for which pred is TRUE a zeroed gradient buffer and
 * every other one NULL. */
typedef gboolean (*gh_pred)(const ps_param *p);
void gh_train(gh_comp *c, gh_pred pred);
/* Random values for every parameter: matrices and conv kernels
 * N(0, gain^2 / fan_in) (a ConvTranspose "output_upscaling" kernel
 * (in, out, kh, kw): fan = in), 1-D weights named *.weight (norm gains)
 * 1 + N(0, norm_std^2), everything else (biases, tokens, position and
 * prompt tables, gammas) N(0, std^2). A gain at or below 1 keeps attention
 * logits and pre-activations moderate, so that the functions are gently
 * curved at the finite-difference step. */
void gh_randomize_norm(gh_comp *c, ps_rng *rng, double std, double gain, double norm_std);
/* The same with norm gains 1 + N(0, 0.1^2). */
void gh_randomize(gh_comp *c, ps_rng *rng, double std, double gain);
/* From now on every forward starts from the context RNG's current state,
 * so dropout draws the same masks in every forward and finite differences
 * see one fixed function. */
void gh_pin_rng(gh_comp *c);
/* Runs a forward and sets loss weights R ~ N(0, 1) on c's float output `port`. */
gboolean gh_loss_on(gh_comp *c, const char *port, ps_rng *rng);
/* Forward, then L = sum <R, out> in double (NAN on failure). */
double gh_loss(gh_comp *c);
/* Zeroes the gradients, runs forward and backward with dL/dout = R. */
gboolean gh_backward(gh_comp *c);
/* The parameter named `name`, or NULL. */
ps_param *gh_param(gh_comp *c, const char *name);

/* Checks entry j of `value` (a parameter or an input of c's chain) against
 * finite differences: |fd - an| <= atol + rtol * max(|fd|, |an|) with the
 * central difference of step eps (and with c->kinks, the retry at eps / 4).
 * `grad` is the analytic gradient (a copy taken after gh_backward). Returns
 * the error / tolerance ratio. */
double gh_check_one(gh_comp *c, ps_tensor *value, const float *grad, int64_t j, double eps,
                    double atol, double rtol, const char *what);
/* gh_check_one on `count` random entries (every entry when count >= numel).
 * Returns the worst ratio. */
double gh_check_entries(gh_comp *c, ps_tensor *value, const float *grad, int count, double eps,
                        double atol, double rtol, ps_rng *rng, const char *what);
/* gh_check_entries on every parameter of c with a gradient buffer (after gh_backward). */
double gh_check_params(gh_comp *c, int count, double eps, double atol, double rtol, ps_rng *rng);
/* gh_check_entries on c's input `port`'s gradient (after gh_backward). */
double gh_check_input(gh_comp *c, const char *port, int count, double eps, double atol, double rtol,
                      ps_rng *rng);

/* ps_test_finish(): the harness's checks count in the test's own counters
 * (ps_test.h shares them across files). */
static inline int gh_finish(void) {
  return ps_test_finish();
}

/* A (d0, d1, d2, d3) tensor (-1 ends the shape) of N(0, std^2) entries. */
ps_tensor *gh_randn(ps_rng *rng, double std, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
