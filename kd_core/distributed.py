"""Averaging across training processes (DDP): loss normalizers, auxiliary gradients; process-group teardown."""
import torch
import torch.distributed as dist
from detectron2.utils import comm

__all__ = ["mean_across_processes", "teardown_process_group"]


def mean_across_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all processes (one all_reduce; a no-op alone).

    Every process must call it the same number of times. The input is not modified.
    """
    if comm.get_world_size() > 1 and dist.is_available() and dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor = tensor / comm.get_world_size()
    return tensor


def teardown_process_group() -> None:
    """Wait for every process, then destroy the default process group (a no-op when none is initialized).

    Call it at the end of a worker's main function: Detectron2's ``launch`` returns from each worker
    without it. Without it, gloo's worker threads can still be alive while the interpreter shuts down,
    which can abort a rank at exit (SIGABRT, "terminate called without an active exception"; see
    pytorch/pytorch#179291). We saw that once in the two-process CPU test and could not reproduce it.
    """
    if dist.is_available() and dist.is_initialized():
        comm.synchronize()  # every rank is done with its collectives before any rank leaves
        dist.destroy_process_group()
