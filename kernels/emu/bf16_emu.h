/* bf16_emu.h — fills a kernel table's bf16 entries with CPU emulations
 * (bf16_emu.c) built on `cpu`'s f32 entries, which must stay alive. */
#pragma once

#include <pathseg/kernels.h>

void ps_emu_bf16_entries(ps_kernels *t, const ps_kernels *cpu);

/* The bf16-precision table's linear entries emulated (f32 tensors, products of
 * bf16-rounded operands); valid after ps_emu_bf16_entries named the CPU table. */
void ps_emu_linear_forward_bf16p(float *out, const float *inp, const float *weight,
                                 const float *bias, int64_t N, int64_t C, int64_t OC);
void ps_emu_linear_backward_bf16p(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, int64_t N, int64_t C,
                                  int64_t OC);
