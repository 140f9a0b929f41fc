"""config.py: deepbox.toml / [tool.deepbox] -> a validated BoxConfig -> a resolved Spec."""

from __future__ import annotations

import os
import pwd
import tomllib
from pathlib import Path

import pytest

from deepbox.config import (
    DEFAULT_BASE,
    DEFAULT_FRAMEWORKS,
    DEFAULT_WORKSPACE,
    BoxConfig,
    Mount,
    config_template,
    find_config_file,
    load_config,
    load_spec,
    parse_mount,
    sanitize_box_name,
)
from deepbox.dockerfile import project_requirements
from deepbox.errors import ConfigError, DeepboxError
from deepbox.gpu import GpuRequest

from .conftest import RUNNING_AS_ROOT

# Defaults and where the configuration comes from -----------------------------------------------


def test_defaults_without_any_config_file(make_project):
    project = make_project(folder="My Project_2")

    spec = load_spec(project)

    assert spec.source is None
    assert spec.name == "my-project-2"
    assert spec.alias == "deepbox-my-project-2"
    assert spec.base == DEFAULT_BASE
    assert spec.frameworks == DEFAULT_FRAMEWORKS
    assert spec.pip == ()
    assert spec.apt == ()
    assert spec.workspace == DEFAULT_WORKSPACE
    assert spec.mounts == (Mount(project.resolve(), DEFAULT_WORKSPACE),)
    assert spec.shm_size == "2g"
    assert spec.ssh_port == 0
    assert spec.ssh_bind == "127.0.0.1"
    assert spec.ssh_key is None
    assert spec.ca_certificates == ()
    assert spec.index_url is None


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("My Project_2", "my-project-2"),
        ("deepbox", "deepbox"),
        ("--Weird..Name--", "weird-name"),
        ("a  b\tc", "a-b-c"),
        ("___", "box"),
        ("Été 2024", "t-2024"),
        ("x" * 60, "x" * 41),
    ],
)
def test_sanitize_box_name(folder, expected):
    assert sanitize_box_name(folder) == expected


@pytest.mark.parametrize("folder", ["a" * 40 + "-bcd", "-" * 50, "9lives", "A_B_C_" * 10, "Ü", "a" * 41 + "b"])
def test_sanitized_names_are_always_valid_box_names(folder):
    name = sanitize_box_name(folder)
    assert BoxConfig(name=name).name == name
    assert len(name) <= 41
    assert not name.endswith("-")


def test_deepbox_toml_wins_over_pyproject(make_project):
    project = make_project('name = "from-toml"\n')
    (project / "pyproject.toml").write_text('[tool.deepbox]\nname = "from-pyproject"\n')

    spec = load_spec(project)

    assert spec.name == "from-toml"
    assert spec.source == project / "deepbox.toml"


def test_tool_deepbox_table_in_pyproject(make_project):
    project = make_project(
        '[project]\nname = "x"\n\n[tool.deepbox]\nname = "from-pyproject"\npip = ["rich"]\n\n'
        "[tool.deepbox.ssh]\nport = 2222\n",
        filename="pyproject.toml",
    )

    spec = load_spec(project)

    assert spec.source == project / "pyproject.toml"
    assert spec.name == "from-pyproject"
    assert spec.pip == ("rich",)
    assert spec.ssh_port == 2222


def test_pyproject_without_the_table_means_defaults(make_project):
    project = make_project('[project]\nname = "x"\n\n[tool.ruff]\nline-length = 100\n', filename="pyproject.toml")

    assert find_config_file(project) is None
    cfg, source = load_config(project)
    assert source is None
    assert cfg == BoxConfig()


def test_empty_deepbox_toml_means_defaults(make_project):
    project = make_project("")
    cfg, source = load_config(project)
    assert source == project / "deepbox.toml"
    assert cfg == BoxConfig()


def test_config_template_parses_back_to_the_defaults(make_project):
    text = config_template("my-box")
    project = make_project(text)

    cfg, source = load_config(project)

    assert source == project / "deepbox.toml"
    assert cfg == BoxConfig(name="my-box")
    assert cfg.model_copy(update={"name": None}) == BoxConfig()


