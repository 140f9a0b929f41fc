"""[user] sudo: the last layer of the Dockerfile, and the stand-in that says how to turn sudo on."""

from __future__ import annotations

import dataclasses
import subprocess

from deepbox.cli import main
from deepbox.config import BoxUser, load_spec
from deepbox.dockerfile import render


def test_sudo_is_off_by_default_and_the_stand_in_says_how_to_turn_it_on(make_project):
    spec = load_spec(make_project('[user]\nname = "alice"\nuid = 4321\ngid = 4322\n'))
    assert spec.sudo is False
    context = render(spec)
    tail = context.dockerfile.rstrip().splitlines()[-2:]
    assert tail == ["COPY deepbox/sudo-off.sh /usr/local/bin/sudo", "RUN rm -f /etc/sudoers.d/deepbox"]
    stand_in = context.files["deepbox/sudo-off.sh"].decode()
    done = subprocess.run(["sh", "-c", stand_in, "sudo", "-n", "true"], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr == (
        "sudo: sudo is off in this box; set sudo = true under [user] in deepbox.toml and run `deepbox up`, or list "
        "the system packages you need in apt = [...] there.\n"
    )


def test_sudo_on_installs_sudo_and_a_checked_sudoers_entry_in_the_last_layer(make_project):
    settings = 'name = "box"\n[user]\nname = "alice"\nuid = 4321\ngid = 4322\n'
    off = render(load_spec(make_project(settings)))
    project = make_project(settings + "sudo = true\n", folder="on")
    on = render(load_spec(project))
    last = on.dockerfile.rstrip().split("\n\n")[-1]
    assert "apt-get install -y --no-install-recommends sudo" in last
    assert "printf '%s\\n' 'alice ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/deepbox" in last
    assert "chmod 0440 /etc/sudoers.d/deepbox" in last
    assert "visudo -cf /etc/sudoers.d/deepbox" in last
    assert "deepbox/sudo-off.sh" not in on.files
    # Only the last layer differs: switching sudo keeps every layer before it cached.
    assert on.dockerfile.rsplit("\n\n", 1)[0] == off.dockerfile.rsplit("\n\n", 1)[0]
    assert on.spec_hash != off.spec_hash


def test_a_root_box_user_gets_no_stand_in_and_no_sudoers_entry(make_project):
    spec = load_spec(make_project(""))
    root = dataclasses.replace(spec, user=BoxUser("root", 0, 0))
    assert "sudo" not in render(root).dockerfile.split("CMD []")[-1]
    with_sudo = render(dataclasses.replace(root, sudo=True)).dockerfile
    assert "apt-get install -y --no-install-recommends sudo" in with_sudo
    assert "sudoers.d" not in with_sudo


def test_sudo_must_be_true_or_false(make_project, capsys):
    project = make_project('[user]\nsudo = "yes"\n')
    assert main(["-C", str(project), "dockerfile"]) == 1
    expected = f"Error: {project / 'deepbox.toml'}: 'user.sudo' must be true or false, without quotes."
    assert capsys.readouterr().err.strip() == expected
