"""SyncBatchNorm: batch normalisation with statistics over every rank's batch (Horovod's
``hvd.SyncBatchNorm``), on CPU and GPU alike: the per-channel sums travel in one allreduce
forward and one backward."""

import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from ringfuse.torch import mpi_ops
from ringfuse.torch.mpi_ops import Sum, allreduce, global_process_set


def _reduce_dims(x):
    return [0] + list(range(2, x.dim()))


def _per_channel(v, x):
    return v.view([1, -1] + [1] * (x.dim() - 2))


class _SyncBatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, eps, momentum, process_set):
        x = input.contiguous()
        dims = _reduce_dims(x)
        channels = x.shape[1]
        count = torch.tensor([x.numel() // channels], dtype=x.dtype, device=x.device)
        local = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        total = allreduce(local, op=Sum, name=None, process_set=process_set)
        n = total[-1]
        mean = total[:channels] / n
        var = total[channels:2 * channels] / n - mean * mean
        invstd = torch.rsqrt(var + eps)
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype) * momentum)
                unbiased = var * n / torch.clamp(n - 1, min=1)
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype) * momentum)
        xhat = (x - _per_channel(mean, x)) * _per_channel(invstd, x)
        out = xhat
        if weight is not None:
            out = out * _per_channel(weight, x) + _per_channel(bias, x)
        ctx.save_for_backward(xhat, invstd, weight, n)
        ctx.process_set = process_set
        return out

    @staticmethod
    def backward(ctx, grad_output):
        xhat, invstd, weight, n = ctx.saved_tensors
        g = grad_output.contiguous()
        dims = _reduce_dims(g)
        channels = g.shape[1]
        sum_g = g.sum(dims)
        sum_gx = (g * xhat).sum(dims)
        # The gradient of the normalised input needs the sums over the global batch.
        total = allreduce(torch.cat([sum_g, sum_gx]), op=Sum, name=None,
                          process_set=ctx.process_set)
        mean_g = total[:channels] / n
        mean_gx = total[channels:] / n
        scale = invstd if weight is None else weight * invstd
        grad_input = _per_channel(scale, g) * (g - _per_channel(mean_g, g)
                                               - xhat * _per_channel(mean_gx, g))
        grad_weight = sum_gx if weight is not None else None
        grad_bias = sum_g if weight is not None else None
        return grad_input, grad_weight, grad_bias, None, None, None, None, None


class SyncBatchNorm(_BatchNorm):
    """Applies batch normalisation over every rank's batch (statistics synchronised with one
    allreduce per forward and one per backward). Same arguments as torch.nn.BatchNorm*d, and
    ``process_set``: the ranks whose batches make the statistics (called on its members)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_set=global_process_set):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_set = process_set

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError("expected at least 2D input (got {}D input)".format(input.dim()))

    def forward(self, input):
        self._check_input_dim(input)
        if self.training and self.track_running_stats:
            self.num_batches_tracked = self.num_batches_tracked + 1
        momentum = self.momentum
        if momentum is None:  # cumulative moving average, as in torch's BatchNorm
            momentum = 1.0 / float(self.num_batches_tracked)
        if not self.training or mpi_ops._set_of(self.process_set).size() == 1:
            use_batch_stats = self.training or not self.track_running_stats
            return F.batch_norm(input, self.running_mean if not use_batch_stats or
                                self.track_running_stats else None,
                                self.running_var if not use_batch_stats or
                                self.track_running_stats else None,
                                self.weight, self.bias, use_batch_stats, momentum, self.eps)
        return _SyncBatchNormFunction.apply(input, self.weight, self.bias,
                                            self.running_mean, self.running_var, self.eps,
                                            momentum, self.process_set)
