"""`ports = [...]` on a real box: a web server started in the box over ssh is reached from this machine
at the URL `up` and `deepbox ports` print; host ports survive a recreate; a taken fixed port is refused."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def http_get(url: str, timeout: float = 30) -> str:
    """The page at url, retried while the server in the box starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - a test's own http URL
                return answer.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@contextmanager
def listening() -> Iterator[int]:
    """A port some program (this test) listens on, on 127.0.0.1."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield squatter.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(project, box_port: int, text: str, bind: str = "0.0.0.0") -> None:  # noqa: S104 - inside the box
    """A web server in the box, started in the background over ssh, serving a page with `text`."""
    folder = f"/tmp/site-{box_port}"
    started = project.ssh(
        f"mkdir -p {folder} && echo {text} > {folder}/index.html && (nohup python -m http.server {box_port} "
        f"--bind {bind} --directory {folder} >/dev/null 2>&1 </dev/null &)"
    )
    assert started.code == 0, started.err


def test_ports_reach_a_server_in_the_box_and_keep_their_host_ports(make_project, docker_client):
    own = free_port()
    holder = f"{Path('/proc/self/comm').read_text().strip()} (process {os.getpid()})"
    with listening() as taken:
        project = make_project("ports", f"ports = [{own}, {taken}]")
        up = project.deepbox("up", "--json")
        assert up.code == 0, up.err
        published = {row["box_port"]: row for row in json.loads(up.out)["ports"]}
        # The box port's own number where it is free; a free one (and a note) where another program has it.
        assert published[own]["url"] == f"http://127.0.0.1:{own}"
        moved = published[taken]["host_port"]
        assert moved != taken
        note = f"Note: box port {taken} is published on 127.0.0.1:{moved}, since {taken} is taken by {holder}"
        assert note in " ".join(up.err.split())  # the console wraps long lines

    serve(project, own, "tensorboard-here")
    assert http_get(f"http://127.0.0.1:{own}/").strip() == "tensorboard-here"

    listed = project.deepbox("ports", "--json")
    assert listed.code == 0, listed.err
    assert json.loads(listed.out) == json.loads(up.out)["ports"]
    text = project.deepbox("ports")
    assert f"http://127.0.0.1:{own}  (box port {own}, published)" in text.out.splitlines()
    rows = json.loads(project.deepbox("status", "--json").out)
    assert next(row for row in rows if row["box"] == project.name)["ports"] == json.loads(up.out)["ports"]
    container = docker_client.containers.get(project.alias)
    bindings = container.attrs["HostConfig"]["PortBindings"]
    assert bindings[f"{own}/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(own)}]  # never 0.0.0.0

    # A fixed host port another program holds: one sentence, and the running box is left alone.
    with listening() as fixed:
        project.write_config(f'ports = [{own}, {taken}, "{fixed}:8000"]')
        refused = project.deepbox("up")
        assert refused.code == 1
        assert (
            refused.err.strip()
            .splitlines()[-1]
            .startswith(
                f"Error: Port {fixed} on 127.0.0.1, where ports in {project.path / 'deepbox.toml'} puts box port 8000, "
                f"is already in use by {holder}; stop that program, or change "
            )
        )
        assert "Traceback" not in refused.err
        assert docker_client.containers.get(project.alias).id == container.id

    # Changing ports recreates the container (volumes kept); the moved port stays where it was.
    project.write_config(f'ports = [{own}, {taken}, "{fixed}:8000"]')
    again = project.deepbox("up", "--json")
    assert again.code == 0, again.err
    result = json.loads(again.out)
    assert result["action"] == "recreated"
    assert result["image"] == json.loads(up.out)["image"], "ports are a run setting: the image is not rebuilt"
    assert {row["box_port"]: row["host_port"] for row in result["ports"]} == {own: own, taken: moved, 8000: fixed}
    serve(project, 8000, "model-server")
    assert http_get(f"http://127.0.0.1:{fixed}/").strip() == "model-server"