def test_config_template_names_every_setting():
    """Every key of every table shows up in the template (set or commented), so users can find it."""
    text = config_template("x")
    for field in BoxConfig.model_fields:
        assert f"\n{field} =" in text or f"[{field}]" in text or f"[{field}." in text, field
    for section in ("ssh", "user", "build", "secrets", "slurm"):
        model = BoxConfig.model_fields[section].annotation
        for field in model.model_fields:
            assert f"\n{field} =" in text or f"\n# {field} =" in text, f"{section}.{field}"


# Errors name the file, the key path and the fix ---------------------------------------------------


def _error(project: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_spec(project)
    return str(info.value)


def test_unknown_top_level_key_suggests_the_right_one(make_project):
    project = make_project('framworks = ["numpy"]\n')
    message = _error(project)
    assert str(project / "deepbox.toml") in message
    assert "'framworks'" in message
    assert "did you mean 'frameworks'" in message


def test_unknown_nested_key_names_its_path(make_project):
    project = make_project("[ssh]\nprot = 2222\n")
    message = _error(project)
    assert str(project / "deepbox.toml") in message
    assert "'ssh.prot'" in message
    assert "did you mean 'port'" in message


def test_unknown_key_with_dashes_suggests_underscores(make_project):
    project = make_project('[build]\nindex-url = "https://example.org/simple"\n')
    message = _error(project)
    assert "'build.index-url'" in message
    assert "did you mean 'index_url'" in message


def test_unknown_key_without_close_match_lists_the_known_keys(make_project):
    project = make_project("[ssh]\nzzzzzz = 1\n")
    message = _error(project)
    assert "'ssh.zzzzzz'" in message
    assert "known keys: port, bind, key" in message


def test_unknown_key_in_pyproject_names_the_tool_path(make_project):
    project = make_project('[tool.deepbox]\nframworks = ["numpy"]\n', filename="pyproject.toml")
    message = _error(project)
    assert str(project / "pyproject.toml") in message
    assert "'tool.deepbox.framworks'" in message
    assert "did you mean 'frameworks'" in message


def test_tool_deepbox_that_is_not_a_table(make_project):
    project = make_project('[tool]\ndeepbox = "yes"\n', filename="pyproject.toml")
    message = _error(project)
    assert str(project / "pyproject.toml") in message
    assert "[tool.deepbox] must be a table" in message


def test_toml_syntax_error_names_file_line_and_column(make_project):
    project = make_project('name = "ok"\nframeworks = [numpy]\n')
    message = _error(project)
    assert str(project / "deepbox.toml") in message
    assert "line 2" in message
    assert "column" in message


def test_a_folder_named_deepbox_toml_is_not_a_config(make_project):
    project = make_project()
    (project / "deepbox.toml").mkdir()
    assert find_config_file(project) is None
    assert load_spec(project).source is None


def test_non_utf8_config_is_a_config_error(make_project):
    project = make_project()
    (project / "deepbox.toml").write_bytes('# caf\xe9 = latin-1 comment\nname = "x"\n'.encode("latin-1"))
    message = _error(project)
    assert str(project / "deepbox.toml") in message


@pytest.mark.parametrize(
    ("toml", "key_path"),
    [
        ("[ssh]\nport = 70000\n", "'ssh.port'"),
        ("[ssh]\nport = -1\n", "'ssh.port'"),
        ('shm_size = "lots"\n', "'shm_size'"),
        ('workspace = "workspace"\n', "'workspace'"),
        ('[env]\n"1BAD" = "x"\n', "'env'"),
        ('[env]\nGOOD = "a \\"quoted\\" value"\n', "'env'"),
        ('[user]\nname = "root"\n', "'user.name'"),
        ('[user]\nname = "Bad Name"\n', "'user.name'"),
        ("[user]\nuid = 0\n", "'user.uid'"),
        ('name = "Not_Valid"\n', "'name'"),
        ('frameworks = "numpy"\n', "'frameworks'"),
        ("mounts = [1]\n", "'mounts[0]'"),
    ],
)
def test_bad_values_name_the_key_path(make_project, toml, key_path):
    project = make_project(toml)
    message = _error(project)
    assert str(project / "deepbox.toml") in message
    assert key_path in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("toml", "sentence"),
    [
        ("[env]\nSEED = 0\n", """'env.SEED' must be text; quote it: SEED = "0"."""),
        ('[env]\n"MY VAR" = 1\n', """'env."MY VAR"' must be text; quote it: "MY VAR" = "1"."""),
        ("python = 3.10\n", """'python' must be text; put the value in quotes, as written: python = "..."."""),
        ("[env]\nDEBUG = true\n", """'env.DEBUG' must be text; quote it: DEBUG = "true"."""),
        ("frameworks = [1]\n", """'frameworks[0]' must be text; quote it: "1"."""),
        ('frameworks = "pytorch"\n', """'frameworks' must be a list; write frameworks = ["pytorch"]."""),
        ('[ssh]\nport = "2222"\n', "'ssh.port' must be a whole number; write it without quotes: port = 2222."),
        (
            "[user]\nuid = 1000.0\n",
            "'user.uid' must be a whole number; write it without the decimal point: uid = 1000.",
        ),
        ('jupyter = "true"\n', "'jupyter' must be true or false; write it without quotes: jupyter = true."),
        ('jupyter = "yes"\n', "'jupyter' must be true or false, without quotes."),
        ("[ssh]\nport = 70000\n", "'ssh.port' must be 65535 or less."),
        ('ide = ["emacs"]\n', """'ide[0]' must be "pycharm" or "vscode"."""),
        ("ssh = 3\n", "'ssh' must be a table; put its keys on the lines after [ssh]."),
        ('[run.train]\nargs = "x"\n', """'run.train.script' is missing; add script = "..." under [run.train]."""),
        (
            "gpus = true\n",
            """'gpus' must be "auto", "all", "none", a number of GPUs, or a list of GPU indexes or UUIDs """
            "such as [0, 2].",
        ),
        ("gpus = [0, true]\n", "'gpus[1]' must be text in quotes or a whole number."),
        ("gpus = [0, -1]\n", "'gpus' must list GPU indexes of 0 or more, as nvidia-smi numbers the GPUs."),
        ('shm_size = "lots"\n', """'shm_size' must be a size such as "2g", "2GB" or "512m"."""),
        (
            '[run.train]\nscrpt = "x"\n',
            "Unknown key 'run.train.scrpt'; did you mean 'script'? "
            """'run.train.script' is missing; add script = "..." under [run.train].""",
        ),
    ],
)
def test_config_errors_are_sentences_with_the_fix(make_project, toml, sentence):
    """No pydantic wording ('Input should be', 'gpus.list[str].0'): the key as written, and what to write."""
    project = make_project(toml)
    assert _error(project) == f"{project / 'deepbox.toml'}: {sentence}"


