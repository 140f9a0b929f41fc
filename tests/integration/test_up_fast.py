"""`up` on a box it made before: the host key pinned then is what ssh checks, so it is not read out of
band again; a box that shows another key gets it read and pinned again. A box still running since `up`
logged in to is not logged in to again, until it starts again; its frameworks are checked each time, in the
box only when its Python folders changed since the last check."""

from __future__ import annotations

import json
import subprocess
import time

HOST_KEY = "/etc/ssh/deepbox/ssh_host_ed25519_key.pub"


def _execs(docker_client, container_id: str, since: int) -> list[str]:
    """Every `docker exec` the engine saw for the container since `since` (unix seconds)."""
    time.sleep(1.1)  # the engine's event filter counts whole seconds
    until = int(time.time()) + 1
    wanted = {"container": container_id, "event": "exec_create"}
    return [event["Action"] for event in docker_client.events(since=since, until=until, filters=wanted, decode=True)]


def _host_key_reads(docker_client, container_id: str, since: int) -> list[str]:
    """The `docker exec`s of the host key the engine saw for the container since `since` (unix seconds)."""
    return [action for action in _execs(docker_client, container_id, since) if HOST_KEY in action]


def _pin(project) -> str:
    known = project.home / ".local/share/deepbox/known_hosts"
    return next(line for line in known.read_text().splitlines() if line.split(" ", 1)[0] == project.alias)


def test_up_again_trusts_the_pinned_host_key_and_repins_a_changed_one(make_project, docker_client, tmp_path):
    project = make_project("fastup")
    first = project.deepbox("up", "--json")
    assert first.code == 0, first.err
    container = docker_client.containers.get(f"deepbox-{project.name}")
    real_pin = _pin(project)
    time.sleep(1.1)

    # Running and unchanged: no out-of-band read of the host key; ssh checks the pinned one.
    since = int(time.time())
    again = project.deepbox("up", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["action"] == "running"
    assert _host_key_reads(docker_client, container.id, since) == []

    # Stopped and started again: the same.
    assert project.deepbox("down").code == 0
    since = int(time.time())
    started = project.deepbox("up", "--json")
    assert started.code == 0, started.err
    assert json.loads(started.out)["action"] == "started"
    assert _host_key_reads(docker_client, container.id, since) == []

    # A pin that no longer matches (another key): ssh refuses it, so the key is read and pinned again.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = project.home / ".local/share/deepbox/known_hosts"
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    known.write_text(known.read_text().replace(real_pin, f"{project.alias} {kind} {blob}"))
    subprocess.run(
        ["ssh", "-F", str(project.home / ".ssh/config"), "-O", "exit", project.alias], capture_output=True, check=False
    )
    since = int(time.time())
    repinned = project.deepbox("up", "--json")
    assert repinned.code == 0, repinned.err
    assert json.loads(repinned.out)["action"] == "running"
    assert _pin(project) == real_pin
    assert len(_host_key_reads(docker_client, container.id, since)) == 1


def _now() -> int:
    """A start for `_execs`/`_logins` that no earlier command's events share (both count whole seconds)."""
    time.sleep(1.1)
    return int(time.time())


def _logins(container, since: int) -> int:
    """Public-key logins sshd logged (LogLevel VERBOSE) since `since`."""
    time.sleep(1.1)
    return container.logs(since=since).decode(errors="replace").count("Accepted publickey")


def _hand_overs(actions: list[str]) -> list[str]:
    return [action for action in actions if "/run/deepbox/secrets" in action]


def test_up_on_a_running_box_reached_since_its_start_logs_in_again_only_after_a_start(make_project, docker_client):
    project = make_project("quickup")
    first = project.deepbox("up", "--json")
    assert first.code == 0, first.err
    container = docker_client.containers.get(f"deepbox-{project.name}")

    # Running since `up` logged in and handed over: neither again, and the box's Python folders are as the
    # framework check left them, so its result stands: nothing runs in the box; the same report.
    since = _now()
    again = project.deepbox("up", "--json")
    assert again.code == 0, again.err
    assert "has run unchanged since `up` reached it" in again.err
    assert _execs(docker_client, container.id, since) == []
    assert _logins(container, since) == 0
    before, after = json.loads(first.out), json.loads(again.out)
    assert after["action"] == "running"
    assert after["frameworks"] == before["frameworks"] and after["python_version"] == before["python_version"]

    # A file added to site-packages (as any install does): the check runs in the box again, once.
    add_file = "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'p.pth').touch()"
    touched = project.ssh(f'python -c "{add_file}"')
    assert touched.code == 0, touched.err
    for expected in (1, 0):
        since = _now()
        assert project.deepbox("up").code == 0
        execs = _execs(docker_client, container.id, since)
        assert len(execs) == expected and all("python" in action for action in execs), execs

    # Asked for: the ssh check (through the ControlMaster `deepbox ssh` left) and a hand-over, at once.
    since = _now()
    checked = project.deepbox("up", "--check", "--json")
    assert checked.code == 0, checked.err
    assert "Waiting for SSH" in checked.err and "has run unchanged" not in checked.err
    assert len(_hand_overs(_execs(docker_client, container.id, since))) == 1

    # Restarted outside deepbox (as a restart policy does): the box's settings, host key and secrets are
    # what the last login proved, so `up` waits for sshd's greeting instead of logging in, and hands the
    # secrets over again (a stop empties the tmpfs they live in).
    container.restart(timeout=10)
    since = _now()
    restarted = project.deepbox("up", "--json")
    assert restarted.code == 0, restarted.err
    assert "Waiting for sshd to greet" in restarted.err and "has run unchanged" not in restarted.err
    assert len(_hand_overs(_execs(docker_client, container.id, since))) == 1
    assert _logins(container, since) == 0
    assert project.ssh("test -e /run/deepbox/secrets").code == 0, "handed over again after the restart"

    # Stopped and started by deepbox: the same; and that start holds for the next `up`.
    assert project.deepbox("down").code == 0
    since = _now()
    started = project.deepbox("up", "--json")
    assert started.code == 0, started.err
    assert json.loads(started.out)["action"] == "started"
    assert _logins(container, since) == 0
    since = _now()
    quick = project.deepbox("up", "--json")
    assert quick.code == 0, quick.err
    assert "has run unchanged since `up` reached it" in quick.err
    assert _hand_overs(_execs(docker_client, container.id, since)) == []
    assert _logins(container, since) == 0

    # Asked for after a start: a login.
    assert project.deepbox("down").code == 0
    since = _now()
    checked = project.deepbox("up", "--check")
    assert checked.code == 0, checked.err
    assert "Waiting for SSH" in checked.err
    assert _logins(container, since) == 1


def test_a_changed_secret_after_a_stop_logs_in_again(make_project, docker_client):
    project = make_project("quicksecret")
    assert project.deepbox("up").code == 0, "first up"
    container = docker_client.containers.get(f"deepbox-{project.name}")
    assert project.deepbox("down").code == 0
    project.write_config('[secrets]\nDEEPBOX_TEST_TOKEN = { env = "DEEPBOX_TEST_TOKEN" }')
    since = _now()
    changed = project.deepbox("up", "--json", env={"DEEPBOX_TEST_TOKEN": "s3cret"})
    assert changed.code == 0, changed.err
    assert json.loads(changed.out)["action"] == "started", "secrets are not container settings"
    assert "Waiting for SSH" in changed.err
    assert _logins(container, since) == 1
    assert project.ssh("echo $DEEPBOX_TEST_TOKEN").out.strip() == "s3cret"
