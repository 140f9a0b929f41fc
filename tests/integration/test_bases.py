"""Every base and host the recipe's users have: older Debian and Ubuntu (older OpenSSH, older Python),
Caffe on Debian bullseye, an image that already has frameworks (like Deepo's), and a root host.

The old bases are made here, as users without a registry make them: `deepbox base bootstrap`
(Debian bullseye: OpenSSH 8.4, Python 3.9; Ubuntu 18.04: OpenSSH 7.6, Python 3.6). Ubuntu's archive
key comes from its ubuntu-keyring package, checked against the SHA-256 that Ubuntu's signed noble
index gives for it. Every image, container and volume made here is removed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import BASE_IMAGE, PREFIX, Project, deepbox_command, remove_box, run_deepbox, ssh_audit

KEYRING_DEB = "http://archive.ubuntu.com/ubuntu/pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
KEYRING_SHA256 = "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8"
OWNER = (4242, 4243)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and the root-host case need root")


def _unavailable(reason: str) -> None:
    if os.environ.get("DEEPBOX_REQUIRE_DOCKER"):
        pytest.fail(reason)
    pytest.skip(reason)


def _ubuntu_keyring(folder: Path) -> Path:
    deb = folder / "ubuntu-keyring.deb"
    with urllib.request.urlopen(KEYRING_DEB, timeout=60) as answer:  # a fixed URL; its content is hash-checked
        deb.write_bytes(answer.read())
    if hashlib.sha256(deb.read_bytes()).hexdigest() != KEYRING_SHA256:
        raise RuntimeError(f"{KEYRING_DEB} does not have the SHA-256 Ubuntu's index gives")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(folder / "keyring")], check=True)
    return folder / "keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg"


@pytest.fixture(scope="session")
def old_bases(docker_client, tmp_path_factory) -> dict[str, str]:
    """suite -> image tag: Debian bullseye and Ubuntu bionic, bootstrapped side by side."""
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    folder = tmp_path_factory.mktemp("bases")
    try:
        keyring = _ubuntu_keyring(folder)
    except Exception as exc:
        _unavailable(f"Ubuntu's archive keyring could not be fetched ({exc})")
    tags = {"bullseye": f"{PREFIX}-base:bullseye", "bionic": f"{PREFIX}-base:bionic"}

    def bootstrap(suite: str) -> subprocess.CompletedProcess[str]:
        extra = ["--keyring", str(keyring)] if suite == "bionic" else []
        command = deepbox_command(folder, "base", "bootstrap", "--suite", suite, "--tag", tags[suite], *extra)
        return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(tags, pool.map(bootstrap, tags), strict=True))
    for suite, done in results.items():
        if done.returncode != 0:
            _unavailable(f"deepbox base bootstrap --suite {suite} failed: {done.stderr[-600:]}")
    return tags


@pytest.fixture
def old_project(tmp_path, home, docker_client):
    made: list[Project] = []

    def make(slug: str, base: str, body: str) -> Project:
        path = tmp_path / slug
        path.mkdir()
        os.chown(path, *OWNER)
        project = Project(path, f"{PREFIX}-{slug}", home)
        project.write_config(body, base=base)
        made.append(project)
        return project

    yield make
    for project in made:
        remove_box(docker_client, project.name)


# suite -> (OpenSSH version in the box, the notes `up` must show, the box's Python series)
OLD = {
    "bullseye": ("8.4", ["no post-quantum key exchange"], "3.9"),
    "bionic": ("7.6", ["no post-quantum key exchange", "no SetEnv"], "3.6"),
}


@ROOT_ONLY
@pytest.mark.parametrize("suite", sorted(OLD))
def test_core_box_on_an_old_base(old_bases, old_project, suite):
    openssh, notes, python = OLD[suite]
    project = old_project(f"old-{suite}", old_bases[suite], 'frameworks = ["numpy"]\n[env]\nGREETING = "hi there"')
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    up = json.loads(result.out)
    assert [note for note in up["notes"] if not any(word in note for word in notes)] == []
    assert len(up["notes"]) == len(notes)
    assert all(f"OpenSSH {openssh}" in note for note in up["notes"])
    assert up["python_version"].startswith(python + ".")
    assert {row["name"]: row["ok"] for row in up["frameworks"]} == {"numpy": True}

    # The pinned host key is what lets ssh in; the session sees the box's environment and Python.
    session = project.ssh('echo "$GREETING|$VIRTUAL_ENV|$(command -v python)" && id -u && touch /workspace/from-box')
    assert session.code == 0, session.err
    assert session.out.split() == ["hi", "there|/opt/venv|/opt/venv/bin/python", str(OWNER[0])]
    assert (project.path / "from-box").stat().st_uid == OWNER[0]
    refused = project.ssh("true", "-o", "UserKnownHostsFile=/dev/null", "-o", "ControlPath=none")
    assert "Host key verification failed" in refused.err

    report = ssh_audit(up["port"])
    assert not report.get("recommendations", {}).get("critical"), report["recommendations"]
    assert [key["algorithm"] for key in report["key"]] == ["ssh-ed25519"]

    assert project.deepbox("down").code == 0
    again = project.deepbox("up", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["action"] == "started"
    assert project.ssh("python -c 'import numpy'", "-o", "ControlPath=none").code == 0


@ROOT_ONLY
def test_caffe_box_on_debian_bullseye(old_bases, old_project):
    project = old_project("caffe", old_bases["bullseye"], 'frameworks = ["caffe"]')
    result = project.deepbox("up", "--json", timeout=1500)
    assert result.code == 0, result.err
    checks = {row["name"]: row for row in json.loads(result.out)["frameworks"]}
    assert checks["caffe"]["ok"] and checks["caffe"]["version"] == "1.0.0"
    over_ssh = project.ssh("python -c 'import caffe; print(caffe.__version__, caffe.__file__)'")
    assert over_ssh.code == 0, over_ssh.err
    assert over_ssh.out.split() == ["1.0.0", "/usr/lib/python3/dist-packages/caffe/__init__.py"]


# An image like Deepo's: frameworks in the system Python, no venv, its own folder on PATH.
DEEPO_LIKE = f"""FROM {BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-numpy python3-sklearn \\
 && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /opt/deepo/bin && printf '#!/bin/sh\\necho deepo tool\\n' > /opt/deepo/bin/deepo-tool \\
 && chmod 755 /opt/deepo/bin/deepo-tool
ENV PATH=/opt/deepo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""


@pytest.fixture(scope="module")
def deepo_like(docker_client, tmp_path_factory) -> tuple[str, dict[str, str]]:
    """The image, and the versions of its own numpy and scikit-learn."""
    import io

    tag = f"{PREFIX}-deepo:1"
    docker_client.images.build(fileobj=io.BytesIO(DEEPO_LIKE.encode()), tag=tag, rm=True, forcerm=True)
    versions = (
        docker_client.containers.run(
            tag, ["python3", "-c", "import numpy, sklearn; print(numpy.__version__, sklearn.__version__)"], remove=True
        )
        .decode()
        .split()
    )
    return tag, {"numpy": versions[0], "scikit-learn": versions[1]}


def test_a_base_with_frameworks_is_used_not_installed_again(deepo_like, make_project):
    tag, versions = deepo_like
    project = make_project("deepo")
    project.write_config('frameworks = ["numpy", "scikit-learn"]', base=tag)
    assert not versions["scikit-learn"].startswith("1.9."), "the catalog's default would be 1.9"

    printed = project.deepbox("dockerfile")
    assert printed.code == 0, printed.err
    assert "already has numpy" in printed.out and "scikit-learn" in printed.out
    assert "--system-site-packages" in printed.out

    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    checks = {row["name"]: row for row in json.loads(result.out)["frameworks"]}
    assert {name: row["version"] for name, row in checks.items()} == versions
    assert all(row["from_base"] for row in checks.values())
    where = project.ssh("python -c 'import sklearn; print(sklearn.__file__)' && deepo-tool && uv pip list")
    assert where.code == 0, where.err
    lines = where.out.splitlines()
    assert lines[0].startswith("/usr/lib/python3/dist-packages/sklearn/")
    assert lines[1] == "deepo tool", "the base's PATH is kept behind the venv's"

    pinned = make_project("deepo-pin")
    pinned.write_config('frameworks = ["scikit-learn==1.9.*"]', base=tag)
    refused = pinned.deepbox("up")
    assert refused.code == 1
    assert f"already has scikit-learn {versions['scikit-learn']}" in refused.err
    assert "Traceback" not in refused.err


@ROOT_ONLY
def test_a_root_host_s_box_writes_its_project_and_mounts_as_root(make_project, home, docker_client):
    project = make_project("rooted", 'mounts = ["~/data:/data"]', owner=None)
    assert project.path.stat().st_uid == 0
    assert not (home / "data").exists()
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["user"] == "root"

    written = project.ssh("mkdir -p /workspace/outputs && echo x > /workspace/outputs/metrics.json && "
                          "echo y > /data/out.txt && id -u")  # fmt: skip
    assert written.code == 0, written.err
    assert written.out.strip() == "0"
    for path in (project.path / "outputs" / "metrics.json", home / "data" / "out.txt", home / "data"):
        assert path.stat().st_uid == 0, path

    # Still key-only: no password for root, and no other user may log in.
    stranger = project.ssh("true", "-l", "nobody", "-o", "ControlPath=none")
    assert stranger.code != 0 and "Permission denied" in stranger.err
    report = ssh_audit(json.loads(result.out)["port"])
    assert not report.get("recommendations", {}).get("critical")
    box = docker_client.containers.get(project.alias)
    assert box.attrs["HostConfig"]["PortBindings"]["22/tcp"][0]["HostIp"] == "127.0.0.1"
    assert run_deepbox(project.path, "rm").code == 0
