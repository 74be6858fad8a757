#!/usr/bin/env python
"""Install kd_core and the DETRDistill / ScaleKD project packages.

Detectron2 is a prerequisite that is not on PyPI; install it first (see README.md).
"""
from setuptools import find_packages, setup

packages = find_packages(include=["kd_core", "kd_core.*"])
package_dir = {}
for project, package in (("DETRDistill", "detrdistill"), ("ScaleKD", "scalekd")):
    found = find_packages(where=f"projects/{project}", include=[package, f"{package}.*"])
    packages += found
    package_dir.update({p: f"projects/{project}/" + p.replace(".", "/") for p in found})

setup(
    name="kd_toolkit",
    version="0.1.0",
    description="Knowledge distillation for Detectron2 detectors: DETRDistill and ScaleKD",
    python_requires=">=3.9",
    packages=packages,
    package_dir=package_dir,
    package_data={"kd_core": ["configs/**/*.py"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.4,<2.15",  # torch.is_autocast_enabled(device) / get_autocast_dtype(device)
        "torchvision>=0.19,<0.30",
        "fvcore>=0.1.5,<0.1.6",
        "scipy>=1.10",
        "pycocotools>=2.0.6",
        "opencv-python-headless>=4.8",
        "numpy",
        "matplotlib",
    ],
    extras_require={"test": ["pytest>=7"]},
)
