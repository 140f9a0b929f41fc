"""catalog: lookup, aliases, presets, resolution order, pins, conflicts, cycles, Python/CUDA checks."""

from __future__ import annotations

import pytest

from deepbox import catalog
from deepbox.baseimage import BaseFacts
from deepbox.catalog import ALIASES, ENTRIES, FRAMEWORKS, PRESETS, Framework, lookup, plan, resolve
from deepbox.catalog.model import TIERS, Request, version_tuple
from deepbox.errors import ConfigError


def names(requested: tuple[str, ...]) -> list[str]:
    return [fw.name for fw in resolve(requested)]


# Order ----------------------------------------------------------------------------------------------


def test_dependencies_come_first():
    assert names(("scikit-learn",)) == ["numpy", "scikit-learn"]
    assert names(("pytorch",)) == ["numpy", "pytorch"]
    assert names(("transformers",)) == ["numpy", "pytorch", "transformers"]


def test_duplicates_are_dropped():
    assert names(("scikit-learn", "numpy")) == ["numpy", "scikit-learn"]
    assert names(("numpy", "scikit-learn", "numpy", "scikit-learn")) == ["numpy", "scikit-learn"]


def test_heavy_frameworks_come_before_libraries_whatever_the_request_order():
    assert names(("scikit-learn", "pytorch")) == ["numpy", "pytorch", "scikit-learn"]
    assert names(("pytorch", "scikit-learn")) == ["numpy", "pytorch", "scikit-learn"]
    assert names(("jupyterlab", "scikit-learn", "tensorflow"))[-1] == "jupyterlab"


def test_order_is_the_same_whatever_the_request_order():
    assert names(("xgboost", "lightgbm")) == ["numpy", "lightgbm", "xgboost"]
    assert names(("lightgbm", "xgboost")) == ["numpy", "lightgbm", "xgboost"]
    assert names(("tensorflow", "pytorch")) == names(("pytorch", "tensorflow")) == ["numpy", "pytorch", "tensorflow"]
    assert catalog.canonical_names(["tf", "torch==2.13.*"]) == catalog.canonical_names(
        ["pytorch==2.13.*", "tensorflow"]
    )


def test_empty_request_resolves_to_nothing():
    assert resolve(()) == []


def test_dependencies_never_sit_in_a_later_tier():
    # resolve() groups by tier after the topological sort; this keeps that grouping topological.
    for fw in FRAMEWORKS.values():
        for dependency in fw.depends:
            assert TIERS.index(FRAMEWORKS[dependency].tier) <= TIERS.index(fw.tier), (fw.name, dependency)


def test_every_usable_framework_resolves_with_its_dependencies_before_it():
    for fw in FRAMEWORKS.values():
        if fw.status != "ok":
            continue
        order = names((fw.name,))
        assert fw.name in order
        for dependency in fw.depends:
            assert order.index(dependency) < order.index(fw.name)


# Names, aliases and presets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "name"),
    [("torch", "pytorch"), ("sklearn", "scikit-learn"), ("TORCH", "pytorch"), ("tf", "tensorflow"), ("cv2", "opencv")],
)
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
    assert "Known frameworks: " in message and "scikit-learn" in message and "all-cpu" in message


def test_unknown_framework_without_close_match_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        lookup("zzzzzzzz")
    assert "Did you mean" not in str(info.value)
    assert "Known frameworks:" in str(info.value)


def test_presets_expand_like_deepo_tags():
    everything = names(("all-cpu",))
    for member in ("pytorch", "tensorflow", "jax", "keras", "scikit-learn", "jupyterlab", "scipy", "cython"):
        assert member in everything
    assert names(("all",)) == everything
    assert catalog.presets()["scientific"][:3] == ["numpy", "scipy", "pandas"]


def test_every_preset_member_is_a_usable_framework():
    for preset in PRESETS:
        for name in catalog.presets()[preset]:
            assert FRAMEWORKS[name].status == "ok", (preset, name)


def test_a_preset_cannot_be_pinned():
    with pytest.raises(ConfigError, match=r"Preset 'all' cannot take a version"):
        resolve(("all==1.0",))


# Coverage: every Deepo module has a row ----------------------------------------------------------------


DEEPO_MODULES = [
    "tensorflow", "pytorch", "keras", "jax", "mxnet", "chainer", "paddlepaddle", "onnx", "onnxruntime",
    "caffe", "darknet", "opencv", "jupyter", "jupyterlab", "sonnet", "theano", "lasagne", "cntk", "torch7",
    "boost", "caffe2", "numpy", "scipy", "pandas", "scikit-image", "scikit-learn", "matplotlib", "tqdm", "cython",
]  # fmt: skip
TODAY = ["xgboost", "lightgbm", "catboost", "transformers", "lightning", "tensorboard", "opencv-headless"]


