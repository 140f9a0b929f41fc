"""deepbox base bootstrap: a Debian base image from Debian packages, for hosts without a registry."""

from __future__ import annotations

import os

import pytest
from conftest import PREFIX, run_deepbox


@pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap needs root")
def test_bootstrap_makes_a_runnable_debian_image(docker_client, tmp_path):
    tag = f"{PREFIX}-base:bookworm"
    result = run_deepbox(tmp_path, "base", "bootstrap", "--suite", "bookworm", "--tag", tag, timeout=900)
    assert result.code == 0, result.err
    assert tag in result.err  # progress and the closing line go to stderr
    output = docker_client.containers.run(tag, ["cat", "/etc/debian_version"], remove=True).decode()
    assert output.startswith("12.")


def test_bootstrap_of_an_unknown_suite_is_one_sentence(docker_client, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    result = run_deepbox(tmp_path, "base", "bootstrap", "--suite", "no-such-suite", "--tag", f"{PREFIX}-bad:x")
    assert result.code == 1
    assert "debootstrap of Debian no-such-suite" in result.err
    assert "Traceback" not in result.err
    assert not docker_client.images.list(name=f"{PREFIX}-bad")