def test_config_errors_in_pyproject_name_the_tool_key(make_project):
    project = make_project('[tool.deepbox]\ngpus = true\n[tool.deepbox.ssh]\nport = "22"\n', filename="pyproject.toml")
    assert _error(project) == (
        f"{project / 'pyproject.toml'}: 'tool.deepbox.ssh.port' must be a whole number; write it without quotes: "
        """port = 22. 'tool.deepbox.gpus' must be "auto", "all", "none", a number of GPUs, or a list of GPU """
        "indexes or UUIDs such as [0, 2]."
    )


@pytest.mark.parametrize(
    ("gpus", "device_ids"), [("[0, 2]", ("0", "2")), ('["0", 2]', ("0", "2")), ('["GPU-1a2b"]', ("GPU-1a2b",))]
)
def test_gpu_indexes_may_be_numbers(make_project, gpus, device_ids):
    spec = load_spec(make_project(f"gpus = {gpus}\n"))
    assert spec.gpus == GpuRequest(device_ids=device_ids)


@pytest.mark.parametrize(
    ("size", "normal"),
    [("2g", "2g"), ("2GB", "2g"), ("2gb", "2g"), ("2 GB", "2g"), ("2GiB", "2g"), ("512MB", "512m"), ("1024", "1024")],
)
def test_shm_size_takes_dockers_spellings(make_project, size, normal):
    """`docker run --shm-size` takes 2g, 2GB and 2GiB alike (all 2 GiB); one spelling per size in the spec."""
    assert load_spec(make_project(f'shm_size = "{size}"\n')).shm_size == normal


