"""[secrets]: values read on this machine at `deepbox up` and handed to the running box through the
engine, into a file on its /run/deepbox tmpfs. They never go into the container's settings (so no
`docker inspect`), an image layer, a snapshot or the box log; the box's shells read the file.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from deepbox.config import Spec
from deepbox.errors import ConfigError

BOX_FILE = "/run/deepbox/secrets"  # read by /etc/profile.d/deepbox-secrets.sh in the box
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read(spec: Spec, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The box's secrets by name, from its env_file and from this machine's environment."""
    environ = os.environ if environ is None else environ
    where = spec.source or "deepbox.toml"
    values: dict[str, str] = {}
    if spec.secrets_file is not None:
        check_location(spec.secrets_file, spec.project, str(where))
        try:
            text = spec.secrets_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"The secrets file {spec.secrets_file} (secrets.env_file in {where}) does not exist; create it "
                "with NAME=value lines, or fix the path."
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise ConfigError(f"Cannot read the secrets file {spec.secrets_file}: {reason}.") from None
        values.update(parse_env_file(text, spec.secrets_file))
    for name, variable in spec.secrets_from_env:
        if variable not in environ:
            raise ConfigError(
                f"secrets.{name} in {where} takes its value from ${variable}, which is not set here; export "
                f"{variable} before `deepbox up`."
            )
        values[name] = environ[variable]
    clash = sorted(set(values) & {name for name, _ in spec.env})
    if clash:
        raise ConfigError(
            f"{clash[0]} is both in [env] and a secret in {where}; remove it from [env] (its value there is "
            "visible in `docker inspect`)."
        )
    return values


def parse_env_file(text: str, path: Path) -> dict[str, str]:
    """NAME=value lines, as .env files are written: blank lines and # comments skipped, an optional
    `export `, and one pair of quotes around a value removed (nothing inside them is expanded)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not equals or not _NAME.match(name):
            # The line is not shown: it may hold a secret.
            raise ConfigError(
                f"{path}, line {number}: not a NAME=value line (NAME being letters, digits and _, not starting "
                "with a digit); fix or remove that line."
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def check_location(path: Path, project: Path, where: str) -> None:
    """A secrets file inside the project folder must be one git ignores: otherwise it is one `git add .`
    away from the repository."""
    path, project = path.resolve(), project.resolve()
    if not path.is_relative_to(project) or _git_ignores(path, project):
        return
    raise ConfigError(
        f"The secrets file {path} (secrets.env_file in {where}) is inside the project folder and git does not "
        "ignore it; move it out, for example to ~/.config/deepbox/, or add it to .gitignore."
    )


def _git_ignores(path: Path, project: Path) -> bool:
    try:
        found = subprocess.run(
            ["git", "-C", str(project), "check-ignore", "-q", "--", str(path)],
            capture_output=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False  # no git: nothing says the file is kept out of a repository
    return found.returncode == 0


def box_file(values: Mapping[str, str]) -> bytes:
    """The file the box's shells source: each value in single quotes, so nothing in it is expanded, and
    set only where the variable is not set already (a value given for one command wins)."""
    lines = ["# Written by `deepbox up` from [secrets]; on a tmpfs, gone when the box stops."]
    for name, value in sorted(values.items()):
        quoted = "'" + value.replace("'", "'\\''") + "'"
        lines.append(f'[ -n "${{{name}+set}}" ] || export {name}={quoted}')
    return ("\n".join(lines) + "\n").encode()
