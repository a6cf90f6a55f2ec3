/* lr_scale.h — per-component learning-rate factors for stage.fit
 * (`lr_scale: [decoder=10, seg_adapter=10]`).
 *
 * The core optimizer has one learning rate. AdamW's update is linear in the
 * learning rate (p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p), and the
 * moments do not depend on lr), so scaling the step a parameter took by f is
 * exactly the step at lr * f: the stage copies the scaled parameters before
 * ps_optim_step and sets p = p_old + f * (p_new - p_old) after it. */
#pragma once

#include <pathseg/graph.h>

typedef struct fit_lr_scale fit_lr_scale;

/* Parses "instance=factor" entries (factor >= 0, finite); a malformed entry
 * is an error naming it. Returns NULL with *error set on failure; an empty
 * list gives a valid object that does nothing. */
fit_lr_scale *fit_lr_scale_parse(const char *const *entries, size_t n, GError **error);

/* Binds the entries to the graph's trainable parameters (call after
 * ps_graph_set_trainable). An instance that is not in the graph, or that has
 * no trainable parameter, is an error naming it. */
gboolean fit_lr_scale_bind(fit_lr_scale *s, ps_graph *g, GError **error);

/* Around ps_optim_step: `before` copies the bound parameters, `after`
 * rescales their change. Neither allocates. */
void fit_lr_scale_before(fit_lr_scale *s);
void fit_lr_scale_after(fit_lr_scale *s);

/* Number of bound parameter tensors (0: nothing to do). */
size_t fit_lr_scale_count(const fit_lr_scale *s);

void fit_lr_scale_free(fit_lr_scale *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(fit_lr_scale, fit_lr_scale_free)
