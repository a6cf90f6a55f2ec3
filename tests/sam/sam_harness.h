/* sam_harness.h — drives encoder.medsam / decoder.sam through their vtables
 * (loaded from the build tree's plugin) for the gradient tests: ports,
 * trainable-parameter gradient buffers, a linear loss L = sum_o <R_o, out_o>
 * accumulated in double, and central finite differences on parameters and
 * inputs. */
#pragma once

#include <pathseg/host.h>
#include <pathseg/kernels.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define H_MAX_PORTS 8

typedef struct {
  const ps_component_desc *desc;
  void *self;
  ps_port in_items[H_MAX_PORTS], out_items[H_MAX_PORTS], gin_items[H_MAX_PORTS],
      gout_items[H_MAX_PORTS];
  ps_ports in, out, gin, gout;
  ps_tensor *R[H_MAX_PORTS]; /* loss weights per output (NULL: no loss on it) */
} h_comp;

/* Creates a component from YAML flow-mapping config text. */
gboolean h_comp_init(h_comp *c, ps_registry *reg, ps_context *ctx, const char *name,
                     const char *yaml);
void h_comp_clear(h_comp *c);
void h_set_input(h_comp *c, const char *port, ps_tensor *t, gboolean needs_grad);
/* Gives every parameter whose name matches `pred` a zeroed gradient buffer (others NULL). */
typedef gboolean (*h_param_pred)(const ps_param *p);
void h_train(h_comp *c, h_param_pred pred);
void h_zero_grads(h_comp *c);
/* Random values for every parameter: weights N(0, std), norm weights 1 + N(0, std). */
void h_randomize(h_comp *c, ps_rng *rng, double std);
/* R for output `port` with `shape` of the first forward's output: N(0, 1). */
void h_loss_on(h_comp *c, const char *port, ps_rng *rng);

/* A chain of up to 2 components: out of a[0] port `link_out` feeds a[1]'s `link_in`. */
typedef struct {
  h_comp *a[2];
  int n;
  const char *link_out, *link_in;
  ps_context *ctx;
} h_chain;

double h_loss(h_chain *ch);       /* forward + loss */
gboolean h_backward(h_chain *ch); /* forward + backward with dL/dout = R */

/* Checks the analytic gradient against central differences at `count`
 * random entries of `value` (a parameter or an input); grad is the analytic
 * gradient tensor (read after h_backward). Returns the worst
 * |fd - an| / (atol + rtol * max(|fd|, |an|)) (<= 1: every entry passed) and
 * prints the entries that failed. */
/* The same for entry j. */
double h_check_one(h_chain *ch, ps_tensor *value, const float *grad, int64_t j, double eps,
                   double atol, double rtol, const char *what);
double h_check_entries(h_chain *ch, ps_tensor *value, const float *grad, int count, double eps,
                       double atol, double rtol, ps_rng *rng, const char *what);
