"""``Conv2d``: nn.Conv2d whose weight gradient is computed in fp32 under bf16 autocast on a CPU without AMX.

Why: oneDNN's bf16 kernels (torch 2.14, measured with ONEDNN_VERBOSE on an AVX512-BF16 CPU,
AMD EPYC Zen 4) run a convolution's forward pass and its input gradient 2–8× faster than fp32, but
its weight gradient (``jit_bf16:avx512_core_bf16 backward_weights``) 10–25× *slower*: 270–730 ms
against 27–38 ms for the DCGAN encoder's 64→128 4×4 convolution at batch 64. That one kernel
made the encoder's convolutions a quarter of a bf16 DIM(L) step. So under CPU bf16 autocast this
layer runs the forward pass and the input gradient in bf16 and only the weight (and bias)
gradient in fp32, from the same bf16 inputs.

With AMX (``amx_bf16``) oneDNN's bf16 weight gradient is the fast one: on a 2-core Xeon with AMX,
forward and backward of the DCGAN encoder's three convolutions at batch 64 (interleaved medians of
60) took 1.03–2.08× longer with the fp32 weight gradient than nn.Conv2d's bf16 path, its dtype
copies included. So there, as everywhere else (fp32, GPUs), this is nn.Conv2d unchanged; its
parameters and state dict are nn.Conv2d's in every case.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dimctl.precision import AMX_BF16_FLAG, cpu_flags


def fp32_weight_grad(x: torch.Tensor) -> bool:
    """Whether a convolution of ``x`` takes its weight gradient in fp32: under CPU bf16 autocast on a
    CPU without AMX (module docstring)."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and AMX_BF16_FLAG not in cpu_flags())


class _BF16ConvFP32WeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        x16, w16 = x.to(torch.bfloat16), weight.to(torch.bfloat16)
        b16 = None if bias is None else bias.to(torch.bfloat16)
        with torch.autocast("cpu", enabled=False):
            out = F.conv2d(x16, w16, b16, stride, padding, dilation, groups)
        ctx.save_for_backward(x16, w16)
        ctx.settings = (stride, padding, dilation, groups, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        x16, w16 = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.settings
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad.to(torch.bfloat16), x16, w16, None, stride, padding, dilation, False, [0, 0], groups,
                [True, False, False])[0]
        if need_w or need_b:
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad.float(), x16.float(), w16.float(), [w16.shape[0]] if has_bias else None, stride, padding,
                dilation, False, [0, 0], groups, [False, need_w, need_b])
        return grad_x, grad_w, grad_b, None, None, None, None


class Conv2d(nn.Conv2d):
    """nn.Conv2d, with the weight gradient in fp32 under CPU bf16 autocast without AMX (module docstring)."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode == "zeros" and torch.is_grad_enabled() and fp32_weight_grad(input):
            return _BF16ConvFP32WeightGrad.apply(input, weight, bias, self.stride, self.padding, self.dilation,
                                                 self.groups)
        return super()._conv_forward(input, weight, bias)
