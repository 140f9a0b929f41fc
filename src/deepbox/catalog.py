"""The framework catalog: what each framework installs and how `up` checks that it works.

A minimal catalog (numpy, scikit-learn, pytorch); each entry is one data record, so adding a
framework is adding a record.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from deepbox.errors import ConfigError


@dataclass(frozen=True)
class Framework:
    name: str
    description: str
    pip: tuple[str, ...]
    module: str  # imported by the verification step
    depends: tuple[str, ...] = ()
    # Extra pip index for CPU builds (PyPI's default torch is a multi-GB CUDA build).
    cpu_index_url: str | None = None
    # Python expression (with the module imported as `m`) telling whether a GPU is visible.
    gpu_check: str | None = None


FRAMEWORKS: dict[str, Framework] = {
    fw.name: fw
    for fw in (
        Framework("numpy", "N-dimensional arrays", ("numpy",), "numpy"),
        Framework(
            "scikit-learn",
            "classical machine learning",
            ("scikit-learn",),
            "sklearn",
            depends=("numpy",),
        ),
        Framework(
            "pytorch",
            "PyTorch (CPU build unless a GPU box is asked for)",
            ("torch",),
            "torch",
            depends=("numpy",),
            cpu_index_url="https://download.pytorch.org/whl/cpu",
            gpu_check="m.cuda.is_available()",
        ),
        Framework("jupyterlab", "JupyterLab notebooks (`jupyter = true` runs it)", ("jupyterlab",), "jupyterlab"),
    )
}

ALIASES = {"sklearn": "scikit-learn", "torch": "pytorch"}


def lookup(name: str) -> Framework:
    key = ALIASES.get(name.lower(), name.lower())
    if key in FRAMEWORKS:
        return FRAMEWORKS[key]
    close = difflib.get_close_matches(key, [*FRAMEWORKS, *ALIASES], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"Unknown framework '{name}'.{hint} Known frameworks: {', '.join(sorted(FRAMEWORKS))}.")


def resolve(names: tuple[str, ...]) -> list[Framework]:
    """Requested names plus their dependencies, dependencies first, in a stable order."""
    ordered: list[Framework] = []

    def visit(framework: Framework) -> None:
        if framework in ordered:
            return
        for dependency in framework.depends:
            visit(FRAMEWORKS[dependency])
        ordered.append(framework)

    for name in names:
        visit(lookup(name))
    return ordered
