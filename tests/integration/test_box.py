"""deepbox up/down/rm/status/snapshot against a real engine, a real sshd and the real ssh client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import PREFIX, Project, deepbox_command, run_container, run_deepbox, ssh_audit

OWNER = (4242, 4243)  # the project's owner; as root, deepbox mirrors it in the box user


@pytest.fixture(scope="module")
def box(tmp_path_factory, home, docker_client):
    """One running box shared by the read-only checks below (building is the slow part)."""
    path = tmp_path_factory.mktemp("shared") / "digits"
    path.mkdir()
    project = Project(path, f"{PREFIX}-shared", home)
    project.write_config('[env]\nDEEPBOX_TEST_GREETING = "hello from env"')
    os.chown(path, *OWNER)
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    project.up = json.loads(result.out)
    yield project
    from conftest import remove_box

    remove_box(docker_client, project.name)


def test_up_reports_frameworks_and_endpoint(box):
    checks = {row["name"]: row for row in box.up["frameworks"]}
    assert set(checks) == {"numpy", "scikit-learn"}
    assert all(row["ok"] and row["version"] for row in checks.values())
    assert box.up["host"] == "127.0.0.1"
    assert box.up["user"] != "root"


def test_ssh_alias_runs_the_box_python_with_strict_host_keys(box, home):
    config = (home / ".ssh" / "config").read_text()
    assert config.splitlines()[1].startswith("Include ")
    block = (home / ".local/share/deepbox/ssh_config").read_text()
    assert "StrictHostKeyChecking yes" in block
    assert "StrictHostKeyChecking no" not in block

    result = box.ssh("python -c 'import numpy, sklearn; print(sklearn.__version__)'")
    assert result.code == 0, result.err
    assert result.out.strip() == next(r["version"] for r in box.up["frameworks"] if r["name"] == "scikit-learn")

    # The pinned key is what makes it work: with an empty known_hosts strict checking refuses.
    refused = box.ssh("true", "-o", "UserKnownHostsFile=/dev/null", "-o", "ControlPath=none")
    assert refused.code != 0
    assert "Host key verification failed" in refused.err


def test_session_environment_reaches_ssh_logins(box):
    result = box.ssh('echo "$DEEPBOX_TEST_GREETING|$PATH|$(command -v python)"')
    assert result.code == 0, result.err
    greeting, path, python = result.out.strip().split("|")
    assert greeting == "hello from env"
    assert path.startswith("/opt/venv/bin:")
    assert python == "/opt/venv/bin/python"


def test_files_written_in_the_box_belong_to_the_project_owner(box):
    result = box.ssh("id -u && touch /workspace/made-in-box")
    assert result.code == 0, result.err
    assert int(result.out.strip()) == OWNER[0]
    made = box.path / "made-in-box"
    assert (made.stat().st_uid, made.stat().st_gid) == OWNER


def test_no_root_login_and_no_password_auth(box, home):
    root = subprocess.run(
        ["ssh", "-F", str(home / ".ssh/config"), "-o", "BatchMode=yes", "-o", "ControlPath=none",
         "-l", "root", box.alias, "true"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert root.returncode != 0
    assert "Permission denied" in root.stderr


def test_ssh_audit_finds_no_failures(box):
    report = ssh_audit(box.up["port"])
    failures = report.get("recommendations", {}).get("critical", {})
    assert not failures, failures
    assert [key["algorithm"] for key in report["key"]] == ["ssh-ed25519"]


def test_sftp_subsystem_works(box, tmp_path):
    local = tmp_path / "helper.txt"
    local.write_text("pycharm helpers travel over sftp\n")
    sftp = subprocess.run(
        ["sftp", "-F", str(box.home / ".ssh/config"), "-b", "-", box.alias],
        input=f"put {local} helper.txt\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert sftp.returncode == 0, sftp.stderr
    assert box.ssh("cat ~/helper.txt").out == local.read_text()


def test_up_again_is_a_no_op(box):
    result = box.deepbox("up", "--json")
    assert result.code == 0, result.err
    again = json.loads(result.out)
    assert again["action"] == "running"
    assert again["port"] == box.up["port"]


def test_status_json_lists_the_box(box):
    result = box.deepbox("status", "--json")
    assert result.code == 0, result.err
    rows = {row["box"]: row for row in json.loads(result.out)}
    row = rows[box.name]
    assert row["state"] == "running"
    assert row["port"] == box.up["port"]
    assert row["project"] == str(box.path)
    assert row["image"] == box.up["image"]


def test_logs_show_sshd(box):
    result = box.deepbox("logs")
    assert result.code == 0, result.err
    assert "Server listening" in result.out or "Accepted publickey" in result.out


def test_deepbox_ssh_passes_a_command(box):
    result = box.deepbox("ssh", "--", "python", "-c", "'print(6 * 7)'")
    assert result.code == 0, result.err
    assert result.out.strip() == "42"


def test_a_subfolder_is_the_project_and_a_name_reaches_the_box_from_anywhere(box, tmp_path):
    models = box.path / "src" / "models"
    models.mkdir(parents=True, exist_ok=True)
    up = run_deepbox(models, "up", "--json")
    assert up.code == 0, up.err
    assert (json.loads(up.out)["box"], json.loads(up.out)["action"]) == (box.name, "running"), "no second box"
    assert run_deepbox(models, "ssh", "--", "hostname").out.strip() == box.name

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_name = run_deepbox(elsewhere, "ssh", box.name, "--", "hostname")
    assert by_name.code == 0, by_name.err
    assert by_name.out.strip() == box.name
    logs = run_deepbox(elsewhere, "logs", box.name)
    assert logs.code == 0, logs.err
    assert "Server listening" in logs.out or "Accepted publickey" in logs.out


def test_published_port_is_loopback_only(box, docker_client):
    container = docker_client.containers.get(box.alias)
    bindings = container.attrs["HostConfig"]["PortBindings"]["22/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert container.attrs["HostConfig"]["Init"] is True
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container.attrs["HostConfig"]["ShmSize"] == 2 * 1024**3


# Lifecycle tests, each on its own box ------------------------------------------------------------


def test_down_up_keeps_host_key_and_home(make_project, home, docker_client):
    project = make_project("life")
    assert project.deepbox("up").code == 0
    assert project.ssh("echo kept > ~/notes.txt").code == 0
    known = (home / ".local/share/deepbox/known_hosts").read_text()

    down = project.deepbox("down")
    assert down.code == 0, down.err
    assert docker_client.containers.get(project.alias).status == "exited"

    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["action"] == "started"
    assert (home / ".local/share/deepbox/known_hosts").read_text() == known
    again = project.ssh("cat ~/notes.txt", "-o", "ControlPath=none")
    assert again.code == 0, again.err
    assert again.out.strip() == "kept"
    assert "WARNING" not in again.err

    # The passing framework check is remembered per container, and a change in the box's packages
    # makes the next `up` check afresh: a broken framework is never hidden by the remembered result.
    container_id = docker_client.containers.get(project.alias).id
    remembered = json.loads((home / f".local/share/deepbox/checks/{container_id}.json").read_text())
    assert {row["name"] for row in remembered["checks"]} == {"numpy", "scikit-learn"}
    assert project.ssh("python -m pip uninstall -q -y scikit-learn").code == 0
    broken = project.deepbox("up")
    assert broken.code == 1
    assert "Framework 'scikit-learn' does not import in the box" in broken.err


def test_config_change_rebuilds_keeps_data_and_a_failed_build_keeps_the_old_box(make_project, docker_client):
    project = make_project("change")
    first = project.deepbox("up", "--json")
    assert first.code == 0, first.err
    assert project.ssh("echo survived > ~/data.txt").code == 0

    project.write_config('pip = ["six"]')
    second = project.deepbox("up", "--json")
    assert second.code == 0, second.err
    rebuilt = json.loads(second.out)
    assert rebuilt["action"] == "recreated"
    assert rebuilt["image"] != json.loads(first.out)["image"]
    assert project.ssh("cat ~/data.txt && python -c 'import six'").out.strip() == "survived"

    # A package that does not exist fails while locking, before anything is built.
    project.write_config('pip = ["deepbox-test-no-such-package-xyz"]')
    unlocked = project.deepbox("up")
    assert unlocked.code == 1
    assert "The box's packages do not resolve" in unlocked.err and "deepbox-test-no-such-package-xyz" in unlocked.err
    assert "Traceback" not in unlocked.err

    # A build that fails (a Debian package that does not exist) leaves the old box as it was.
    project.write_config('pip = ["six"]\napt = ["deepbox-test-no-such-package-xyz"]')
    failed = project.deepbox("up")
    assert failed.code == 1
    assert "build failed at step" in failed.err
    assert "Traceback" not in failed.err
    container = docker_client.containers.get(project.alias)
    assert container.status == "running"
    assert container.attrs["Config"]["Image"] == rebuilt["image"]


def test_existing_ssh_config_keeps_every_byte(make_project, home):
    config = home / ".ssh" / "config"
    config.parent.mkdir(exist_ok=True)
    before = config.read_text() if config.exists() else ""
    # Add the user's own content below whatever is there, then run up again.
    own = "Host build-server\n    HostName 192.0.2.10\n    User me\n# no newline at the end"
    config.write_text(before + own)
    project = make_project("sshcfg")
    assert project.deepbox("up").code == 0
    after = config.read_text()
    assert after.endswith(own)
    assert after.count("Include ") == 1
    assert project.ssh("true").code == 0


def test_port_conflict_is_one_sentence_and_leaves_nothing(make_project, docker_client):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        project = make_project("port", f"[ssh]\nport = {port}")
        result = project.deepbox("up")
    assert result.code == 1
    assert f"Port {port}" in result.err and "already in use" in result.err
    assert "Traceback" not in result.err
    assert not docker_client.containers.list(all=True, filters={"name": project.alias})


def test_a_port_taken_while_the_box_was_stopped_is_named_and_the_box_moves(make_project, home):
    project = make_project("moved", 'ide = ["pycharm"]')
    first = project.deepbox("up", "--json")
    assert first.code == 0, first.err
    old = json.loads(first.out)["port"]
    assert project.deepbox("down").code == 0
    holder = f"{Path('/proc/self/comm').read_text().strip()} (process {os.getpid()})"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", old))
        squatter.listen()
        clash = project.deepbox("up")
        assert clash.code == 1
        assert "Traceback" not in clash.err
        sentence = (
            f"Port {old} on 127.0.0.1, where box '{project.name}' publishes SSH, is taken by {holder}; stop that "
            "program, or run `deepbox up --new-port` to move the box to free ports (its ssh alias and IDE files "
            "follow)."
        )
        assert clash.err.strip().splitlines()[-1] == f"Error: {sentence}"
        doctor = {row["check"]: row for row in json.loads(project.deepbox("doctor", "--json").out)}
        assert doctor["port"] == {"check": "port", "level": "error", "message": sentence}
        project.write_config('ide = ["pycharm"]\n[env]\nCHANGED = "1"')  # recreated on its old port: the same
        recreated = project.deepbox("up")
        assert (recreated.code, recreated.err.strip().splitlines()[-1]) == (1, f"Error: {sentence}")
        moved = project.deepbox("up", "--new-port", "--json")
        assert moved.code == 0, moved.err
    new = json.loads(moved.out)["port"]
    assert new != old
    resolved = subprocess.run(
        ["ssh", "-F", str(home / ".ssh" / "config"), "-G", project.alias], capture_output=True, text=True, check=True
    )
    assert f"port {new}" in resolved.stdout.splitlines()
    idea = "".join(path.read_text() for path in (project.path / ".idea").glob("*.xml"))
    assert f'port="{new}"' in idea and f'port="{old}"' not in idea
    assert project.ssh("true").code == 0


def test_unknown_framework_and_malformed_config_fail_before_docker(make_project, docker_client):
    project = make_project("badcfg", 'frameworks = ["pytorh"]')
    result = project.deepbox("up")
    assert result.code == 1
    assert "Unknown framework 'pytorh'" in result.err and "pytorch" in result.err

    (project.path / "deepbox.toml").write_text('name = "x"\nframeworks = [numpy\n')
    result = project.deepbox("up")
    assert result.code == 1
    assert "line" in result.err and "column" in result.err
    assert "Traceback" not in result.err
    assert not docker_client.containers.list(all=True, filters={"label": f"deepbox.box={project.name}"})


def test_unreachable_engine_is_one_sentence(make_project):
    project = make_project("noengine")
    result = project.deepbox("up", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.code == 1
    assert "Cannot reach the Docker engine" in result.err
    assert "Traceback" not in result.err


def test_missing_base_image_names_bootstrap(make_project, docker_client):
    project = make_project("nobase")
    project.write_config(base="deepbox-test/absent:1")
    result = project.deepbox("up")
    assert result.code == 1
    assert "deepbox base bootstrap" in result.err
    assert not docker_client.containers.list(all=True, filters={"label": f"deepbox.box={project.name}"})


def test_rm_keeps_volumes_unless_asked_and_never_touches_the_project(make_project, docker_client):
    project = make_project("rm")
    assert project.deepbox("up").code == 0
    (project.path / "precious.txt").write_text("mine")
    volumes = {v.name for v in docker_client.volumes.list(filters={"label": f"deepbox.box={project.name}"})}
    assert volumes == {f"deepbox-{project.name}-home", f"deepbox-{project.name}-hostkeys"}

    assert project.deepbox("rm").code == 0
    assert not docker_client.containers.list(all=True, filters={"name": project.alias})
    assert {v.name for v in docker_client.volumes.list(filters={"label": f"deepbox.box={project.name}"})} == volumes

    assert project.deepbox("rm", project.name, "--volumes").code == 0  # the container is gone already
    assert project.deepbox("rm").code == 1  # nothing left to remove: a clear error
    assert not docker_client.volumes.list(filters={"label": f"deepbox.box={project.name}"})
    assert (project.path / "precious.txt").read_text() == "mine"


def test_snapshot_has_no_keys_and_serves_as_a_base(make_project, docker_client):
    project = make_project("snap")
    assert project.deepbox("up").code == 0
    assert project.ssh("mkdir -p /opt/venv/marker").code == 0
    tag = f"{PREFIX}-snapshot:1"
    result = project.deepbox("snapshot", tag)
    assert result.code == 0, result.err

    found = run_container(
        docker_client,
        tag,
        ["-c", "find / -xdev -type f \\( -name 'ssh_host_*' -o -name authorized_keys -o -name 'id_ed25519*' \\);"
         "find /run/deepbox /etc/ssh/deepbox -type f 2>/dev/null; test -d /opt/venv/marker && echo marker"],
        entrypoint="sh",
    ).decode()  # fmt: skip
    assert found.strip() == "marker"

    child = make_project("fromsnap")
    child.write_config(base=tag)
    up = child.deepbox("up")
    assert up.code == 0, up.err
    assert child.ssh("test -d /opt/venv/marker && python -c 'import sklearn'").code == 0


def test_two_ups_at_once_make_one_box(make_project, docker_client):
    project = make_project("twice")
    assert project.deepbox("up").code == 0  # build once, so both racers only start the box
    assert project.deepbox("rm").code == 0
    racers = [
        subprocess.Popen(deepbox_command(project.path, "up", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [racer.communicate(timeout=600) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err for _, err in outputs]
    actions = sorted(json.loads(out)["action"] for out, _ in outputs)
    assert actions == ["created", "running"]
    assert len(docker_client.containers.list(all=True, filters={"label": f"deepbox.box={project.name}"})) == 1


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_up_leaves_no_container(make_project, docker_client):
    project = make_project("intr")
    assert project.deepbox("up").code == 0  # image cached: the window below is start -> ready
    for _attempt in range(5):
        assert project.deepbox("rm").code == 0
        # Ctrl-C as a terminal delivers it, even when this suite runs as a background job (whose
        # children inherit an ignored SIGINT).
        proc = subprocess.Popen(deepbox_command(project.path, "up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=_default_sigint)  # fmt: skip
        # Interrupt once the new container runs and `up` waits for SSH: the box exists but is not ready.
        seen = ""
        for line in proc.stderr:
            seen += line
            if "Waiting for SSH" in line:
                proc.send_signal(signal.SIGINT)
                break
        _, rest = proc.communicate(timeout=120)
        err = seen + rest
        if proc.returncode == 0:
            continue  # up won the race; try again
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert not docker_client.containers.list(all=True, sparse=True, filters={"name": project.alias})
        return
    pytest.fail("up always finished before it could be interrupted")


def test_project_path_is_what_the_box_sees(box):
    (box.path / "from-host.txt").write_text("edited on the host")
    assert box.ssh("cat /workspace/from-host.txt").out == "edited on the host"
    assert Path(box.path).is_dir()
