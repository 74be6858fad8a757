"""Averaging across training processes (DDP): loss normalizers, auxiliary gradients."""
import torch
import torch.distributed as dist
from detectron2.utils import comm

__all__ = ["mean_across_processes"]


def mean_across_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all processes (one all_reduce; a no-op alone).

    Every process must call it the same number of times. The input is not modified.
    """
    if comm.get_world_size() > 1 and dist.is_available() and dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor = tensor / comm.get_world_size()
    return tensor
