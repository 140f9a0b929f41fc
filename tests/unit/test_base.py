"""base: which distribution a suite is, the default tag, and the apt sources the image gets."""

from __future__ import annotations

import pytest

from deepbox import base
from deepbox.errors import DeepboxError


def test_suites_map_to_their_distribution_and_tag():
    assert base.default_tag("bookworm") == "deepbox/debian:bookworm"
    assert base.default_tag("focal") == "deepbox/ubuntu:focal"
    assert base.distribution("bionic") is base.UBUNTU
    assert base.distribution("no-such-suite") is base.DEBIAN


def test_debian_sources_have_updates_and_security():
    assert base.sources_list("bullseye").splitlines() == [
        "deb http://deb.debian.org/debian bullseye main",
        "deb http://deb.debian.org/debian bullseye-updates main",
        "deb http://deb.debian.org/debian-security bullseye-security main",
    ]


def test_a_debian_mirror_of_ones_own_gets_no_outside_security_archive():
    lines = base.sources_list("bookworm", "http://mirror.example/debian").splitlines()
    assert lines == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
    ]


def test_ubuntu_sources_have_every_component_like_ubuntu_s_own_images():
    lines = base.sources_list("bionic").splitlines()
    assert lines == [
        f"deb http://archive.ubuntu.com/ubuntu bionic{pocket} main restricted universe multiverse"
        for pocket in ("", "-updates", "-security")
    ]


def test_ubuntu_without_its_archive_key_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(base.shutil, "which", lambda name: "/usr/sbin/debootstrap")
    monkeypatch.setattr(base.hostos, "is_root", lambda: True)
    with pytest.raises(DeepboxError) as info:
        base.bootstrap(None, "focal", "x:y", None, print, keyring=tmp_path / "missing.gpg")
    assert "archive key" in info.value.message and "--keyring" in info.value.message


def test_ubuntu_suites_debootstrap_does_not_know_use_its_generic_ubuntu_script(tmp_path):
    for script in ("gutsy", "focal", "bookworm"):
        (tmp_path / script).write_text("")
    assert base.debootstrap_script("focal", tmp_path) is None
    assert base.debootstrap_script("noble", tmp_path) == str(tmp_path / "gutsy")
    assert base.debootstrap_script("trixie", tmp_path) is None, "Debian suites keep debootstrap's own answer"