@pytest.mark.parametrize("name", DEEPO_MODULES + TODAY)
def test_every_deepo_module_and_todays_picks_have_an_entry(name):
    fw = lookup(name)
    assert fw.description
    if fw.status == "ok":
        assert fw.pip or fw.apt, name
    else:
        assert fw.refusal.endswith("."), name
        assert fw.replacement in FRAMEWORKS and FRAMEWORKS[fw.replacement].status == "ok", name


@pytest.mark.parametrize(
    ("name", "replacement", "words"),
    [
        ("theano", "pytensor", "blas_opt_info"),
        ("lasagne", "keras", "Theano"),
        ("cntk", "onnxruntime", "retired in 2019"),
        ("lua-torch", "pytorch", "Lua"),
        ("caffe2", "pytorch", "merged into PyTorch"),
    ],
)
def test_dead_frameworks_are_refused_with_the_reason_and_the_replacement(name, replacement, words):
    with pytest.raises(ConfigError) as info:
        resolve(("numpy", name))
    message = str(info.value)
    assert "cannot be installed" in message
    assert words in message
    assert f'frameworks = ["{replacement}"]' in message


def test_catalog_is_consistent():
    assert len({fw.name for fw in ENTRIES}) == len(ENTRIES), "duplicate names"
    for fw in FRAMEWORKS.values():
        assert fw.module.isidentifier() or all(part.isidentifier() for part in fw.module.split(".")), fw.name
        assert fw.tier in TIERS
        for dependency in (*fw.depends, *fw.conflicts):
            assert dependency in FRAMEWORKS, f"{fw.name} names unknown {dependency}"
        if fw.version:
            assert fw.default_release is not None, f"{fw.name}'s default {fw.version} is not among its releases"
        series = [version_tuple(r.series) for r in fw.releases]
        assert series == sorted(series), f"{fw.name}: releases must be oldest first"
    for alias, target in ALIASES.items():
        assert target in FRAMEWORKS, alias
        assert alias not in FRAMEWORKS, alias
        assert alias not in PRESETS, alias


def test_every_default_installs_on_the_default_python():
    for fw in FRAMEWORKS.values():
        if fw.status == "ok" and fw.default_release is not None:
            assert fw.default_release.supports_python("3.11"), fw.name


def test_table_has_one_row_per_entry():
    rows = catalog.table()
    assert [row["name"] for row in rows] == sorted(FRAMEWORKS)
    torch = next(row for row in rows if row["name"] == "pytorch")
    assert torch["version"] == "2.13" and torch["cpu"] == ["torch"] and torch["status"] == "ok"
    cntk = next(row for row in rows if row["name"] == "cntk")
    assert cntk["status"] == "refused" and cntk["replacement"] == "onnxruntime" and cntk["cuda"] == []
    assert next(row for row in rows if row["name"] == "darknet")["cuda"] == []


# Pins -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "specifier"),
    [
        ("pytorch", "pytorch", ""),
        ("pytorch==2.5.*", "pytorch", "==2.5.*"),
        (" torch >= 2.4 , <2.6", "torch", ">=2.4,<2.6"),
    ],
)
def test_request_parsing(text, name, specifier):
    assert Request.parse(text) == Request(name, specifier)


def test_default_pin_and_user_pin():
    first = plan(("pytorch",)).selected[-1]
    assert first.packages == ("torch==2.13.*",)
    pinned = plan(("pytorch==2.5.*",)).selected[-1]
    assert pinned.packages == ("torch==2.5.*",) and pinned.specifier == "==2.5.*"
    assert plan(("numpy",)).selected[0].packages == ("numpy",), "numpy's version is left to the frameworks"


@pytest.mark.parametrize("pin", ["pytorch==9.9", "pytorch==1.13.*", "pytorch>=3", "scikit-learn<1.0"])
def test_a_pin_the_catalog_does_not_know_goes_to_the_resolver(pin):
    """The catalog's release records are not the judge of what exists: the lock's resolution is."""
    box = plan((pin,))
    chosen = box.selected[-1]
    assert chosen.specifier == pin.removeprefix(chosen.name)
    assert chosen.packages[0].endswith(chosen.specifier)


@pytest.mark.parametrize("pin", ["pytorch==2.5.1", "pytorch>=2.4,<2.6", "pytorch~=2.4", "pytorch!=2.13.*"])
def test_pins_that_match_a_known_release(pin):
    assert names((pin,)) == ["numpy", "pytorch"]


