"""[secrets] on a real box: the values reach ssh commands, interactive and login shells and JupyterLab,
and appear in no `docker inspect`, image history, image or container layer, snapshot or box log;
the JupyterLab token and the box's private SSH key likewise (nor in the build log or a file in the
project folder), while the token's URL keeps working; the public key is in no layer or snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import PREFIX, Project, remove_box, run_deepbox

HF_TOKEN = f"hf_{uuid.uuid4().hex}"
TRICKY = f'a\'b $HOME "c" `x` {uuid.uuid4().hex[:8]}'  # quotes, $ and backquotes arrive as written
WANDB_KEY = f"wandb-{uuid.uuid4().hex}"
VALUES = (HF_TOKEN, TRICKY, WANDB_KEY)


@pytest.fixture(scope="module")
def secret_box(tmp_path_factory, home, docker_client):
    root = tmp_path_factory.mktemp("secrets")
    path = root / "sec"
    path.mkdir()
    os.chown(path, 4242, 4243)
    env_file = root / "sec.env"  # outside the project folder
    env_file.write_text(f"# the box's tokens\nHF_TOKEN={HF_TOKEN}\nexport TRICKY={TRICKY}\n")
    project = Project(path, f"{PREFIX}-sec", home)
    project.write_config(
        f'jupyter = true\n[secrets]\nenv_file = "{env_file}"\nWANDB_API_KEY = {{ env = "DEEPBOX_TEST_WANDB" }}'
    )
    project.env_file = env_file
    project.environ = {"DEEPBOX_TEST_WANDB": WANDB_KEY}
    result = project.deepbox("up", "--json", env=project.environ)
    assert result.code == 0, result.err
    project.up_output = result.out + result.err  # with the image's build log, built for this box
    project.up = json.loads(result.out)
    url = urlparse(project.up["jupyter_url"])
    project.token = parse_qs(url.query)["token"][0]
    project.api = f"{url.scheme}://{url.netloc}/api/status?token={project.token}"
    project.private_key, project.public_key = _key_needles(project)
    yield project
    remove_box(docker_client, project.name)


def _jupyter_answers(url: str, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL of our box
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _shell(project: Project, stdin: str) -> str:
    """An interactive login shell over ssh (a terminal, no command), fed commands on stdin."""
    args = ["ssh", "-F", str(project.home / ".ssh/config"), "-o", "BatchMode=yes", "-tt", project.alias]
    done = subprocess.run(args, input=stdin + "exit\n", capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def _key_needles(project: Project) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """What would give the box's client key away: the private key as its file has it (each base64 line
    but the first, which every ed25519 key shares) and raw; the public key's base64."""
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    resolved = subprocess.run(
        ["ssh", "-G", "-F", str(project.home / ".ssh/config"), project.alias],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    identity = Path(next(line.split(" ", 1)[1] for line in resolved.splitlines() if line.startswith("identityfile ")))
    assert identity.is_relative_to(project.home / ".local/share/deepbox/keys")  # the key deepbox made for the box
    text = identity.read_bytes()
    body = [line for line in text.splitlines() if line and not line.startswith(b"-----")]
    private = {f"the private key (line {n})": line for n, line in enumerate(body[1:], 2) if len(line) >= 40}
    private["the private key (raw)"] = load_ssh_private_key(text, None).private_bytes_raw()
    public = Path(f"{identity}.pub").read_text().split()[1].encode()
    return private, {"the public key": public}


def _needles(box: Project, *, public: bool = True) -> dict[str, bytes]:
    """Every secret, the Jupyter token, the private key and (unless allowed there) the public key."""
    values = {name: value.encode() for name, value in zip(("HF_TOKEN", "TRICKY", "WANDB_API_KEY"), VALUES, strict=True)}
    return {
        **values,
        "the Jupyter token": box.token.encode(),
        **box.private_key,
        **(box.public_key if public else {}),
    }


def _leaks(chunks: Iterable[bytes], needles: dict[str, bytes]) -> list[str]:
    """Which needles (by name) occur in a byte stream (an exported layer or a saved image), read in chunks."""
    overlap = max(len(needle) for needle in needles.values())
    found: set[str] = set()
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        found.update(name for name, needle in needles.items() if needle in window)
        tail = window[-overlap:]
    return sorted(found)


def test_secrets_reach_ssh_commands(secret_box):
    result = secret_box.ssh('printf "%s|%s|%s" "$HF_TOKEN" "$TRICKY" "$WANDB_API_KEY"')
    assert result.code == 0, result.err
    assert result.out == "|".join(VALUES)


def test_secrets_reach_interactive_and_login_shells(secret_box):
    assert f"[{HF_TOKEN}]" in _shell(secret_box, 'echo "[$HF_TOKEN]"\n')
    # A login shell started with an empty environment reads them itself (/etc/profile.d).
    login = secret_box.ssh("env -i HOME=/tmp bash -lc 'echo \"$WANDB_API_KEY\"'")
    assert login.out.strip() == WANDB_KEY, login.err


def test_the_secrets_file_is_the_box_users_alone(secret_box):
    result = secret_box.ssh("stat -c '%a %U' /run/deepbox/secrets /run/deepbox/jupyter-token")
    assert result.out.split("\n")[:2] == [f"400 {secret_box.up['user']}"] * 2, result.err


def test_secrets_reach_jupyter_kernels(secret_box, docker_client):
    container = docker_client.containers.get(secret_box.alias)
    # The server's environment, which its kernels and terminals inherit.
    script = (
        "import os\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    if int(pid) != os.getpid() and b'jupyter-lab' in open(f'/proc/{pid}/cmdline', 'rb').read():\n"
        "        print(open(f'/proc/{pid}/environ', 'rb').read().replace(b'\\0', b'\\n').decode())\n"
    )
    environ = container.exec_run(["python3", "-c", script], user=secret_box.up["user"]).output.decode()
    assert f"HF_TOKEN={HF_TOKEN}" in environ.splitlines()


def test_no_value_in_inspect_history_logs_or_output(secret_box, docker_client):
    container = docker_client.containers.get(secret_box.alias)
    image = docker_client.images.get(container.attrs["Config"]["Image"])
    history = subprocess.run(
        ["docker", "history", "--no-trunc", image.id], capture_output=True, text=True, check=True
    ).stdout
    status = run_deepbox(secret_box.path, "status", "--json")
    assert status.code == 0, status.err
    texts = {
        "container inspect": json.dumps(container.attrs),
        "image inspect": json.dumps(image.attrs),
        "image history": history,
        "box log": container.logs().decode(errors="replace"),
        "up --json": secret_box.up_output,  # and the build log
        "status --json": status.out + status.err,
    }
    for what, text in texts.items():
        needles = _needles(secret_box, public=what != "container inspect")  # authorized_keys comes from there
        if what == "up --json":
            del needles["the Jupyter token"]  # its URL is the output
        assert _leaks([text.encode()], needles) == [], f"the {what}"
    assert secret_box.public_key["the public key"].decode() in texts["container inspect"]  # the needle works
    assert _jupyter_answers(secret_box.api)


def test_no_value_in_the_container_layer(secret_box, docker_client):
    container = docker_client.containers.get(secret_box.alias)
    assert _leaks(container.export(), _needles(secret_box)) == []


def test_the_image_and_a_snapshot_hold_no_secret_nor_key(secret_box, docker_client):
    tag = f"{PREFIX}-secsnap:1"
    result = secret_box.deepbox("snapshot", tag)
    assert result.code == 0, result.err
    image = docker_client.images.get(tag)
    history = subprocess.run(["docker", "history", "--no-trunc", tag], capture_output=True, text=True, check=True)
    needles = _needles(secret_box)
    assert _leaks([json.dumps(image.attrs).encode(), history.stdout.encode()], needles) == []
    # Every layer of the box's image and of the snapshot, in one archive (shared layers once).
    box_image = docker_client.containers.get(secret_box.alias).attrs["Config"]["Image"]
    with subprocess.Popen(["docker", "save", box_image, tag], stdout=subprocess.PIPE) as save:
        assert save.stdout is not None
        found = _leaks(iter(lambda: save.stdout.read(1 << 20), b""), needles)
    assert save.returncode == 0
    assert found == []


def test_no_secret_nor_key_in_the_project_folder(secret_box):
    files = [path for path in secret_box.path.rglob("*") if path.is_file() and not path.is_symlink()]
    assert secret_box.path / "deepbox.toml" in files
    leaks = {
        str(path.relative_to(secret_box.path)): _leaks([path.read_bytes()], _needles(secret_box)) for path in files
    }
    assert {name: found for name, found in leaks.items() if found} == {}


def test_a_changed_secret_arrives_with_up_without_recreating(secret_box):
    new_token = f"hf_{uuid.uuid4().hex}"
    text = secret_box.env_file.read_text()
    secret_box.env_file.write_text(text.replace(HF_TOKEN, new_token))
    try:
        result = secret_box.deepbox("up", "--json", env=secret_box.environ)
        assert result.code == 0, result.err
        assert json.loads(result.out)["action"] == "running"
        assert secret_box.ssh('echo "$HF_TOKEN"').out.strip() == new_token
    finally:
        secret_box.env_file.write_text(text)
        assert secret_box.deepbox("up", env=secret_box.environ).code == 0


def test_after_a_restart_by_the_engine_up_hands_them_over_again(secret_box, docker_client):
    docker_client.containers.get(secret_box.alias).restart(timeout=10)  # as the restart policy does
    # SSH works (the public key is in the container's settings); the secrets wait for `deepbox up`.
    deadline = time.monotonic() + 60
    while (missing := secret_box.ssh('echo "${HF_TOKEN-unset}"')).code != 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert missing.out.strip() == "unset", missing.err
    assert "deepbox: the box restarted without its secrets; run `deepbox up` to hand them over." in _shell(
        secret_box, "true\n"
    )
    result = secret_box.deepbox("up", "--json", env=secret_box.environ)
    assert result.code == 0, result.err
    assert secret_box.ssh('echo "$HF_TOKEN"').out.strip() == HF_TOKEN
    assert _jupyter_answers(secret_box.api)


def test_down_and_up_bring_them_back(secret_box):
    assert secret_box.deepbox("down").code == 0
    result = secret_box.deepbox("up", env=secret_box.environ)
    assert result.code == 0, result.err
    assert secret_box.ssh('echo "$WANDB_API_KEY"').out.strip() == WANDB_KEY
    assert _jupyter_answers(secret_box.api)


def test_an_unset_variable_stops_up_before_anything_starts(make_project, docker_client):
    project = make_project("secunset", '[secrets]\nHF_TOKEN = { env = "DEEPBOX_TEST_UNSET_VARIABLE" }')
    env = {k: v for k, v in os.environ.items() if k != "DEEPBOX_TEST_UNSET_VARIABLE"}
    proc = subprocess.run(
        [*__import__("conftest").deepbox_command(project.path, "up")], capture_output=True, text=True, env=env,
        timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"Error: secrets.HF_TOKEN in {project.path / 'deepbox.toml'} takes its value from "
        "$DEEPBOX_TEST_UNSET_VARIABLE, which is not set here; export DEEPBOX_TEST_UNSET_VARIABLE before `deepbox up`."
    )
    assert docker_client.containers.list(all=True, filters={"label": f"deepbox.box={project.name}"}) == []
