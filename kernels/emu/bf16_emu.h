/* bf16_emu.h — fills a kernel table's bf16 entries with CPU emulations
 * (bf16_emu.c) built on `cpu`'s f32 entries, which must stay alive. */
#pragma once

#include <pathseg/kernels.h>

void ps_emu_bf16_entries(ps_kernels *t, const ps_kernels *cpu);