def test_a_missing_requirements_file_names_the_setting(make_project):
    project = make_project('requirements = "nope.txt"\n')
    with pytest.raises(ConfigError) as info:
        project_requirements(load_spec(project))
    assert info.value.message == (
        f"{project / 'deepbox.toml'}: cannot read the requirements file {project.resolve() / 'nope.txt'} "
        "(No such file or directory); fix the requirements setting (a path from the project folder), "
        'or set requirements = "off".'
    )


def test_bad_env_name_is_named(make_project):
    message = _error(make_project('[env]\n"1BAD" = "x"\n'))
    assert "1BAD" in message
    assert "environment variable name" in message


def test_all_problems_are_reported_at_once(make_project):
    message = _error(make_project('shm_size = "lots"\n[ssh]\nport = 70000\n'))
    assert "'shm_size'" in message
    assert "'ssh.port'" in message


def test_bad_value_in_pyproject_names_the_tool_path(make_project):
    project = make_project("[tool.deepbox.ssh]\nport = 70000\n", filename="pyproject.toml")
    assert "'tool.deepbox.ssh.port'" in _error(project)


def test_config_error_is_a_deepbox_error():
    assert issubclass(ConfigError, DeepboxError)


def test_shm_size_is_normalised_to_lower_case(make_project):
    assert load_spec(make_project('shm_size = "512M"\n')).shm_size == "512m"


def test_env_is_sorted_in_the_spec(make_project):
    spec = load_spec(make_project('[env]\nZED = "1"\nALPHA = "2"\n'))
    assert spec.env == (("ALPHA", "2"), ("ZED", "1"))


# Mounts ------------------------------------------------------------------------------------------


def test_mounts_home_relative_project_relative_and_read_only(make_project, home):
    project = make_project('mounts = ["~/data:/data", "models:/models:ro", "/srv/cache:/cache:rw"]\n')

    spec = load_spec(project)

    assert spec.mounts[0] == Mount(project.resolve(), "/workspace")
    assert spec.mounts[1] == Mount((home / "data").resolve(), "/data", read_only=False)
    assert spec.mounts[2] == Mount(project.resolve() / "models", "/models", read_only=True)
    assert spec.mounts[3] == Mount(Path("/srv/cache"), "/cache", read_only=False)


def test_host_path_may_contain_a_colon(tmp_path):
    mount = parse_mount("odd:name:/data", tmp_path, None)
    assert mount == Mount(tmp_path.resolve() / "odd:name", "/data")


@pytest.mark.parametrize("raw", ["data", ":/data", "data:", "data:relative", "data:/", "/data:ro"])
def test_bad_mount_forms(tmp_path, raw):
    source = tmp_path / "deepbox.toml"
    with pytest.raises(ConfigError) as info:
        parse_mount(raw, tmp_path, source)
    message = str(info.value)
    assert str(source) in message
    assert repr(raw) in message
    assert "'~/data:/data'" in message or "'/data'" in message


@pytest.mark.parametrize("mode", ["rx", "RO", "z"])
def test_a_mount_mode_other_than_ro_or_rw_is_named(tmp_path, mode):
    source = tmp_path / "deepbox.toml"
    with pytest.raises(ConfigError) as info:
        parse_mount(f"~/data:/data:{mode}", tmp_path, source)
    assert info.value.message == (
        f"{source}: mounts entry '~/data:/data:{mode}': the mode '{mode}' is not one deepbox takes; "
        "end it with ':ro' (read-only) or ':rw', or drop it."
    )


