"""Several boxes per project: [box.NAME] tables over the top level, their names, locks and IDE files,
and --box (or DEEPBOX_BOX) choosing one of them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deepbox import lock
from deepbox.cli import main
from deepbox.config import box_names, load_config, load_spec, merge_box
from deepbox.errors import ConfigError
from deepbox.ide import pycharm

from .helpers import up_result

TWO_BOXES = """
frameworks = ["numpy"]
apt = ["git"]
[env]
WHICH = "default"
KEEP = "1"
[ssh]
bind = "127.0.0.1"
[run.train]
script = "train.py"

[box.cpu]

[box.other]
apt = ["jq"]
[box.other.env]
WHICH = "other"
[box.other.ssh]
port = 2299
[box.other.run.eval]
script = "eval.py"
"""


def _error(project: Path, box: str = "") -> str:
    with pytest.raises(ConfigError) as info:
        load_spec(project, box=box)
    return info.value.message


# Merging ---------------------------------------------------------------------------------------------------


def test_a_table_replaces_plain_keys_and_merges_tables_one_level_deep():
    top = {"apt": ["git"], "env": {"A": "1", "B": "1"}, "run": {"train": {"script": "t.py", "args": "-v"}}}
    table = {"apt": ["jq"], "env": {"B": "2"}, "run": {"train": {"script": "u.py"}}, "device": "cuda"}

    assert merge_box({**top, "box": {"x": table}}, table) == {
        "apt": ["jq"],
        "env": {"A": "1", "B": "2"},
        "run": {"train": {"script": "u.py"}},  # an entry of a table is replaced whole
        "device": "cuda",
    }


def test_a_named_box_takes_the_top_level_and_its_own_settings(make_project):
    project = make_project(TWO_BOXES, folder="Proj")

    other = load_spec(project, box="other")

    assert (other.name, other.alias, other.container_name) == ("proj-other", "deepbox-proj-other", "deepbox-proj-other")
    assert other.box == "other"
    assert other.frameworks == ("numpy",)
    assert other.apt == ("jq",)
    assert other.env == (("KEEP", "1"), ("WHICH", "other"))
    assert (other.ssh_port, other.ssh_bind) == (2299, "127.0.0.1")
    assert [run.name for run in other.run] == ["eval", "train"]
    assert other.lock_file == "deepbox.other.lock"
    cpu = load_spec(project, box="cpu")
    assert (cpu.name, cpu.apt, cpu.env, cpu.ssh_port) == (
        "proj-cpu",
        ("git",),
        (("KEEP", "1"), ("WHICH", "default")),
        0,
    )


def test_the_project_box_is_the_top_level_as_without_tables(make_project):
    with_tables = load_spec(make_project(TWO_BOXES, folder="Proj"))
    without = load_spec(make_project(TWO_BOXES.split("[box.cpu]")[0], folder="Proj2"))

    assert (with_tables.name, with_tables.alias, with_tables.box, with_tables.lock_file) == (
        "proj", "deepbox-proj", "", "deepbox.lock",
    )  # fmt: skip
    assert with_tables.apt == without.apt == ("git",)
    assert with_tables.env == without.env
    assert load_config(make_project(TWO_BOXES.split("[box.cpu]")[0], folder="Proj2"))[0].box == {}


def test_names_follow_the_project_box_unless_the_table_sets_one(make_project):
    project = make_project('name = "exp"\n[box.cuda]\ndevice = "cuda"\n[box.mine]\nname = "scratch"\n')

    assert box_names(load_config(project)[0], project) == {"": "exp", "cuda": "exp-cuda", "mine": "scratch"}
    assert load_spec(project, box="mine").alias == "deepbox-scratch"


def test_the_boxes_of_a_project_share_its_copy_on_a_server(make_project):
    project = make_project('name = "exp"\n[box.cuda]\ndevice = "cuda"\n')

    assert load_config(project, "cuda")[0].remote_path == "~/deepbox/exp"


def test_pyproject_tables_name_boxes_too(make_project):
    project = make_project(
        '[tool.deepbox]\nname = "pp"\n[tool.deepbox.box.cpu]\npip = ["rich"]\n', filename="pyproject.toml"
    )

    spec = load_spec(project, box="cpu")

    assert (spec.name, spec.pip) == ("pp-cpu", ("rich",))


# Errors: one sentence each ---------------------------------------------------------------------------------


def test_an_unknown_box_lists_the_project_boxes(make_project):
    project = make_project(TWO_BOXES)

    assert _error(project, "gpu") == (
        f"This project has no box 'gpu': {project / 'deepbox.toml'} defines cpu and other; pass one of them to "
        "--box, or no --box for the project's box."
    )


def test_an_unknown_box_in_a_project_without_tables(make_project):
    project = make_project('name = "exp"\n')

    assert _error(project, "gpu") == (
        f"This project has no box 'gpu': {project / 'deepbox.toml'} defines no [box.NAME] tables; drop --box (and "
        f"DEEPBOX_BOX) for the project's box, or add [box.gpu] to {project / 'deepbox.toml'}."
    )


def test_a_bad_table_name_is_one_sentence(make_project):
    project = make_project("[box.GPU]\n")

    assert _error(project) == (
        f"{project / 'deepbox.toml'}: 'box' has [box.GPU], whose name is not 1-41 characters of a-z, 0-9 and '-' "
        "starting with a letter or digit; rename it."
    )


@pytest.mark.parametrize(
    ("toml", "sentence"),
    [
        ('[box.cpu]\nframworks = ["numpy"]\n', "Unknown key 'box.cpu.framworks'; did you mean 'frameworks'?"),
        (
            '[box.cpu.ssh]\nport = "2222"\n',
            "'box.cpu.ssh.port' must be a whole number; write it without quotes: port = 2222.",
        ),
        ('[box.cpu]\ndevice = "gpu"\n', "'box.cpu.device' must be \"cpu\" or \"cuda\"."),
        ("[box]\ncpu = 1\n", "'box.cpu' must be a table; put its keys on the lines after [box.cpu]."),
        (
            '[box.cpu.run.eval]\nargs = "-v"\n',
            "'box.cpu.run.eval.script' is missing; add script = \"...\" under [box.cpu.run.eval].",
        ),
    ],
)  # fmt: skip
def test_a_bad_setting_in_a_table_names_its_path(make_project, toml, sentence):
    project = make_project(toml)

    assert _error(project) == f"{project / 'deepbox.toml'}: {sentence}"


def test_settings_that_clash_only_together_name_the_table(make_project):
    project = make_project("jupyter = true\n[box.cpu]\nports = [8888]\n")

    assert _error(project, "cpu") == (
        f"{project / 'deepbox.toml'}: 'box.cpu.ports' has 8888: box port 8888 is JupyterLab's, which jupyter = true "
        "publishes already (`deepbox jupyter` prints its URL); remove it."
    )


def test_two_boxes_of_one_name_are_refused(make_project):
    project = make_project('name = "exp"\n[box.a]\nname = "exp"\n')

    assert _error(project) == (
        f"{project / 'deepbox.toml'}: [box.a] and the top level both name box 'exp'; give [box.a] another name."
    )


def test_a_name_too_long_says_to_set_one(make_project):
    project = make_project(f'name = "{"x" * 40}"\n[box.cpu]\n')

    assert _error(project) == (
        f"{project / 'deepbox.toml'}: [box.cpu] would be box '{'x' * 40}-cpu', longer than 41 characters; set a "
        "shorter name in [box.cpu]."
    )


# --box on the command line ---------------------------------------------------------------------------------


def _dockerfile_box(capsys, *args: str, env: dict[str, str] | None = None, monkeypatch=None) -> str:
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    assert main(list(args)) == 0
    first = capsys.readouterr().out.splitlines()[0]
    return first.split("'")[1]


@pytest.mark.parametrize(
    ("args", "env", "box"),
    [
        (["dockerfile"], {}, "proj"),
        (["dockerfile", "--box", "other"], {}, "proj-other"),
        (["--box", "cpu", "dockerfile"], {}, "proj-cpu"),
        (["dockerfile"], {"DEEPBOX_BOX": "other"}, "proj-other"),
        (["--box", "cpu", "dockerfile"], {"DEEPBOX_BOX": "other"}, "proj-cpu"),  # typed wins, before or after
        (["dockerfile", "--box", "cpu"], {"DEEPBOX_BOX": "other"}, "proj-cpu"),
        (["dockerfile"], {"DEEPBOX_BOX": ""}, "proj"),
    ],
)
def test_box_picks_the_box_before_or_after_the_command_or_from_the_environment(
    make_project, capsys, monkeypatch, args, env, box
):
    project = make_project(TWO_BOXES, folder="Proj")

    assert _dockerfile_box(capsys, "-C", str(project), *args, env=env, monkeypatch=monkeypatch) == box


def test_an_unknown_box_on_the_command_line_is_one_sentence(make_project, capsys):
    project = make_project(TWO_BOXES)

    assert main(["-C", str(project), "ssh", "--box", "gpu"]) == 1
    assert capsys.readouterr().err == (
        f"Error: This project has no box 'gpu': {project / 'deepbox.toml'} defines cpu and other; pass one of "
        "them to --box, or no --box for the project's box.\n"
    )


def test_a_box_name_and_a_typed_box_do_not_go_together(make_project, capsys):
    assert main(["-C", str(make_project(TWO_BOXES)), "down", "proj", "--box", "cpu"]) == 2
    assert capsys.readouterr().err.endswith(
        "Error: Name the box once: NAME (a box on the engine) or --box (one of the project's).\n"
    )


def test_a_box_name_wins_over_deepbox_box(make_project, monkeypatch):
    stopped: list[str] = []
    monkeypatch.setattr("deepbox.box.down", lambda name, _site, _reporter: stopped.append(name) or True)
    monkeypatch.setenv("DEEPBOX_BOX", "cpu")
    project = make_project(TWO_BOXES, folder="Proj")

    assert main(["-C", str(project), "down", "someone"]) == 0
    assert main(["-C", str(project), "down"]) == 0
    assert stopped == ["someone", "proj-cpu"]


def test_lock_check_checks_every_box(make_project, capsys):
    project = make_project(TWO_BOXES)
    for name, box in (("deepbox.lock", ""), ("deepbox.other.lock", "other")):
        spec = load_spec(project, box=box)
        variant = lock.Variant("cpu", lock.config_digest(spec), "3.11", "x86_64-manylinux_2_36", "", "", "", "", "uv")
        lock.write(project, spec.name, {"cpu": variant}, name)

    assert main(["-C", str(project), "lock", "--check"]) == 1
    assert capsys.readouterr().err == (
        "Error: deepbox.cpu.lock is missing: run `deepbox lock --box cpu` and commit it.\n"
    )
    assert (
        (project / "deepbox.other.lock")
        .read_text()
        .startswith("# deepbox.other.lock: exactly what box 'proj-other' installs")
    )


def test_lock_check_without_tables_says_what_it_said(make_project, capsys):
    project = make_project('name = "exp"\n')
    spec = load_spec(project)
    variant = lock.Variant("cpu", lock.config_digest(spec), "3.11", "x86_64-manylinux_2_36", "", "", "", "", "uv")
    lock.write(project, spec.name, {"cpu": variant})

    assert main(["-C", str(project), "lock", "--check"]) == 0
    assert capsys.readouterr().err == f"{project / 'deepbox.lock'} matches deepbox.toml.\n"


def test_status_box_and_all_hosts_do_not_go_together(make_project, capsys):
    assert main(["-C", str(make_project(TWO_BOXES)), "status", "--box", "cpu", "--all-hosts"]) == 2
    assert capsys.readouterr().err.endswith("Error: --box and --all-hosts do not go together.\n")


# IDE files and completion ----------------------------------------------------------------------------------


def test_two_boxes_have_two_pycharm_interpreters(make_project):
    project = make_project(TWO_BOXES, folder="Proj")
    for box in ("cpu", "other"):
        spec = load_spec(project, box=box)
        pycharm.write_project(spec, up_result(box=spec.name, alias=spec.alias))

    configs = ET.parse(project / ".idea" / "sshConfigs.xml").getroot()  # noqa: S314 - written just now
    servers = ET.parse(project / ".idea" / "webServers.xml").getroot()  # noqa: S314
    assert sorted(config.get("id") for config in configs.iter("sshConfig")) == sorted(
        pycharm.ssh_config_id(name) for name in ("proj-cpu", "proj-other")
    )
    assert sorted(server.get("name") for server in servers.iter("webServer")) == [
        "deepbox-proj-cpu",
        "deepbox-proj-other",
    ]
    misc = (project / ".idea" / "misc.xml").read_text()
    assert 'project-jdk-name="Remote Python (deepbox-proj-other)"' in misc


def test_box_completes_the_project_tables(make_project):
    from .test_cli import complete

    project = make_project(TWO_BOXES)

    assert complete(f"deepbox up -C {project} --box ") == ["cpu", "other"]
    assert complete(f"deepbox -C {project} --box o") == ["other"]


def test_doctor_names_the_box_in_its_lock_hints(make_project):
    from deepbox import doctor

    project = make_project(TWO_BOXES)
    spec = load_spec(project, box="cpu")
    assert doctor.lock_finding(spec, {}, lock.config_digest(spec)).message == (
        "deepbox.cpu.lock has no cpu variant yet: `deepbox up --box cpu` (or `deepbox lock --box cpu`) writes one."
    )
    plain = load_spec(project)
    assert doctor.lock_finding(plain, {}, lock.config_digest(plain)).message == (
        "deepbox.lock has no cpu variant yet: `deepbox up` (or `deepbox lock`) writes one."
    )
