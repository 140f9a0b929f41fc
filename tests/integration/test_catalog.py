"""The framework catalog in real builds: a representative subset in one box, and the torch CPU wheel.

CI cost is kept small: one box with the classical-ML subset (scikit-learn, xgboost, lightgbm,
onnxruntime, opencv-headless, plus project requirements), and PyTorch from the local CPU wheel
folder when this machine has one. Every entry is built one by one by bench/catalog_smoke.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TORCH_WHEELS = Path("/opt/wheels")
SUBSET = ["scikit-learn", "xgboost", "lightgbm", "onnxruntime", "opencv-headless"]


def test_subset_box_imports_every_framework_and_the_requirements(make_project):
    project = make_project("catalog", f"frameworks = {json.dumps(SUBSET)}")
    (project.path / "requirements.txt").write_text("tqdm\n")
    result = project.deepbox("up", "--json", timeout=1500)
    assert result.code == 0, result.err
    checks = {row["name"]: row for row in json.loads(result.out)["frameworks"]}
    assert set(checks) == {"numpy", *SUBSET}
    for name, row in checks.items():
        assert row["ok"], (name, row["error"])
        assert row["version"], name
        assert row["gpu"] in (None, False), name
    assert checks["scikit-learn"]["version"].startswith("1.9.")
    assert checks["xgboost"]["version"].startswith("3.2.")
    # The project's requirements came last and are importable; uv left no cache behind.
    assert project.ssh("python -c 'import tqdm'").code == 0
    assert project.ssh("test ! -e ~/.cache/uv && uv --version").code == 0


def test_refused_framework_fails_before_any_build(make_project):
    project = make_project("theano", 'frameworks = ["theano"]')
    result = project.deepbox("up")
    assert result.code == 1
    assert "Framework 'theano' cannot be installed" in result.err
    assert 'frameworks = ["pytensor"]' in result.err
    assert "Traceback" not in result.err


@pytest.mark.skipif(not TORCH_WHEELS.is_dir(), reason="no local CPU wheel folder /opt/wheels on this machine")
def test_pytorch_cpu_from_a_local_wheel_folder(make_project):
    project = make_project("torch", 'frameworks = ["pytorch==2.13.0"]\nframework_indexes = false')
    config = project.path / "deepbox.toml"
    config.write_text(config.read_text().replace("[build]\n", f'[build]\nfind_links = ["{TORCH_WHEELS}"]\n'))
    result = project.deepbox("up", "--json", timeout=1500)
    assert result.code == 0, result.err
    checks = {row["name"]: row for row in json.loads(result.out)["frameworks"]}
    assert checks["pytorch"]["ok"], checks["pytorch"]["error"]
    assert checks["pytorch"]["version"].startswith("2.13.0+cpu")
    assert checks["pytorch"]["gpu"] is False
    # BuildKit mounted the wheel folder for the installs: the image keeps no copy of it. dpkg left the
    # man pages of the box's own packages out; pip and uv still install.
    assert project.ssh('test -z "$(ls -A /tmp/deepbox-wheels 2>/dev/null)"').code == 0
    assert project.ssh("test ! -e /usr/share/man/man8/sshd.8.gz && test ! -e /var/cache/apt/pkgcache.bin").code == 0
    assert project.ssh("uv pip install -q --no-deps six && pip --version && python -c 'import six'").code == 0
