"""The assistant's update in a 2-process (gloo, CPU) run: one flattened all_reduce of its
gradients, parameters broadcast from rank 0 first, identical assistants on every rank."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from scalekd import AssistantTrainer


def _worker(rank, world_size, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(rank)  # different random init per rank: the trainer must broadcast rank 0's
        module = nn.Linear(3, 2)
        trainer = AssistantTrainer(module, lr=0.1, weight_decay=0.0).prepare("cpu")
        x = torch.full((4, 3), float(rank + 1))
        trainer.step(module(x).pow(2).sum())
        torch.save(module.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_assistant_gradients_are_averaged_across_processes(tmp_path):
    # fork: the workers need no re-import of torch/detectron2 (CPU only, nothing initialised on a GPU)
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # single-process reference: rank 0's init, gradient = mean of the two ranks' gradients
    torch.manual_seed(0)
    ref = nn.Linear(3, 2)
    loss = sum(ref(torch.full((4, 3), float(r + 1))).pow(2).sum() for r in range(2)) / 2
    loss.backward()
    torch.optim.Adam(ref.parameters(), lr=0.1, weight_decay=0.0).step()
    for k, v in ref.state_dict().items():
        assert torch.allclose(r0[k], v, atol=1e-6), k
