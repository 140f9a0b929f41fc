"""The framework catalog: what each framework installs (CPU or CUDA) and how `up` checks that it works.

- `entries.py`: one record per framework (every Deepo module, plus today's picks) and the presets;
- `model.py`: the record types;
- `resolve.py`: names -> ordered, checked frameworks (`resolve`) or a full install `plan`;
- `cuda.py`: CUDA versions and the minimum NVIDIA driver for each.
"""

from __future__ import annotations

from deepbox.catalog import cuda
from deepbox.catalog.entries import ENTRIES, PRESETS
from deepbox.catalog.model import Framework, Plan, Release, Request, Selected
from deepbox.catalog.resolve import (
    ALIASES,
    BASE_PYTHON,
    FRAMEWORKS,
    base_python,
    base_suite,
    canonical_names,
    check_names,
    entry,
    lookup,
    plan,
    presets,
    resolve,
    table,
)

__all__ = [
    "ALIASES",
    "BASE_PYTHON",
    "ENTRIES",
    "FRAMEWORKS",
    "PRESETS",
    "Framework",
    "Plan",
    "Release",
    "Request",
    "Selected",
    "base_python",
    "base_suite",
    "canonical_names",
    "check_names",
    "cuda",
    "entry",
    "lookup",
    "plan",
    "presets",
    "resolve",
    "table",
]