def test_bad_mount_in_config_names_the_file(make_project):
    project = make_project('mounts = ["nocolon"]\n')
    message = _error(project)
    assert str(project / "deepbox.toml") in message
    assert "'nocolon'" in message


def test_duplicate_box_path_is_refused(make_project):
    message = _error(make_project('mounts = ["a:/data", "b:/data"]\n'))
    assert "/data" in message
    assert "two mounts" in message


def test_mount_over_the_workspace_is_refused(make_project):
    message = _error(make_project('mounts = ["other:/workspace"]\n'))
    assert "/workspace" in message


def test_duplicate_box_path_with_trailing_slash_is_refused(make_project):
    with pytest.raises(ConfigError):
        load_spec(make_project('mounts = ["a:/data", "b:/data/"]\n'))


# The box user ------------------------------------------------------------------------------------


@pytest.mark.skipif(not RUNNING_AS_ROOT, reason="the root -> project owner mapping applies only when run as root")
def test_root_with_a_root_owned_project_gets_root(make_project):
    project = make_project()
    assert project.stat().st_uid == 0

    user = load_spec(project).user

    assert (user.name, user.uid, user.gid) == ("root", 0, 0)
    assert user.home == "/root"


@pytest.mark.skipif(not RUNNING_AS_ROOT, reason="the root -> project owner mapping applies only when run as root")
def test_root_with_a_named_user_gets_that_user_with_uid_1000(make_project):
    user = load_spec(make_project('[user]\nname = "dev"\n')).user

    assert (user.name, user.uid, user.gid, user.home) == ("dev", 1000, 1000, "/home/dev")


@pytest.mark.skipif(not RUNNING_AS_ROOT, reason="chown and the root -> project owner mapping need root")
def test_root_mirrors_the_project_owner(make_project):
    project = make_project()
    os.chown(project, 4242, 4243)
    try:
        expected_name = pwd.getpwuid(4242).pw_name
    except KeyError:
        expected_name = "dev"

    user = load_spec(project).user

    assert (user.uid, user.gid) == (4242, 4243)
    assert user.name == expected_name


@pytest.mark.skipif(RUNNING_AS_ROOT, reason="as root the box user mirrors the project owner instead")
def test_non_root_mirrors_the_current_user(make_project):
    user = load_spec(make_project()).user
    assert (user.uid, user.gid) == (os.getuid(), os.getgid())


def test_user_settings_override_the_host_user(make_project):
    user = load_spec(make_project('[user]\nname = "alice"\nuid = 4321\ngid = 0\n')).user
    assert (user.name, user.uid, user.gid) == ("alice", 4321, 0)


# Other resolution ----------------------------------------------------------------------------------


def test_relative_paths_are_project_relative(make_project, home):
    project = make_project('[ssh]\nkey = "keys/id"\n[build]\nca_certificates = ["certs/ca.crt", "~/corp.pem"]\n')
    spec = load_spec(project)
    assert spec.ssh_key == project.resolve() / "keys" / "id"
    assert spec.ca_certificates == (project.resolve() / "certs" / "ca.crt", home / "corp.pem")


def test_build_settings_are_carried_into_the_spec(make_project):
    spec = load_spec(
        make_project(
            "[build]\n"
            'index_url = "https://mirror.example/simple"\n'
            'extra_index_urls = ["https://extra.example/simple"]\n'
            'find_links = ["https://wheels.example/", "wheels"]\n'
            'network = "host"\n'
        )
    )
    assert spec.index_url == "https://mirror.example/simple"
    assert spec.extra_index_urls == ("https://extra.example/simple",)
    assert spec.find_links == ("https://wheels.example/", "wheels")
    assert spec.build_network == "host"


def test_template_is_valid_toml_for_any_sanitised_name():
    for folder in ("My Project_2", "x" * 80, "!!!"):
        name = sanitize_box_name(folder)
        assert tomllib.loads(config_template(name))["name"] == name


def test_spec_is_frozen(make_project):
    spec = load_spec(make_project())
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
