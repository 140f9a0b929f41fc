"""catalog.py: framework lookup, aliases and dependency resolution."""

from __future__ import annotations

import pytest

from deepbox import catalog
from deepbox.catalog import ALIASES, FRAMEWORKS, lookup, resolve
from deepbox.errors import ConfigError


def names(requested: tuple[str, ...]) -> list[str]:
    return [fw.name for fw in resolve(requested)]


def test_dependencies_come_first():
    assert names(("scikit-learn",)) == ["numpy", "scikit-learn"]
    assert names(("pytorch",)) == ["numpy", "pytorch"]


def test_duplicates_are_dropped():
    assert names(("scikit-learn", "numpy")) == ["numpy", "scikit-learn"]
    assert names(("numpy", "scikit-learn", "numpy", "scikit-learn")) == ["numpy", "scikit-learn"]


def test_order_is_stable_and_follows_the_request():
    assert names(("pytorch", "scikit-learn")) == ["numpy", "pytorch", "scikit-learn"]
    assert names(("scikit-learn", "pytorch")) == ["numpy", "scikit-learn", "pytorch"]
    assert names(("pytorch", "scikit-learn")) == names(("pytorch", "scikit-learn"))


def test_empty_request_resolves_to_nothing():
    assert resolve(()) == []


@pytest.mark.parametrize(("alias", "name"), [("torch", "pytorch"), ("sklearn", "scikit-learn"), ("TORCH", "pytorch")])
def test_aliases(alias, name):
    assert lookup(alias) is FRAMEWORKS[name]


def test_alias_and_name_are_one_framework():
    assert names(("torch", "pytorch", "sklearn", "Scikit-Learn")) == ["numpy", "pytorch", "scikit-learn"]


def test_unknown_framework_suggests_the_close_one():
    with pytest.raises(ConfigError) as info:
        resolve(("numpy", "pytorh"))
    message = str(info.value)
    assert "'pytorh'" in message
    assert "Did you mean pytorch" in message
    assert "Known frameworks: jupyterlab, numpy, pytorch, scikit-learn." in message


def test_unknown_framework_without_close_match_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        lookup("zzzzzzzz")
    message = str(info.value)
    assert "Did you mean" not in message
    assert "Known frameworks:" in message


def test_catalog_is_consistent():
    for fw in FRAMEWORKS.values():
        assert fw.pip, fw.name
        assert fw.module.isidentifier(), fw.name
        for dependency in fw.depends:
            assert dependency in FRAMEWORKS, f"{fw.name} depends on unknown {dependency}"
    for alias, target in ALIASES.items():
        assert target in FRAMEWORKS, alias
        assert alias not in FRAMEWORKS, alias


def test_every_framework_resolves_with_its_dependencies_before_it():
    for name in FRAMEWORKS:
        order = names((name,))
        assert order[-1] == name
        for dependency in FRAMEWORKS[name].depends:
            assert order.index(dependency) < order.index(name)


def test_pytorch_uses_the_cpu_index_and_checks_the_gpu():
    torch = lookup("torch")
    assert torch.cpu_index_url == "https://download.pytorch.org/whl/cpu"
    assert torch.gpu_check is not None
    assert catalog.FRAMEWORKS["numpy"].cpu_index_url is None
