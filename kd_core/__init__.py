"""kd_core: knowledge-distillation engine for Detectron2 detectors.

Shared pieces used by every distillation method in this repository: the frozen
teacher, feature recorders and adapters, loss primitives, Hungarian matching,
loss-weight schedules and the teacher/student meta-architecture.
"""

try:  # Detectron2 is a prerequisite that is not on PyPI: fail early and say how to get it.
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only on machines without detectron2
    raise ImportError(
        "kd_core needs Detectron2, which is not installed in this Python "
        "environment. Install it from a local clone, built against the installed torch:\n"
        "    git clone https://github.com/facebookresearch/detectron2.git\n"
        "    python -m pip install 'setuptools<81'\n"
        "    python -m pip install --no-build-isolation -e detectron2\n"
        "See README.md, section 'Install'."
    ) from e

__version__ = "0.1.0"
