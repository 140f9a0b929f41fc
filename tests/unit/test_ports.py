"""Ports and bind addresses without an engine: who listens on a port (Linux's /proc), which of a box's
ports Docker's "address already in use" names, and the sentences for a taken port or a foreign address."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest

from deepbox import box
from deepbox.config import load_spec
from deepbox.engine import DEFAULT_SOCKET, Container, Location
from deepbox.site import LocalSite, listening_inodes, process_listening

LOCAL = LocalSite(Location(DEFAULT_SOCKET, "the default socket"))

# /proc/net/tcp on a Docker host: sshd on 0.0.0.0:22 and a program on 127.0.0.1:2222 listen (0A), one
# established connection from port 2222 does not count.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1083 1 000000007fe046c4 100 0 0 10 0
   1: 0100007F:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 52113 1 00000000a1b2c3d4 100 0 0 10 0
   2: 0100007F:08AE 0100007F:C6E4 01 00000000:00000000 00:00000000 00000000  1000        0 52200 1 00000000f57a22ca 20 4 30 10 -1
   3: 020200C0:C6EA 507100CB:01BB 06 00000000:00000000 03:0000151A 00000000     0        0 0 3 000000005902101f
"""  # noqa: E501 - the kernel's own line length


def test_listening_inodes_reads_listening_sockets_only():
    assert listening_inodes(PROC_NET_TCP, 2222) == {"52113"}
    assert listening_inodes(PROC_NET_TCP, 22) == {"1083"}
    assert listening_inodes(PROC_NET_TCP, 443) == set()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux's /proc only")
def test_the_program_holding_a_port_is_named(squatter):
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert process_listening(squatter) == (os.getpid(), comm)
    assert LOCAL.port_holder(squatter) == f"{comm} (process {os.getpid()})"


def test_without_proc_the_holder_is_another_program(tmp_path, squatter):
    assert process_listening(squatter, proc=tmp_path) is None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux's /proc only")
def test_a_taken_port_names_its_holder(squatter):
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert not LOCAL.port_is_free("127.0.0.1", squatter)
    message = LOCAL.port_taken(squatter, "127.0.0.1", "deepbox.toml").message
    assert message.startswith(
        f"Port {squatter} on 127.0.0.1 is already in use by {comm} (process {os.getpid()}); set ssh.port to a free "
        "one (for example "
    )
    assert message.endswith(") or to 0 to pick one automatically in deepbox.toml.")


def test_an_address_of_another_machine_is_not_a_taken_port():
    assert LOCAL.port_is_free("10.99.99.99", 2222)  # nothing listens there: the address is the problem
    error = LOCAL.bind_error("10.99.99.99", "/p/deepbox.toml")
    assert error is not None
    assert error.message == (
        'ssh.bind = "10.99.99.99" in /p/deepbox.toml is not an address this machine can listen on (Cannot assign '
        'requested address); set it to "127.0.0.1" (the default), or to an address of one of its network '
        "interfaces."
    )
    assert LOCAL.bind_error("127.0.0.1", "deepbox.toml") is None


def test_an_ipv6_bind_is_tried_as_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        has_ipv6 = True
    except OSError:
        has_ipv6 = False
    assert (LOCAL.bind_error("::1", "deepbox.toml") is None) == has_ipv6
    assert LOCAL.bind_error("fd00::99:99", "deepbox.toml") is not None  # not this machine's


SSH_AND_JUPYTER = {"22/tcp": 2222, "8888/tcp": 8888}


@pytest.mark.parametrize(
    ("engine_error", "box_port"),
    [
        (
            "driver failed programming external connectivity on endpoint deepbox-demo (5f0c): Error starting "
            "userland proxy: listen tcp4 127.0.0.1:2222: bind: address already in use",
            "22/tcp",
        ),
        (
            "driver failed programming external connectivity on endpoint deepbox-demo (5f0c): Error starting "
            "userland proxy: listen tcp4 127.0.0.1:8888: bind: address already in use",
            "8888/tcp",
        ),
        ("Bind for 127.0.0.1:8888 failed: port is already allocated", "8888/tcp"),
        ("rootlessport listen tcp 127.0.0.1:2222: bind: address already in use", "22/tcp"),
        ("address already in use", "22/tcp"),
    ],
)  # fmt: skip
def test_the_clashing_port_is_read_from_the_engine_s_error(engine_error, box_port):
    assert box.clashing_port(engine_error, SSH_AND_JUPYTER) == box_port


def test_a_stopped_box_s_taken_port_offers_the_move(make_project, squatter):
    spec = load_spec(make_project('name = "demo"\n'))
    container = Container("c1", "deepbox-demo", "exited", {}, "deepbox/demo:1", {"22/tcp": squatter})
    error = f"listen tcp4 127.0.0.1:{squatter}: bind: address already in use"
    message = box.port_clash(spec, LOCAL, container, error).message
    assert message == (
        f"Port {squatter} on 127.0.0.1, where box 'demo' publishes SSH, is taken by {LOCAL.port_holder(squatter)}; "
        "stop that program, or run `deepbox up --new-port` to move the box to free ports (its ssh alias and IDE "
        "files follow)."
    )
    pinned = dataclasses.replace(spec, ssh_port=squatter)
    assert box.port_clash(pinned, LOCAL, container, error).message.startswith(f"Port {squatter} on 127.0.0.1 is")


def test_new_port_is_refused_where_the_config_fixes_the_port(make_project):
    project = make_project('name = "demo"\n[ssh]\nport = 2222\n')
    with pytest.raises(box.DeepboxError) as raised:
        box.up(load_spec(project), LOCAL, None, new_port=True)  # type: ignore[arg-type]
    assert raised.value.message == (
        f"ssh.port = 2222 in {project / 'deepbox.toml'} fixes the box's port, so `up --new-port` cannot move it; "
        "set ssh.port to another port there, or to 0 to let deepbox pick a free one."
    )
