"""`deepbox dockerfile --output DIR`: the folder is a complete build context that `docker build` builds."""

from __future__ import annotations

import contextlib
import shutil
import subprocess

import pytest
from conftest import PREFIX


def test_the_written_context_builds_with_docker_and_has_the_frameworks(make_project, docker_client, tmp_path):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    project = make_project("context", 'frameworks = ["numpy"]\n', owner=None)
    folder = tmp_path / "build-context"
    written = project.deepbox("dockerfile", "--output", str(folder))
    assert written.code == 0, written.err
    tag = f"{PREFIX}-context:test"
    try:
        build = subprocess.run(
            ["docker", "build", "--quiet", "--label", f"deepbox.test={PREFIX}", "--tag", tag, str(folder)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert build.returncode == 0, build.stderr[-3000:]
        image = docker_client.images.get(tag)
        assert image.attrs["Config"]["Entrypoint"] == ["/usr/local/bin/deepbox-entrypoint"]
        imported = docker_client.containers.run(
            tag, entrypoint=["/opt/venv/bin/python", "-c", "import numpy; print(numpy.__name__)"], remove=True
        )
        assert imported.decode().strip() == "numpy"
    finally:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, force=True)
