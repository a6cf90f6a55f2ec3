/* rl_dist.h — the RL stages across data-parallel ranks (see rl_dist.c). */
#pragma once

#include <pathseg/comm.h>

#include "advantage.h"

/* `local`: this rank's rows, prompt-major (B = prompts * group_size rows,
 * group_size = this rank's share of each group). Computes the advantages of
 * the whole batch of all ranks with `adv` and writes this rank's rows.
 * advantages, returns: (local->B, local->T) */
gboolean rl_dist_advantages(ps_comm *comm, const ps_advantage_iface *adv, void *adv_self,
                            const ps_advantage_batch *local, int64_t prompts, float *advantages,
                            float *returns, GError **error);
