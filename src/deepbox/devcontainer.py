"""`deepbox export devcontainer`: the box as a Dev Container definition in `.devcontainer/`.

VS Code Dev Containers, GitHub Codespaces and PyCharm's Dev Containers build the very Dockerfile
deepbox builds (`.devcontainer/Dockerfile`, with the files it copies under `.devcontainer/deepbox/`,
so the build context is the `.devcontainer` folder) and open the workspace with the same mounts,
environment, shared memory, user and interpreter.

What differs from `deepbox up`, and why:

- `overrideCommand` is true: the image's entrypoint starts sshd as root and refuses to start without
  the box's authorized key, which is a per-user secret that must not be committed. Dev container
  tools reach the container through `docker exec`, so they need no sshd; the container runs the tool's
  own keep-alive command instead, as root, and the editor works as the box user (`remoteUser`).
- JupyterLab, when the box runs it, is started by `postStartCommand` as the box user, listening on the
  container's loopback interface only; the editor forwards port 8888 (the token is in
  /tmp/deepbox-jupyterlab.log, or `jupyter server list`).
- Mount sources under the project folder or the home folder are written with `${localWorkspaceFolder}`
  and `${localEnv:HOME}`, so the file works on a teammate's machine; other host paths stay absolute.
  The folders must exist there (Docker refuses a missing bind source).
- All GPUs: `hostRequirements.gpu` (the tools add `--gpus all` where a GPU exists); a count or
  chosen GPUs: `--gpus` in `runArgs`.

The files are a snapshot of the spec (requirements included): run the export again after changing
deepbox.toml. devcontainer.json carries `customizations.deepbox`, a marker that says deepbox wrote it
and lists the files it wrote: a re-export replaces those files and removes the ones no longer needed,
and never overwrites a devcontainer.json (or other file there) that deepbox did not write, unless
forced. Everything is computed and checked first; the Dockerfile and its files are written before
devcontainer.json, each one atomically, so an interrupted export never leaves a devcontainer.json that
names missing files.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

from deepbox.config import Spec
from deepbox.dockerfile import JUPYTER_PORT, VENV
from deepbox.errors import DeepboxError
from deepbox.fsutil import atomic_write
from deepbox.ide.vscode import INTERPRETER_SETTING, JsoncError, load_jsonc
from deepbox.model import BuildContext

FOLDER = ".devcontainer"
CONFIG_NAME = "devcontainer.json"
DOCKERFILE_NAME = "Dockerfile"
MARKER = "deepbox"
GENERATED_BY = "deepbox export devcontainer"
EXTENSIONS = ("ms-python.python", "ms-python.debugpy")
JUPYTER_EXTENSION = "ms-toolsai.jupyter"
JUPYTER_LOG = "/tmp/deepbox-jupyterlab.log"  # noqa: S108 - a path inside the container
_EXPOSE = re.compile(r"^EXPOSE ([0-9]+)$", re.MULTILINE)


def _mount_field(text: str) -> str:
    """One field of a `--mount` value, which Docker reads as CSV: quoted when it holds , or "."""
    if "," in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _portable_source(host: Path, spec: Spec) -> str:
    """A host path as devcontainer.json variables spell it where they can: project first, then home."""
    for base, variable in ((spec.project, "${localWorkspaceFolder}"), (Path.home().resolve(), "${localEnv:HOME}")):
        if host == base or host.is_relative_to(base):
            relative = host.relative_to(base).as_posix()
            return variable if relative == "." else f"{variable}/{relative}"
    return host.as_posix()


def _mount(source: str, target: str, read_only: bool = False) -> str:
    fields = [f"source={source}", f"target={target}", "type=bind", *(["readonly"] if read_only else [])]
    return ",".join(_mount_field(item) for item in fields)


def _gpus(spec: Spec) -> tuple[list[str], dict[str, Any]]:
    """(runArgs, hostRequirements) for the spec's GPU request."""
    request = spec.gpus
    if not request.wanted:
        return [], {}
    if request.device_ids:
        return ["--gpus", '"device=' + ",".join(request.device_ids) + '"'], {}
    if request.count == -1:
        return [], {"gpu": True}
    return ["--gpus", str(request.count)], {}


def _jupyter_command(spec: Spec) -> str:
    server = (
        f"{VENV}/bin/jupyter lab --ip=127.0.0.1 --port={JUPYTER_PORT} --no-browser "
        f"--ServerApp.root_dir={shlex.quote(spec.workspace)} >{JUPYTER_LOG} 2>&1 &"
    )
    # The server must outlive the lifecycle command's shell: nohup on a shell that starts it in the background.
    return f"nohup sh -c {shlex.quote(server)} >/dev/null 2>&1"


