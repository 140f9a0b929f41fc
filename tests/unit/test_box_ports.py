"""`ports = [6006, "8501:8501"]`: parsing and its errors, how host ports are chosen, the run hash, the
sentence for a taken fixed port, and the LocalForward lines a server box's ssh alias gets."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deepbox import box, paths, ssh
from deepbox.config import BoxPort, load_spec, parse_ports
from deepbox.engine import DEFAULT_SOCKET, Container, Location
from deepbox.errors import ConfigError
from deepbox.site import LocalSite, ServerSite

LOCAL = LocalSite(Location(DEFAULT_SOCKET, "the default socket"))
SERVER = ServerSite(Location("ssh://tester@gpu-server", "host in deepbox.toml"))


def _error(project: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_spec(project)
    return info.value.message


# Parsing ------------------------------------------------------------------------------------------


def test_a_number_is_a_box_port_and_host_box_fixes_the_host_port(make_project):
    spec = load_spec(make_project('ports = [6006, "8501:8501", "9000", "18080:8080"]\n'))
    assert spec.ports == (BoxPort(6006), BoxPort(8501, 8501), BoxPort(9000), BoxPort(8080, 18080))
    assert [port.written for port in spec.ports] == ["6006", '"8501:8501"', "9000", '"18080:8080"']
    assert load_spec(make_project("", folder="none")).ports == ()


@pytest.mark.parametrize(
    ("toml", "sentence"),
    [
        ("ports = [70000]\n", "'ports' has 70000, which is not a port: ports are 1 to 65535."),
        ('ports = ["0:80"]\n', """'ports' has "0:80", which is not a port: ports are 1 to 65535."""),
        (
            'ports = ["tensorboard"]\n',
            """'ports' has "tensorboard", which is neither a box port such as 6006 nor "HOST:BOX" such as """
            '"8501:8501".',
        ),
        ("ports = [22]\n", "'ports' has 22: box port 22 is the box's SSH, which ssh.port publishes; remove it."),
        (
            "jupyter = true\nports = [8888]\n",
            "'ports' has 8888: box port 8888 is JupyterLab's, which jupyter = true publishes already "
            "(`deepbox jupyter` prints its URL); remove it.",
        ),
        ('ports = [6006, "7000:6006"]\n', "'ports' lists box port 6006 twice; keep one."),
        ('ports = ["7000:6006", "7000:6007"]\n', "'ports' puts two box ports on host port 7000; give each its own."),
        ("ports = 6006\n", "'ports' must be a list; write ports = [6006]."),
        ("ports = [true]\n", "'ports[0]' must be a whole number or text in quotes."),
        (
            'ports = ["2222:80"]\n[ssh]\nport = 2222\n',
            "'ports' puts box port 80 on host port 2222, which ssh.port = 2222 takes for SSH; give one of them "
            "another port.",
        ),
    ],
)
def test_bad_ports_are_one_sentence_with_the_fix(make_project, toml, sentence):
    project = make_project(toml)
    assert _error(project) == f"{project / 'deepbox.toml'}: {sentence}"


def test_8888_is_a_port_like_any_other_without_jupyter():
    assert parse_ports([8888]) == (BoxPort(8888),)


# Choosing host ports ------------------------------------------------------------------------------


def _choose(wanted, previous=None, busy=(), avoid=()):
    spare = iter(range(40000, 40100))
    return box.choose_host_ports(wanted, previous or {}, lambda port: port not in busy, lambda: next(spare), set(avoid))


def test_a_box_port_gets_its_own_number_when_free_else_a_free_one():
    assert _choose((BoxPort(6006), BoxPort(8501))) == {6006: 6006, 8501: 8501}
    assert _choose((BoxPort(6006), BoxPort(8501)), busy={6006}) == {6006: 40000, 8501: 8501}


def test_a_recreated_box_keeps_the_host_ports_it_had():
    # 6006 is free again, but the box's URL was :40123 and stays so.
    assert _choose((BoxPort(6006),), previous={6006: 40123}) == {6006: 40123}


def test_fixed_ports_win_and_no_host_port_is_used_twice():
    wanted = (BoxPort(6006), BoxPort(7000, 6006), BoxPort(8501))
    assert _choose(wanted, avoid={8501}) == {6006: 40000, 7000: 6006, 8501: 40001}


def test_a_kept_port_that_a_fixed_one_now_takes_moves():
    assert _choose((BoxPort(6006), BoxPort(7000, 40123)), previous={6006: 40123}) == {6006: 6006, 7000: 40123}


# Settings that recreate the container -------------------------------------------------------------


def test_ports_are_a_run_setting_of_a_box_here_only(make_project):
    spec = load_spec(make_project("[ssh]\nport = 2222\n"))
    with_ports = dataclasses.replace(spec, ports=(BoxPort(6006),))
    base = box._run_hash(spec, "img:1", "ssh-ed25519 AAAA")
    assert box._run_hash(with_ports, "img:1", "ssh-ed25519 AAAA") != base
    fixed = dataclasses.replace(spec, ports=(BoxPort(6006, 16006),))
    assert box._run_hash(fixed, "img:1", "ssh-ed25519 AAAA") != box._run_hash(with_ports, "img:1", "ssh-ed25519 AAAA")
    # A server box's ports are its alias's forwards: changing them leaves the container alone.
    assert box._run_hash(with_ports, "img:1", "ssh-ed25519 AAAA", forwards_ports=True) == base


def test_the_dockerfile_does_not_change_with_ports(make_project):
    from deepbox.dockerfile import render

    spec = load_spec(make_project(""))
    assert render(dataclasses.replace(spec, ports=(BoxPort(6006),))) == render(spec)


# A taken fixed port -------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux's /proc only")
def test_a_taken_fixed_port_names_its_holder_and_the_fix(make_project, squatter):
    project = make_project(f'ports = ["{squatter}:8501"]\n')
    spec = load_spec(project)
    error = box.fixed_port_error(spec, LOCAL, {})
    assert error is not None
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    head, example = error.message.split(' (for example "')
    assert head == (
        f"Port {squatter} on 127.0.0.1, where ports in {project / 'deepbox.toml'} puts box port 8501, is already in "
        f'use by {comm} (process {os.getpid()}); stop that program, or change "{squatter}:8501" there to another '
        "host port"
    )
    assert example.endswith(':8501") or to 8501 to let deepbox pick one.')
    # The box's own port (a running box that is being recreated) is not a clash.
    assert box.fixed_port_error(spec, LOCAL, {8501: squatter}) is None


def test_a_stopped_box_whose_port_was_taken_names_the_box_port(make_project):
    spec = load_spec(make_project("ports = [6006]\n"))
    container = Container("c1", "deepbox-proj", "exited", {}, "img", {"22/tcp": 2222, "6006/tcp": 6006})
    message = box.port_clash(spec, LOCAL, container, "listen tcp4 127.0.0.1:6006: bind: address already in use").message
    assert message.startswith("Port 6006 on 127.0.0.1, where box 'proj' publishes box port 6006, is taken by ")
    assert message.endswith(
        "run `deepbox up --new-port` to move the box to free ports (its ssh alias and IDE files follow)."
    )


# A server box: the alias forwards ----------------------------------------------------------------


def _endpoint(forwards: tuple[tuple[int, int], ...]) -> ssh.Endpoint:
    return ssh.Endpoint("deepbox-far", "127.0.0.1", 2201, "dev", Path("/k/id"), "tester@gpu-server", forwards)


def test_a_server_box_alias_forwards_its_ports_and_reads_them_back(home):
    ssh.write_host(_endpoint(((6006, 6006), (41234, 8501))))
    block = ssh._blocks(paths.owned_ssh_config().read_text())["deepbox-far"]
    assert "    LocalForward 127.0.0.1:6006 127.0.0.1:6006\n" in block
    assert "    LocalForward 127.0.0.1:41234 127.0.0.1:8501\n" in block
    assert ssh.forwards("deepbox-far") == {6006: 6006, 8501: 41234}
    assert ssh.forwards("deepbox-other") == {}
    assert ssh.host_name("deepbox-far") == "127.0.0.1"

    container = Container("c1", "deepbox-tester-far", "running", {"deepbox.alias": "deepbox-far"}, "img")
    reached = box.reached_ports(container, SERVER)
    assert [(port.box_port, port.url, port.via) for port in reached] == [
        (6006, "http://127.0.0.1:6006", "forwarded by ssh deepbox-far"),
        (8501, "http://127.0.0.1:41234", "forwarded by ssh deepbox-far"),
    ]


def test_a_box_here_lists_the_ports_it_publishes(home):
    ssh.write_host(ssh.Endpoint("deepbox-near", "10.0.0.5", 2201, "dev", Path("/k/id")))
    labels = {"deepbox.alias": "deepbox-near", box.LABEL_PORTS: "6006,8501"}
    container = Container(
        "c1", "deepbox-near", "running", labels, "img", {"22/tcp": 2201, "6006/tcp": 6006, "8501/tcp": 40001}
    )
    assert [(port.box_port, port.host_port, port.url) for port in box.reached_ports(container, LOCAL)] == [
        (6006, 6006, "http://10.0.0.5:6006"),
        (8501, 40001, "http://10.0.0.5:40001"),
    ]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_openssh_reads_the_forwards(home):
    ssh.write_host(_endpoint(((16006, 6006),)))
    result = subprocess.run(
        ["ssh", "-F", str(paths.user_ssh_config()), "-G", "deepbox-far"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "localforward [127.0.0.1]:16006 [127.0.0.1]:6006" in result.stdout.splitlines()


def test_doctor_checks_the_fixed_host_ports(make_project, squatter):
    from deepbox import doctor

    spec = load_spec(make_project(f'ports = [6006, "{squatter}:8501"]\n'))
    finding = doctor.ports_finding(spec, LOCAL, None)
    assert finding is not None
    assert (finding.check, finding.level) == ("ports", "error")
    expected = box.fixed_port_error(spec, LOCAL, {})
    assert expected is not None
    assert finding.message.split(" (for example")[0] == expected.message.split(" (for example")[0]
    running = Container("c1", "deepbox-proj", "running", {}, "img", {"8501/tcp": squatter})
    assert doctor.ports_finding(spec, LOCAL, running) == doctor.Finding(
        "ports",
        "ok",
        f"Box ports 6006, 8501 are published on 127.0.0.1; host port {squatter} is free or the box's own.",
    )
    assert doctor.ports_finding(load_spec(make_project("", folder="none")), LOCAL, None) is None
