/* conv_cudnn.cuh — conv2d through cuDNN (conv_cudnn.cu), internal to conv.cu.
 * Each returns false, having done nothing, when cuDNN is not to be used for
 * this call (not configured, switched off, unusable, or no deterministic FMA
 * algorithm fits in the scratch); the caller then runs its own kernels.
 * Arguments and contract as the table's conv2d_forward / conv2d_backward. */
#pragma once

#include <stdint.h>

#include <pathseg/kernels.h>

#ifdef PS_HAVE_CUDNN
bool ps_cudnn_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                             const ps_conv2d_desc *d, float *scratch, int64_t scratch_floats);
bool ps_cudnn_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const ps_conv2d_desc *d,
                              float *scratch, int64_t scratch_floats);
#endif
