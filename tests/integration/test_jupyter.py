"""JupyterLab in the box: loopback-only, token-protected, supervised, and usable from a real browser."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import parse_qs, urlparse

import pytest

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def notebook_box(tmp_path_factory, home, docker_client):
    from conftest import PREFIX, Project, remove_box

    path = tmp_path_factory.mktemp("jupyter") / "nb"
    path.mkdir()
    os.chown(path, 4242, 4243)
    project = Project(path, f"{PREFIX}-nb", home)
    project.write_config("jupyter = true")
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    project.up = json.loads(result.out)
    url = urlparse(project.up["jupyter_url"])
    project.base = f"{url.scheme}://{url.netloc}"
    project.token = parse_qs(url.query)["token"][0]
    _wait_for(f"{project.base}/api/status?token={project.token}")
    yield project
    remove_box(docker_client, project.name)


def _wait_for(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL of our box
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def _request(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=data)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_url_is_loopback_and_token_is_private(notebook_box, home):
    assert urlparse(notebook_box.up["jupyter_url"]).hostname == "127.0.0.1"
    token_file = home / ".local/share/deepbox/jupyter" / f"{notebook_box.name}.token"
    assert token_file.read_text().strip() == notebook_box.token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert notebook_box.deepbox("jupyter").out.strip() == notebook_box.up["jupyter_url"]


def test_jupyter_name_from_another_folder(notebook_box, tmp_path):
    from conftest import run_deepbox

    result = run_deepbox(tmp_path, "jupyter", notebook_box.name)
    assert result.code == 0, result.err
    assert result.out.strip() == notebook_box.up["jupyter_url"]


def test_token_is_on_no_command_line_in_the_box(notebook_box, docker_client):
    container = docker_client.containers.get(notebook_box.alias)
    script = (
        "import os\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    if int(pid) == os.getpid(): continue\n"
        "    try: print(open(f'/proc/{pid}/cmdline','rb').read().replace(b'\\0', b' ').decode())\n"
        "    except OSError: pass\n"
    )
    lines = container.exec_run(["python3", "-c", script]).output.decode()
    assert "jupyter" in lines  # the server is there...
    assert notebook_box.token not in lines  # ...and its token is not on any command line


def test_requests_without_the_token_are_refused(notebook_box):
    code, _ = _request(f"{notebook_box.base}/api/kernels")
    assert code == 403
    code, _ = _request(f"{notebook_box.base}/api/kernels?token=wrong")
    assert code == 403


def test_a_kernel_runs_numpy(notebook_box):
    import websocket

    code, body = _request(f"{notebook_box.base}/api/kernels?token={notebook_box.token}", "POST", b"{}")
    assert code == 201, body
    kernel = json.loads(body)["id"]
    ws_url = f"ws{notebook_box.base[4:]}/api/kernels/{kernel}/channels?token={notebook_box.token}"
    channel = websocket.create_connection(ws_url, timeout=60)
    try:
        msg_id = uuid.uuid4().hex
        channel.send(
            json.dumps(
                {
                    "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "t", "session": "s",
                               "version": "5.3"},
                    "parent_header": {}, "metadata": {}, "channel": "shell",
                    "content": {"code": "import numpy; print(numpy.__version__)", "silent": False},
                }
            )
        )  # fmt: skip
        output = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(channel.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream":
                output += message["content"]["text"]
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
    finally:
        channel.close()
        _request(f"{notebook_box.base}/api/kernels/{kernel}?token={notebook_box.token}", "DELETE")
    numpy_version = next(r["version"] for r in notebook_box.up["frameworks"] if r["name"] == "numpy")
    assert output.strip() == numpy_version


def test_headless_chromium_shows_jupyterlab(notebook_box, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("DEEPBOX_REQUIRE_BROWSER"):
            pytest.fail("headless Chromium is required: apt-get install chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    shot = tmp_path / "jupyterlab.png"
    browser = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,800", "--virtual-time-budget=20000",
    ]  # fmt: skip
    dom = subprocess.run(
        [*browser, "--dump-dom", notebook_box.up["jupyter_url"]], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert "jp-LabShell" in dom.stdout, dom.stderr[-2000:]
    subprocess.run([*browser, f"--screenshot={shot}", notebook_box.up["jupyter_url"]], capture_output=True,
                   timeout=120, check=True)  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered UI, not a blank page
    if os.environ.get("DEEPBOX_SCREENSHOT_DIR"):
        shutil.copy(shot, os.environ["DEEPBOX_SCREENSHOT_DIR"])


def test_jupyter_is_restarted_when_it_dies(notebook_box, docker_client):
    container = docker_client.containers.get(notebook_box.alias)
    find = [
        "python3",
        "-c",
        "import os\nfor p in filter(str.isdigit, os.listdir('/proc')):\n"
        "    if b'jupyter-lab' in open(f'/proc/{p}/cmdline','rb').read() and int(p) != os.getpid(): print(p)",
    ]
    before = container.exec_run(find).output.decode().split()
    assert before, "no JupyterLab process in the box"
    # As its own user: root in the box lacks CAP_KILL (the box's profile), so it may not signal the box user.
    owner = container.exec_run(["stat", "-c", "%u", f"/proc/{before[0]}"]).output.decode().strip()
    killed = container.exec_run(["kill", before[0]], user=owner)
    assert killed.exit_code == 0, killed.output
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = container.exec_run(find).output.decode().split()
        if after and after[0] != before[0]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("JupyterLab was not restarted")
    _wait_for(f"{notebook_box.base}/api/status?token={notebook_box.token}")