def test_the_same_framework_pinned_twice_is_an_error():
    with pytest.raises(ConfigError, match=r"pinned twice"):
        resolve(("torch==2.5.*", "pytorch==2.6.*"))
    assert names(("torch==2.5.*", "pytorch")) == ["numpy", "pytorch"]


def test_an_unreadable_pin_is_an_error():
    with pytest.raises(ConfigError, match=r"cannot read the version"):
        resolve(("pytorch=2.5",))


def test_a_debian_framework_cannot_be_pinned():
    with pytest.raises(ConfigError, match=r"comes from Debian packages"):
        resolve(("darknet==1.0",))


# Conflicts and cycles ----------------------------------------------------------------------------------------


def test_conflicting_frameworks_are_an_error():
    with pytest.raises(ConfigError) as info:
        resolve(("opencv", "opencv-headless"))
    assert "'opencv' and 'opencv-headless' conflict" in str(info.value)
    assert "keep one of them" in str(info.value)


def test_a_dependency_cycle_is_named(monkeypatch):
    a = Framework("aa", "a", "aa", pip=("aa",), depends=("bb",))
    b = Framework("bb", "b", "bb", pip=("bb",), depends=("aa",))
    monkeypatch.setitem(FRAMEWORKS, "aa", a)
    monkeypatch.setitem(FRAMEWORKS, "bb", b)
    with pytest.raises(ConfigError) as info:
        resolve(("aa",))
    assert "dependency cycle (aa -> bb -> aa)" in str(info.value)


# Python, base and CUDA ------------------------------------------------------------------------------------


def test_the_box_python_comes_from_the_base():
    assert plan((), base="deepbox/debian:bookworm").python == "3.11"
    assert plan((), base="deepbox/debian:bullseye").python == "3.9"
    assert plan((), base="ubuntu:24.04").python == "3.12"
    assert plan((), base="nvidia/cuda:12.4.1-runtime-ubuntu22.04").python == "3.10"
    assert plan((), base="my/own:image").python == "3.11"
    assert plan((), base="debian:bookworm-slim", python="3.12").python == "3.12"


def test_a_release_without_wheels_for_the_box_python_says_which_would_work():
    with pytest.raises(ConfigError) as info:
        plan(("pytorch==2.0.*",), python="3.12")
    message = str(info.value)
    assert "'pytorch' 2.0 has wheels for Python 3.8-3.11, not the box's Python 3.12" in message
    assert "pin pytorch to 2.2 to 2.14" in message
    with pytest.raises(ConfigError, match=r"Python 3.7-3.11"):
        plan(("mxnet",), python="3.12")


def test_a_debian_framework_needs_its_suite():
    with pytest.raises(ConfigError) as info:
        plan(("caffe",), base="deepbox/debian:bookworm")
    assert "deepbox base bootstrap --suite bullseye" in str(info.value)
    caffe = plan(("caffe",), base="deepbox/debian:bullseye")
    assert caffe.system_site_packages and caffe.selected[0].apt == ("caffe", "python3-caffe")
    with pytest.raises(ConfigError, match=r"base's own Python 3.9"):
        plan(("caffe",), base="deepbox/debian:bullseye", python="3.11")


def test_cpu_packages_and_indexes():
    chosen = {item.name: item for item in plan(("all-cpu",)).selected}
    assert chosen["pytorch"].index_urls == ("https://download.pytorch.org/whl/cpu",)
    assert chosen["tensorflow"].packages == ("tensorflow-cpu==2.21.*",)
    assert chosen["jax"].packages == ("jax==0.10.*",)
    assert chosen["onnxruntime"].packages == ("onnxruntime==1.30.*",)
    assert chosen["xgboost"].packages == ("xgboost-cpu==3.2.*",)


@pytest.mark.parametrize("names", [("all-cpu",), ("numpy", "ALL-CPU")])
def test_the_cpu_preset_is_refused_on_a_cuda_box(names):
    with pytest.raises(ConfigError) as caught:
        plan(names, device="cuda", cuda_major=12)
    assert str(caught.value) == (
        "Preset 'all-cpu' stands for CPU builds, and this is a cuda box; use \"all\" for the CUDA builds of the "
        'same frameworks, or device = "cpu".'
    )


