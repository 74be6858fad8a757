"""Make the project packages importable when running from a clone without ``pip install -e .``."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_DIRS = [os.path.join(REPO_ROOT, "projects", name) for name in ("DETRDistill", "ScaleKD")]


def add_project_paths() -> None:
    """Put the repository root and ``projects/<Name>`` folders on ``sys.path`` (idempotent)."""
    for path in [REPO_ROOT] + PROJECT_DIRS:
        if os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)
