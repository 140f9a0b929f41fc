"""bench/container_checks.py's evaluation, on `docker inspect` recorded from a box and a plain
`docker run -d BASE sleep infinity` (`bench/container_checks.py --save`), and on changed copies of it."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("container_checks", ROOT / "bench" / "container_checks.py")
checks = importlib.util.module_from_spec(_spec)
sys.modules["container_checks"] = checks  # dataclasses look their module up
_spec.loader.exec_module(checks)
RECORDED = json.loads((Path(__file__).parent / "data" / "container_checks.json").read_text())


def _rows(box=None, plain=None) -> dict[str, checks.Row]:
    rows = checks.evaluate(box or checks.load(RECORDED["box"]), plain or checks.load(RECORDED["plain"]))
    return {row.check: row for row in rows}


def _box_with(change) -> checks.Facts:
    recorded = copy.deepcopy(RECORDED["box"])
    change(recorded)
    return checks.load(recorded)


def test_the_recorded_box_against_a_plain_container():
    rows = _rows()
    assert {number: (row.box, row.plain) for number, row in rows.items()} == {
        "5.1": ("n/a", "n/a"),
        "5.2": ("n/a", "n/a"),
        "5.3": ("pass", "pass"),
        "5.4": ("pass", "pass"),
        "5.5": ("pass", "pass"),
        "5.6": ("accepted", "pass"),
        "5.7": ("pass", "pass"),
        "5.9": ("pass", "pass"),
        "5.10": ("fail", "fail"),
        "5.11": ("fail", "fail"),
        "5.12": ("fail", "fail"),
        "5.13": ("pass", "pass"),
        "5.14": ("fail", "fail"),
        "5.15": ("pass", "pass"),
        "5.16": ("pass", "pass"),
        "5.17": ("pass", "pass"),
        "5.21": ("pass", "pass"),
        "5.24": ("pass", "pass"),
        "5.25": ("pass", "fail"),
        "5.26": ("fail", "fail"),
        "5.28": ("pass", "fail"),
        "5.29": ("fail", "fail"),
        "5.30": ("pass", "pass"),
        "5.31": ("pass", "pass"),
    }
    assert rows["5.3"].box_detail == "drops ALL, keeps 8"
    assert rows["5.3"].plain_detail == "Docker's default set"
    assert rows["5.13"].box_detail == "127.0.0.1"
    assert rows["5.6"].note == "a box is reached over SSH by design: key-only login on 127.0.0.1 with a pinned host key"
    assert checks.worse_than_plain(list(rows.values())) == []


def _set(path: str, value):
    def change(recorded: dict) -> None:
        *parents, last = path.split(".")
        target = recorded["inspect"]
        for key in parents:
            target = target[key]
        target[last] = value

    return change


@pytest.mark.parametrize(
    ("check", "change", "detail"),
    [
        ("5.3", _set("HostConfig.CapAdd", ["CHOWN", "SYS_ADMIN"]), "adds SYS_ADMIN"),
        ("5.4", _set("HostConfig.Privileged", True), "privileged"),
        ("5.5", lambda r: r["inspect"]["Mounts"].append({"Type": "bind", "Source": "/etc/ssl"}), "/etc/ssl"),
        ("5.7", _set("NetworkSettings.Ports", {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "22"}]}), "22"),
        ("5.9", _set("HostConfig.NetworkMode", "host"), "host"),
        (
            "5.13",
            _set("NetworkSettings.Ports", {"22/tcp": [{"HostIp": "", "HostPort": "2222"}]}),
            "*:2222",
        ),
        ("5.15", _set("HostConfig.PidMode", "host"), "host"),
        ("5.16", _set("HostConfig.IpcMode", "host"), "host"),
        ("5.17", _set("HostConfig.Devices", [{"PathOnHost": "/dev/fuse"}]), "/dev/fuse"),
        ("5.21", _set("HostConfig.SecurityOpt", ["seccomp=unconfined"]), "unconfined"),
        ("5.24", _set("HostConfig.CgroupParent", "/mine"), "/mine"),
        ("5.25", _set("HostConfig.SecurityOpt", []), "not set"),
        ("5.28", _set("HostConfig.PidsLimit", None), "none"),
        ("5.30", _set("HostConfig.UsernsMode", "host"), "host"),
        (
            "5.31",
            lambda r: r["inspect"]["Mounts"].append({"Type": "bind", "Source": "/run/docker.sock"}),
            "/run/docker.sock",
        ),
    ],
)
def test_a_box_that_breaks_a_check_fails_it(check, change, detail):
    assert _rows()[check].box == "pass"
    row = _rows(box=_box_with(change))[check]
    assert (row.box, row.box_detail) == ("fail", detail)


@pytest.mark.parametrize(
    ("check", "change", "detail"),
    [
        ("5.10", _set("HostConfig.Memory", 8 * 2**30), "8192 MiB"),
        ("5.11", _set("HostConfig.CpuShares", 512), "512 shares"),
        ("5.12", _set("HostConfig.ReadonlyRootfs", True), ""),
        ("5.14", _set("HostConfig.RestartPolicy", {"Name": "on-failure", "MaximumRetryCount": 5}), "on-failure:5"),
        ("5.26", _set("Config.Healthcheck", {"Test": ["CMD", "true"]}), "true"),
        ("5.29", _set("HostConfig.NetworkMode", "deepbox"), "deepbox"),
    ],
)
def test_a_box_that_meets_a_check_passes_it(check, change, detail):
    assert _rows()[check].box == "fail"
    row = _rows(box=_box_with(change))[check]
    assert (row.box, row.box_detail) == ("pass", detail)


def test_apparmor_and_selinux_are_checked_where_the_engine_has_them():
    def engine(recorded: dict) -> None:
        recorded["engine_security"] = ["name=apparmor", "name=selinux", "name=seccomp,profile=default"]

    rows = _rows(box=_box_with(engine))
    assert (rows["5.1"].box, rows["5.1"].box_detail) == ("fail", "profile none")
    assert (rows["5.2"].box, rows["5.2"].box_detail) == ("fail", "no label option")

    def confined(recorded: dict) -> None:
        engine(recorded)
        recorded["inspect"]["AppArmorProfile"] = "docker-default"
        recorded["inspect"]["HostConfig"]["SecurityOpt"].append("label=type:container_t")

    rows = _rows(box=_box_with(confined))
    assert (rows["5.1"].box, rows["5.2"].box) == ("pass", "pass")


def test_a_box_worse_than_a_plain_container_is_named():
    rows = list(_rows(box=_box_with(_set("HostConfig.Privileged", True))).values())
    assert [row.check for row in checks.worse_than_plain(rows)] == ["5.4"]


def test_a_box_without_sshd_passes_5_6_and_is_not_marked_accepted():
    row = _rows(box=_box_with(lambda r: r.update(processes=["docker-init", "sleep"])))["5.6"]
    assert (row.box, row.note) == ("pass", "")
