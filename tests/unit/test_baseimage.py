"""baseimage: what a base image already has, from its configured PATH and the probe's output."""

from __future__ import annotations

import json
import subprocess

import pytest

from deepbox import baseimage, paths
from deepbox.baseimage import DEFAULT_PATH, PROBE, BaseFacts, parse
from deepbox.engine import Image
from deepbox.errors import DeepboxError

DEEPO_OUTPUT = """os=ubuntu
os_like=debian
codename=bionic
glibc=2.27
python_path=/usr/local/bin/python3
python=3.6.9
package=torch 1.10.0+cpu
package=Scikit_Learn 0.24.2
package=tensorflow-gpu 2.4.1
"""


def test_parse_reads_the_probe_and_the_image_path():
    facts = parse("sha256:abc", ["LANG=C.UTF-8", "PATH=/opt/conda/bin:/usr/bin:/bin"], DEEPO_OUTPUT)
    assert facts.path == "/opt/conda/bin:/usr/bin:/bin"
    assert (facts.os, facts.codename, facts.glibc) == ("ubuntu", "bionic", "2.27")
    assert (facts.python, facts.python_series, facts.python_path) == ("3.6.9", "3.6", "/usr/local/bin/python3")
    assert facts.packages == {"torch": "1.10.0+cpu", "scikit-learn": "0.24.2", "tensorflow-gpu": "2.4.1"}
    assert facts.apt_based


def test_an_imported_image_has_no_path_and_a_minimal_one_no_python():
    facts = parse("sha256:abc", [], "os=debian\nos_like=\ncodename=bookworm\nglibc=2.36\npython_path=\n")
    assert facts.path == DEFAULT_PATH
    assert facts.python is None and facts.python_series is None
    assert facts.packages == {}
    assert facts.apt_based


def test_only_debian_and_its_derivatives_are_apt_based():
    assert not parse("x", [], "os=alpine\nos_like=\n").apt_based
    assert not parse("x", [], "os=fedora\nos_like=\n").apt_based
    assert parse("x", [], "os=linuxmint\nos_like=ubuntu debian\n").apt_based


def test_the_probe_runs_under_sh_and_reports_this_python(tmp_path):
    """The real probe, run here: this machine's os-release and python3 stand in for an image's."""
    done = subprocess.run(["/bin/sh", "-c", PROBE], capture_output=True, text=True, check=True)
    facts = parse("local", [], done.stdout)
    assert facts.os
    assert facts.glibc.count(".") == 1
    if facts.python:
        assert facts.python_path
        assert facts.packages, "every python3 has some distribution (pip, setuptools) or the system's"


IMAGE = Image("sha256:0123", ("PATH=/opt/conda/bin:/usr/bin",))


class _Engine:
    def __init__(self) -> None:
        self.runs = 0

    def image(self, name):
        return IMAGE

    def run_once(self, image, command, **kwargs):
        self.runs += 1
        assert kwargs["network"] == "none" and kwargs["entrypoint"] == ["/bin/sh", "-c"]
        return DEEPO_OUTPUT


def test_facts_are_read_once_per_image_id():
    engine = _Engine()
    first = baseimage.facts(engine, "ufoym/deepo:cpu")
    second = baseimage.facts(engine, "ufoym/deepo:cpu")
    assert engine.runs == 1
    assert first == second
    assert first.path == "/opt/conda/bin:/usr/bin"
    assert json.loads(paths.base_facts("sha256:0123").read_text())["python"] == "3.6.9"
    assert isinstance(first, BaseFacts)


@pytest.mark.parametrize(
    "base",
    [
        "debian:bookworm-slim",
        "deepbox/debian:bookworm",
        "nvcr.io/nvidia/pytorch:24.01-py3",
        "localhost:5000/team/box:V1.0",
        "[::1]:5000/box",
        "ghcr.io/a/b@sha256:" + "a" * 64,
        "0123456789ab" * 4,  # an image id
    ],
)
def test_image_references_docker_accepts(base):
    baseimage.check_reference(base, "deepbox.toml")


@pytest.mark.parametrize(
    ("base", "hint"),
    [
        ("Debian:Bookworm", '; did you mean "debian:bookworm"?'),
        ("debian:bookworm slim", "."),
        ("debian:", "."),
        ("-debian", "."),
    ],
)
def test_image_references_docker_refuses(base, hint):
    with pytest.raises(DeepboxError) as raised:
        baseimage.check_reference(base, "/p/deepbox.toml")
    assert raised.value.message == (
        f'base = "{base}" in /p/deepbox.toml is not an image reference: write it as [REGISTRY/]NAME[:TAG], the name '
        f'in lowercase letters, digits and . _ - (such as "debian:bookworm-slim"){hint}'
    )