def devcontainer_config(spec: Spec, context: BuildContext, files: list[str]) -> dict[str, Any]:
    """devcontainer.json's content; `files` are the paths under .devcontainer that deepbox writes."""
    data_mounts = [m for m in spec.mounts if not (m.host == spec.project and m.box == spec.workspace)]
    gpu_args, host_requirements = _gpus(spec)
    ports = sorted({int(port) for port in _EXPOSE.findall(context.dockerfile)} - {22})
    extensions = [*EXTENSIONS, *([JUPYTER_EXTENSION] if spec.jupyter else [])]
    config: dict[str, Any] = {
        "name": f"{spec.name} (deepbox)",
        "build": {"dockerfile": DOCKERFILE_NAME, "context": "."},
        "workspaceMount": _mount("${localWorkspaceFolder}", spec.workspace),
        "workspaceFolder": spec.workspace,
    }
    if data_mounts:
        config["mounts"] = [_mount(_portable_source(m.host, spec), m.box, m.read_only) for m in data_mounts]
    config["runArgs"] = [f"--shm-size={spec.shm_size}", *gpu_args]
    if spec.env:
        config["containerEnv"] = dict(spec.env)
    config["remoteUser"] = spec.user.name
    config["init"] = True
    config["overrideCommand"] = True
    if ports:
        config["forwardPorts"] = ports
    if spec.jupyter:
        config["portsAttributes"] = {str(JUPYTER_PORT): {"label": "JupyterLab", "onAutoForward": "notify"}}
        config["postStartCommand"] = _jupyter_command(spec)
    if host_requirements:
        config["hostRequirements"] = host_requirements
    config["customizations"] = {
        "vscode": {"settings": {INTERPRETER_SETTING: f"{VENV}/bin/python"}, "extensions": extensions},
        MARKER: {"generatedBy": GENERATED_BY, "box": spec.name, "files": files},
    }
    return config


def render_json(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=4, ensure_ascii=False) + "\n"


def _safe_relative(path: str) -> bool:
    normal = posixpath.normpath(path)
    return normal == path and not normal.startswith(("/", "../")) and normal not in (".", "..")


def _owned_files(config_path: Path, force: bool) -> list[str] | None:
    """The files the existing devcontainer.json says deepbox wrote; None when there is none.

    A devcontainer.json without deepbox's marker (or not readable as JSON) is refused unless forced."""
    if not config_path.exists():
        return None
    try:
        data = load_jsonc(config_path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, JsoncError):
        data = None
    marker = data.get("customizations", {}).get(MARKER) if isinstance(data, dict) else None
    if isinstance(marker, dict) and marker.get("generatedBy") == GENERATED_BY:
        listed = marker.get("files")
        return [f for f in listed if isinstance(f, str) and _safe_relative(f)] if isinstance(listed, list) else []
    if not force:
        raise DeepboxError(
            f"{config_path} was not written by deepbox (it has no customizations.deepbox marker); move it away, "
            "or run `deepbox export devcontainer --force` to replace it."
        )
    return None


def export(spec: Spec, context: BuildContext, *, force: bool = False) -> list[Path]:
    """Write `.devcontainer/` for the spec and its build context; returns the paths that changed."""
    folder = spec.project / FOLDER
    if folder.exists() and not folder.is_dir():
        raise DeepboxError(f"{folder} is a file, not a folder; move it away and run the export again.")
    contents: dict[str, bytes] = {DOCKERFILE_NAME: context.dockerfile.encode()}
    for relative, data in sorted(context.files.items()):
        if not _safe_relative(relative) or relative in (DOCKERFILE_NAME, CONFIG_NAME):
            raise DeepboxError(f"The build context holds a file named {relative!r}, which cannot be exported.")
        contents[relative] = data
    config_path = folder / CONFIG_NAME
    config_text = render_json(devcontainer_config(spec, context, list(contents))).encode()

    owned = _owned_files(config_path, force)
    if owned is None and not force:
        # No devcontainer.json of deepbox's: a file already at one of our paths is someone else's.
        for relative, data in contents.items():
            path = folder / relative
            if path.exists() and (not path.is_file() or path.read_bytes() != data):
                raise DeepboxError(
                    f"{path} already exists and was not written by deepbox; move it away, or run "
                    "`deepbox export devcontainer --force` to replace it."
                )

    changed: list[Path] = []
    try:
        for relative, data in contents.items():
            path = folder / relative
            if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
                continue
            atomic_write(path, data, 0o755 if relative.endswith(".sh") else 0o644)
            changed.append(path)
        if not (config_path.is_file() and config_path.read_bytes() == config_text):
            atomic_write(config_path, config_text, 0o644)
            changed.append(config_path)
        for relative in sorted(set(owned or []) - set(contents) - {CONFIG_NAME}):
            path = folder / relative
            if path.is_file() or path.is_symlink():
                path.unlink()
                changed.append(path)
                _remove_empty_parents(path.parent, folder)
    except OSError as exc:
        raise DeepboxError(
            f"Cannot write {exc.filename or folder} ({exc.strerror}); check the folder's permissions."
        ) from exc
    return changed


def _remove_empty_parents(directory: Path, folder: Path) -> None:
    while directory != folder and directory.is_relative_to(folder) and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent
