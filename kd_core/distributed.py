"""Averaging across training processes (DDP): loss normalizers, auxiliary gradients; process-group teardown."""
import torch
import torch.distributed as dist
from detectron2.utils import comm

__all__ = ["mean_across_processes", "destroy_process_group"]


def mean_across_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all processes (one all_reduce; a no-op alone).

    Every process must call it the same number of times. The input is not modified.
    """
    if comm.get_world_size() > 1 and dist.is_available() and dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor = tensor / comm.get_world_size()
    return tensor


def destroy_process_group() -> None:
    """Wait for every process, then tear down the default process group (a no-op when none is initialized).

    Detectron2's ``launch`` returns from each worker without doing it. Call it at the end of a
    worker's main function: it is the teardown PyTorch asks for. We saw one CPU two-process test run
    (gloo) end with "terminate called without an active exception" (SIGABRT) in one rank at exit. A
    PyTorch change proposed in April 2026 (pytorch/pytorch#179291, not merged) names the likely cause:
    gloo worker threads still alive while the interpreter shuts down. We could not reproduce the crash,
    so it is not known whether this teardown prevents it.
    """
    if dist.is_available() and dist.is_initialized():
        comm.synchronize()  # every rank is done with its collectives before any rank leaves
        dist.destroy_process_group()
