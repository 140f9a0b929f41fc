"""[secrets]: the settings, the env file, where it may live, and the file the box's shells source."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from deepbox.boxsecrets import box_file, parse_env_file, read
from deepbox.config import load_spec
from deepbox.errors import ConfigError


def _error(project: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        read(load_spec(project), environ or {})
    return info.value.message


def test_sources_resolve_without_their_values(make_project, tmp_path):
    project = make_project('[secrets]\nenv_file = "~/.config/deepbox/x.env"\nHF_TOKEN = { env = "MY_HF" }\n')
    spec = load_spec(project)
    assert spec.secrets_file == Path("~/.config/deepbox/x.env").expanduser()
    assert spec.secrets_from_env == (("HF_TOKEN", "MY_HF"),)


@pytest.mark.parametrize(
    ("body", "sentence"),
    [
        (
            'HF_TOKEN = "hf_abc123"',
            "'secrets' holds a value for HF_TOKEN, but secret values never go in this file: write "
            'HF_TOKEN = { env = "HF_TOKEN" } to take it from your environment at `deepbox up`, or put it in the file '
            "that env_file names.",
        ),
        (
            "HF_TOKEN = {}",
            "'secrets' has HF_TOKEN without its source; write HF_TOKEN = { env = \"VARIABLE\" }, VARIABLE being the "
            "variable on this machine that holds the value.",
        ),
        (
            '"MY TOKEN" = { env = "X" }',
            "'secrets' has 'MY TOKEN', which is not an environment variable name (letters, digits and _, not "
            "starting with a digit).",
        ),
        ('env_fil = "~/x.env"', "'secrets' has 'env_fil'; did you mean 'env_file'?"),
    ],
)
def test_bad_settings_are_one_sentence_and_never_echo_a_value(make_project, body, sentence):
    project = make_project(f"[secrets]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        load_spec(project)
    assert info.value.message == f"{project / 'deepbox.toml'}: {sentence}"
    assert "hf_abc123" not in info.value.message


def test_values_come_from_the_file_and_the_environment(make_project, tmp_path):
    env_file = tmp_path / "box.env"
    env_file.write_text("# tokens\n\nHF_TOKEN=hf_1\nexport QUOTED='a b'\nDOUBLE=\"x=y\"\n")
    project = make_project(f'[secrets]\nenv_file = "{env_file}"\nWANDB_API_KEY = {{ env = "MY_WANDB" }}\n')
    values = read(load_spec(project), {"MY_WANDB": "w-2"})
    assert values == {"HF_TOKEN": "hf_1", "QUOTED": "a b", "DOUBLE": "x=y", "WANDB_API_KEY": "w-2"}


def test_an_unset_variable_is_one_sentence(make_project):
    project = make_project('[secrets]\nHF_TOKEN = { env = "MY_HF" }\n')
    assert _error(project) == (
        f"secrets.HF_TOKEN in {project / 'deepbox.toml'} takes its value from $MY_HF, which is not set here; "
        "export MY_HF before `deepbox up`."
    )


def test_a_missing_file_is_one_sentence(make_project, tmp_path):
    project = make_project(f'[secrets]\nenv_file = "{tmp_path / "gone.env"}"\n')
    assert _error(project) == (
        f"The secrets file {tmp_path / 'gone.env'} (secrets.env_file in {project / 'deepbox.toml'}) does not "
        "exist; create it with NAME=value lines, or fix the path."
    )


def test_a_bad_line_is_named_but_not_shown(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_env_file("OK=1\nhf_secretvalue\n", tmp_path / "box.env")
    assert info.value.message == (
        f"{tmp_path / 'box.env'}, line 2: not a NAME=value line (NAME being letters, digits and _, not starting "
        "with a digit); fix or remove that line."
    )


def test_a_name_in_env_and_secrets_is_refused(make_project):
    project = make_project('[env]\nHF_TOKEN = "x"\n[secrets]\nHF_TOKEN = { env = "MY_HF" }\n')
    assert _error(project, {"MY_HF": "1"}) == (
        f"HF_TOKEN is both in [env] and a secret in {project / 'deepbox.toml'}; remove it from [env] (its value "
        "there is visible in `docker inspect`)."
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_file_in_the_project_must_be_git_ignored(make_project):
    project = make_project('[secrets]\nenv_file = ".env"\n')
    (project / ".env").write_text("HF_TOKEN=hf_1\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    assert _error(project) == (
        f"The secrets file {project / '.env'} (secrets.env_file in {project / 'deepbox.toml'}) is inside the "
        "project folder and git does not ignore it; move it out, for example to ~/.config/deepbox/, or add it to "
        ".gitignore."
    )
    (project / ".gitignore").write_text(".env\n")
    assert read(load_spec(project), {}) == {"HF_TOKEN": "hf_1"}


def test_the_box_file_gives_sh_the_values_as_written(tmp_path):
    values = {"A": 'it\'s $HOME `id` "q" \\n', "B": "", "C": "two\nlines"}
    path = tmp_path / "secrets"
    path.write_bytes(box_file(values))
    script = f'. {path}; printf "%s|%s|%s" "$A" "${{B-unset}}" "$C"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True, env={}).stdout
    assert out == "|".join(values.values())


def test_a_value_set_for_one_command_wins_over_the_box_file(tmp_path):
    path = tmp_path / "secrets"
    path.write_bytes(box_file({"HF_TOKEN": "from-box"}))
    out = subprocess.run(
        ["sh", "-c", f'. {path}; echo "$HF_TOKEN"'], capture_output=True, text=True, check=True,
        env={"HF_TOKEN": "mine"},
    ).stdout  # fmt: skip
    assert out.strip() == "mine"