def test_cuda_packages_and_indexes():
    chosen = {item.name: item for item in plan(("all", "paddle", "chainer"), device="cuda", cuda_major=12).selected}
    assert chosen["pytorch"].index_urls == (), "without a vendor tag PyTorch comes from PyPI"
    assert chosen["tensorflow"].packages == ("tensorflow[and-cuda]==2.21.*",)
    assert chosen["jax"].packages == ("jax[cuda12]==0.10.*",)
    assert chosen["onnxruntime"].packages == ("onnxruntime-gpu[cuda,cudnn]==1.30.*",)
    assert chosen["paddlepaddle"].packages == ("paddlepaddle-gpu==3.3.*",)
    assert chosen["chainer"].packages == ("chainer==7.8.*", "numpy<2", "cupy-cuda12x")
    assert chosen["xgboost"].packages == ("xgboost==3.2.*",)
    tagged = {
        item.name: item
        for item in plan(("pytorch", "paddle"), device="cuda", cuda_major=12, vendor_tag="cu126").selected
    }
    assert tagged["pytorch"].index_urls == ("https://download.pytorch.org/whl/cu126",)
    assert tagged["paddlepaddle"].index_urls == ("https://www.paddlepaddle.org.cn/packages/stable/cu126/",)
    thirteen = {item.name: item for item in plan(("jax", "chainer"), device="cuda", cuda_major=13).selected}
    assert thirteen["jax"].packages == ("jax[cuda13]==0.10.*",)
    assert thirteen["chainer"].packages[-1] == "cupy-cuda13x"


def test_frameworks_without_cuda_packages_fit_any_cuda_major():
    """numpy has no CUDA build of its own, so it never stands in the way of CUDA 13 (or 11)."""
    for major in (11, 12, 13):
        box = plan(("numpy", "scikit-learn", "pytorch"), device="cuda", cuda_major=major)
        assert [item.packages[0].split("=")[0] for item in box.selected] == ["numpy", "torch", "scikit-learn"]


def test_cuda_errors():
    with pytest.raises(ConfigError, match=r"'darknet' has no CUDA build"):
        plan(("darknet",), device="cuda", cuda_major=12)
    with pytest.raises(ConfigError, match=r"'mxnet' has no CUDA build.*use pytorch"):
        plan(("mxnet",), device="cuda", cuda_major=12)
    with pytest.raises(ConfigError, match=r"Unknown CUDA version '10.2'"):
        catalog.cuda.parse_setting("10.2")
    with pytest.raises(ConfigError, match=r"Unknown device"):
        plan(("pytorch",), device="tpu")


def test_keras_gets_a_backend_from_the_box():
    assert plan(("keras", "tensorflow")).env == (("KERAS_BACKEND", "tensorflow"),)
    assert plan(("keras", "pytorch")).env == (("KERAS_BACKEND", "torch"),)
    alone = plan(("keras",))
    assert alone.env == (("KERAS_BACKEND", "jax"),)
    assert [item.name for item in alone.selected] == ["numpy", "jax", "keras"]
    assert plan(("sonnet", "keras")).env == (("KERAS_BACKEND", "tensorflow"),), "sonnet brings tensorflow"


def test_ports_are_collected():
    assert plan(("tensorboard", "jupyterlab", "tensorflow")).ports == (6006, 8888)


# Driver table ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cuda", "driver"),
    [("11.8", "520.61.05"), ("12.0", "525.60.13"), ("12.4", "550.54.14"), ("12.4.1", "550.54.14"), ("12.8", "570.26")],
)
def test_minimum_driver_per_cuda_version(cuda, driver):
    assert catalog.cuda.min_driver(cuda) == driver


def test_driver_table_is_monotonic():
    drivers = [version_tuple(d) for d in catalog.cuda.MIN_DRIVER.values()]
    cudas = [version_tuple(c) for c in catalog.cuda.MIN_DRIVER]
    assert cudas == sorted(cudas) and drivers == sorted(drivers)


def test_driver_support_and_minor_version_compatibility():
    cuda = catalog.cuda
    assert cuda.driver_supports("550.54.15", "12.4", compat=False)
    assert not cuda.driver_supports("535.104.05", "12.4", compat=False)
    assert cuda.driver_supports("535.104.05", "12.4"), "12.x runs on any >= 525.60.13 driver"
    assert not cuda.driver_supports("470.57.02", "12.0")
    assert cuda.min_driver("12.6", compat=True) == "525.60.13"
    assert cuda.max_cuda("535.104.05") == "12.2"
    assert cuda.max_cuda("570.86.10") == "12.8"
    assert cuda.max_cuda("440.33") is None
    assert cuda.tag("12.4") == "cu124"
    assert cuda.parse_setting("13") == (13, None) and cuda.parse_setting("12.8") == (12, "12.8")


