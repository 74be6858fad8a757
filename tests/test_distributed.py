"""kd_core.distributed: averaging across processes and the worker's process-group teardown."""
import torch
import torch.distributed as dist

from kd_core.distributed import mean_across_processes, teardown_process_group


def test_teardown_process_group_tears_down_an_initialized_group_and_is_a_no_op_otherwise(tmp_path):
    teardown_process_group()  # nothing initialized: no error
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        x = torch.arange(3.0)
        assert torch.equal(mean_across_processes(x), x)
        teardown_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
