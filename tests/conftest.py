import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from kd_core.paths import add_project_paths  # noqa: E402

add_project_paths()

SHARED_DATASETS = os.environ.get("KD_DATASETS", os.path.join(os.path.dirname(ROOT), "shared", "datasets"))


@pytest.fixture(autouse=True, scope="session")
def _small_thread_count():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield


@pytest.fixture(scope="module")
def one_intra_op_thread():
    """One intra-op thread for a module's tests (``pytestmark = pytest.mark.usefixtures(...)``): on a
    shared, oversubscribed CPU two spinning threads run ~5x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_datasets():
    if not os.path.isdir(SHARED_DATASETS):
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS} (set KD_DATASETS)")
    return SHARED_DATASETS