def test_vendor_tags_fully_supported_first_then_by_minor_version_compatibility():
    cuda = catalog.cuda
    assert cuda.vendor_tags(12, "550.54.15")[:3] == ["cu124", "cu123", "cu122"]
    assert cuda.vendor_tags(12, "550.54.15")[-4:] == ["cu129", "cu128", "cu126", "cu125"]
    assert cuda.vendor_tags(13, None)[0] == "cu135"
    assert cuda.vendor_tags(12, "580.65.06", exact="12.8") == ["cu128"]


def test_cuda_majors_need_a_driver_and_a_gpu_generation():
    cuda = catalog.cuda
    assert cuda.runs_major("580.65.06", 13) and not cuda.runs_major("575.51.03", 13)
    assert cuda.runs_major("525.60.13", 12) and not cuda.runs_major("470.182.03", 12)
    assert cuda.cc_runs_major("9.0", 13) and not cuda.cc_runs_major("7.0", 13), "CUDA 13 dropped Volta"
    assert cuda.cc_runs_major("7.0", 12)


# A base image that already has frameworks (Deepo, NVIDIA's and PyTorch's images) ------------------

DEEPO = BaseFacts(
    image_id="sha256:deepo",
    os="ubuntu",
    codename="bionic",
    python="3.6.9",
    python_path="/usr/local/bin/python3",
    packages={"torch": "1.10.0+cpu", "numpy": "1.19.5", "tensorflow-gpu": "2.4.1", "transformers": "4.18.0"},
)


def selected(box_plan) -> dict[str, object]:
    return {item.name: item for item in box_plan.selected}


def test_frameworks_the_base_has_are_used_not_installed_again():
    box = selected(plan(["pytorch", "tensorflow", "tqdm"], base="ufoym/deepo:all-py36", facts=DEEPO))
    assert box["pytorch"].provided == "1.10.0+cpu" and box["pytorch"].packages == ()
    assert box["numpy"].provided == "1.19.5" and box["numpy"].packages == ()
    assert box["tensorflow"].provided == "2.4.1", "tensorflow-gpu provides the tensorflow module"
    assert box["pytorch"].index_urls == (), "nothing to fetch from the vendor index"
    assert box["tqdm"].provided == "" and box["tqdm"].packages == ("tqdm",)


def test_the_box_python_and_suite_come_from_the_base_facts():
    box_plan = plan(["numpy"], base="ufoym/deepo:cpu", facts=DEEPO)
    assert box_plan.python == "3.6"
    assert box_plan.system_site_packages, "the venv sees the base's packages"
    # A release pin checks against the base's Python, which the image name does not tell.
    with pytest.raises(ConfigError, match=r"Python 3\.6"):
        plan(["scikit-learn"], base="ufoym/deepo:cpu", facts=DEEPO)


def test_a_pin_the_base_does_not_meet_is_refused_with_the_reason():
    with pytest.raises(ConfigError) as info:
        plan(["pytorch==2.13.*"], base="ufoym/deepo:cpu", facts=DEEPO)
    message = str(info.value)
    assert "already has torch 1.10.0+cpu" in message and "pytorch==2.13.*" in message
    assert "drop the version" in message
    box = selected(plan(["pytorch==1.10.*"], base="ufoym/deepo:cpu", facts=DEEPO))
    assert box["pytorch"].provided == "1.10.0+cpu"


def test_only_missing_packages_of_a_framework_are_installed():
    box = selected(plan(["transformers"], base="ufoym/deepo:cpu", facts=DEEPO))
    assert box["transformers"].provided == "4.18.0"
    assert box["transformers"].packages == ("datasets", "accelerate")


def test_another_python_than_the_base_s_uses_none_of_its_packages():
    box_plan = plan(["pytorch"], python="3.11", base="ufoym/deepo:cpu", facts=DEEPO)
    assert not any(item.provided for item in box_plan.selected)
    assert not box_plan.system_site_packages


def test_a_base_without_python_gets_the_suite_s_python():
    facts = BaseFacts(image_id="sha256:slim", os="debian", codename="bullseye")
    box_plan = plan(["caffe"], base="my-registry/debian-11", facts=facts)
    assert box_plan.python == "3.9"
    assert box_plan.system_site_packages
    with pytest.raises(ConfigError, match="bullseye"):
        plan(["darknet"], base="my-registry/debian-11", facts=facts)
    bionic = BaseFacts(image_id="sha256:bionic", os="ubuntu", codename="bionic")
    assert plan(["numpy"], base="deepbox/ubuntu:bionic", facts=bionic).python == "3.6"
