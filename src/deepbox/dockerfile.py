"""Spec + resolved catalog -> Dockerfile text and the build context that goes with it.

The text is deterministic (same spec, same bytes) and ordered for the layer cache: what rarely
changes comes first, the user's own packages last. The context holds only public material:
assets, CA certificates and local wheel folders; never a private key or authorized_keys.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import tarfile
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from deepbox import catalog
from deepbox.baseimage import DEFAULT_PATH, BaseFacts
from deepbox.config import Spec
from deepbox.errors import ConfigError

VENV = "/opt/venv"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SYSTEM_PACKAGES = ("ca-certificates", "openssh-server", "python3", "python3-venv")
PYPI = "https://pypi.org/simple"  # named, not defaulted: old pips default to pypi.python.org
LIB = "/usr/local/lib/deepbox"
UNREAD_BASE = "The base image was not read (no engine, or not pulled yet): `deepbox up` uses what it has."
JUPYTER_PORT = 8888
TIER_TITLES = {
    "base": "Scientific base (rarely changes)",
    "heavy": "Deep-learning frameworks (heavy, rarely changed)",
    "library": "Libraries on top of them",
    "tool": "Tools",
}


@dataclass(frozen=True)
class BuildContext:
    dockerfile: str
    files: dict[str, bytes] = field(default_factory=dict)  # context path -> content

    @property
    def spec_hash(self) -> str:
        digest = hashlib.sha256(self.dockerfile.encode())
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
        return digest.hexdigest()[:12]

    def tar(self) -> io.BytesIO:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for path, content in sorted({"Dockerfile": self.dockerfile.encode(), **self.files}.items()):
                info = tarfile.TarInfo(path)
                info.size = len(content)
                info.mode = 0o755 if path.endswith(".sh") else 0o644
                archive.addfile(info, io.BytesIO(content))
        buffer.seek(0)
        return buffer


def _asset(name: str) -> str:
    return resources.files("deepbox.assets").joinpath(name).read_text()


def _read_host_file(path: Path, what: str, source: Path | None) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{source or 'deepbox.toml'}: cannot read the {what} {path} ({exc.strerror}); "
            "fix the path in build settings."
        ) from exc


def _run(*lines: str) -> str:
    return "RUN " + " \\\n && ".join(lines)


def _apt_install(packages: tuple[str, ...] | list[str]) -> str:
    return _run(
        "apt-get update",
        "apt-get install -y --no-install-recommends " + " ".join(shlex.quote(p) for p in packages),
        "rm -rf /var/lib/apt/lists/*",
    )


def pip_options(spec: Spec, index_urls: list[str], wheel_dirs: list[str]) -> list[str]:
    """Index and find-links options for `uv pip install` (the same spelling pip uses)."""
    options: list[str] = []
    if spec.index_url:
        options += ["--index-url", spec.index_url]
    extra = list(spec.extra_index_urls)
    if spec.framework_indexes:
        extra += [url for url in dict.fromkeys(index_urls) if url not in extra]
    for url in extra:
        options += ["--extra-index-url", url]
    for link in [*wheel_dirs, *(fl for fl in spec.find_links if "://" in fl)]:
        options += ["--find-links", link]
    return [shlex.quote(option) for option in options]


def plan_for(spec: Spec, facts: BaseFacts | None = None) -> catalog.Plan:
    """The catalog plan for a spec (and what its base image already has): every compatibility error is
    raised here, before anything is built."""
    return catalog.plan(
        spec.framework_names, device=spec.device, cuda=spec.cuda, python=spec.python, base=spec.base, facts=facts
    )


def project_requirements(spec: Spec) -> tuple[str, bytes] | None:
    """The project's own requirements, as repo2docker finds them: (where from, requirements text).

    "auto": requirements.txt, else [project] dependencies of pyproject.toml; a path: that file;
    "off": none."""
    setting = spec.requirements
    if setting == "off":
        return None
    if setting != "auto":
        path = Path(setting).expanduser()
        path = path if path.is_absolute() else spec.project / path
        return str(path), _read_host_file(path, "requirements file", spec.source)
    candidate = spec.project / "requirements.txt"
    if candidate.is_file():
        return "requirements.txt", _read_host_file(candidate, "requirements file", spec.source)
    pyproject = spec.project / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            raise ConfigError(
                f'{pyproject}: cannot read its dependencies ({exc}); fix it or set requirements = "off".'
            ) from exc
        dependencies = data.get("project", {}).get("dependencies") or []
        if dependencies and all(isinstance(item, str) for item in dependencies):
            return "pyproject.toml", ("\n".join(dependencies) + "\n").encode()
    return None


def _checks(plan: catalog.Plan) -> dict[str, bytes]:
    """Tiny import-check modules for frameworks that are commands or C++ libraries, not Python modules."""
    files: dict[str, bytes] = {}
    for fw in plan.frameworks:
        if fw.module in CHECK_MODULES:
            files[f"deepbox/checks/{fw.module}.py"] = CHECK_MODULES[fw.module].encode()
    return files


# Installs go through uv: measured here it is 3-4x faster than pip for the same packages (bench/
# build_compare.py), and it keeps no cache in the layer with UV_NO_CACHE.
UV = "uv==0.13.*"
CHECK_MODULES = {
    "deepbox_check_darknet": (
        '"""Import check for Debian\'s darknet: the command must exist."""\n'
        "import shutil\n"
        "if shutil.which('darknet') is None:\n"
        "    raise ImportError('the darknet command is not installed')\n"
        "__version__ = '0.0.0+git20180914'\n"
    ),
    "deepbox_check_boost": (
        '"""Import check for Debian\'s Boost: the headers must exist."""\n'
        "import re\n"
        "with open('/usr/include/boost/version.hpp') as f:\n"
        "    __version__ = re.search(r'BOOST_LIB_VERSION \"([0-9_]+)\"', f.read()).group(1).replace('_', '.')\n"
    ),
}


def sshd_config(spec: Spec) -> str:
    """The hardened, static part of the box's sshd_config (the entrypoint adds the version-specific part)."""
    # The box user is root only on a root host whose project is root's: key-only then too.
    permit_root = "prohibit-password" if spec.user.uid == 0 else "no"
    return _asset("sshd_config").replace("{user}", spec.user.name).replace("{permit_root_login}", permit_root)


def render(spec: Spec, plan: catalog.Plan | None = None, facts: BaseFacts | None = None) -> BuildContext:
    """The Dockerfile and build context for a spec (plan: the spec's catalog plan, when already made;
    facts: what the base image already has, when it could be read)."""
    plan = plan or plan_for(spec, facts)
    files: dict[str, bytes] = {
        "deepbox/sshd_config": sshd_config(spec).encode(),
        "deepbox/entrypoint.sh": _asset("entrypoint.sh").encode(),
        "deepbox/sshd-config.sh": _asset("sshd-config.sh").encode(),
        "deepbox/create-user.sh": _asset("create-user.sh").encode(),
    }
    if spec.jupyter:
        files["deepbox/jupyter.sh"] = _asset("jupyter.sh").encode()
    for index, cert in enumerate(spec.ca_certificates):
        content = _read_host_file(cert, "CA certificate file", spec.source)
        if b"PRIVATE KEY" in content:
            raise ConfigError(
                f"{spec.source or 'deepbox.toml'}: the CA file {cert} contains a private key, which must never "
                "enter an image; point build.ca_certificates at a file with only the certificate."
            )
        files[f"deepbox/certs/extra-{index}.crt"] = content

    # Local find-links folders travel in the build context (the classic builder cannot mount them).
    wheel_dirs: list[str] = []
    for index, link in enumerate(fl for fl in spec.find_links if "://" not in fl):
        folder = Path(link).expanduser()
        folder = folder if folder.is_absolute() else spec.project / folder
        if not folder.is_dir():
            raise ConfigError(
                f"{spec.source or 'deepbox.toml'}: build.find_links folder {folder} does not exist; "
                "fix the path or remove it."
            )
        for wheel in sorted(folder.iterdir()):
            if wheel.is_file() and wheel.suffix in {".whl", ".gz", ".zip"}:
                files[f"deepbox/wheels/{index}/{wheel.name}"] = _read_host_file(wheel, "wheel", spec.source)
        wheel_dirs.append(f"/tmp/deepbox-wheels/{index}")  # noqa: S108 - a build-time path in the image

    index_urls = [url for item in plan.selected for url in item.index_urls]
    install = f"uv pip install {' '.join(pip_options(spec, index_urls, wheel_dirs))}".rstrip()
    user = spec.user
    unread = [] if facts else [f"# {UNREAD_BASE}"]
    lines = [
        f"# Generated by deepbox for box '{spec.name}'. Print it again with `deepbox dockerfile`.",
        *unread,
        f"FROM {spec.base}",
        "USER root",
        "ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8",
        "",
        "# System packages change rarely, so they come first. Debian's openssh-server makes host",
        "# keys on install: delete them in the same layer, the box makes its own on first start.",
        _apply_rm_host_keys(_apt_install(SYSTEM_PACKAGES)),
        "",
    ]
    framework_apt = sorted({pkg for item in plan.selected for pkg in item.apt} - set(SYSTEM_PACKAGES))
    if framework_apt:
        lines += [
            "# System libraries and Debian-packaged frameworks from the catalog.",
            _apt_install(framework_apt),
            "",
        ]
    if spec.ca_certificates:
        lines += [
            "# Extra CA certificates (for TLS-intercepting proxies), trusted by the system bundle.",
            "COPY deepbox/certs/ /usr/local/share/ca-certificates/deepbox/",
            "RUN update-ca-certificates",
            "",
        ]
    lines += [
        "# pip, uv, requests and Python's ssl all use the system bundle, extra CAs included.",
        f"ENV PIP_CERT={SYSTEM_BUNDLE} SSL_CERT_FILE={SYSTEM_BUNDLE} REQUESTS_CA_BUNDLE={SYSTEM_BUNDLE}",
        "",
        f"# The box user mirrors the host user ({user.uid}:{user.gid}) so mounted files keep their owner.",
        f"COPY deepbox/create-user.sh {LIB}/create-user.sh",
        f"RUN sh {LIB}/create-user.sh {user.name} {user.uid} {user.gid}",
        "",
        *_provided_lines(plan),
        "# The Python environment belongs to the box user, so `pip install` works without sudo.",
        f"RUN install -d -o {user.uid} -g {user.gid} {VENV}",
        f"USER {user.uid}:{user.gid}",
        *_venv_lines(spec, plan),
        f"ENV VIRTUAL_ENV={VENV} PATH={_box_path(facts)} UV_NO_CACHE=1 UV_LINK_MODE=copy",
    ]
    if wheel_dirs:
        lines += [f"COPY --chown={user.uid}:{user.gid} deepbox/wheels/ /tmp/deepbox-wheels/"]
    constraints = sorted({c for fw in plan.frameworks for c in fw.build_constraints})
    if constraints:
        # Old sdists (chainer) build only with an older setuptools; this binds their build step only.
        files["deepbox/build-constraints.txt"] = ("\n".join(constraints) + "\n").encode()
        lines += ["COPY deepbox/build-constraints.txt /tmp/deepbox-build-constraints.txt"]
    # One layer per tier, heavy and rarely changed first. Each layer names the earlier tiers' packages
    # again, so a later install cannot silently up- or downgrade them (they are already satisfied).
    # A layer names only the vendor indexes of its own and earlier frameworks, so adding PyTorch does
    # not invalidate the scientific base layer below it.
    cumulative: list[str] = []
    layer_indexes: list[str] = []
    for tier in catalog.model.TIERS:
        items = [item for item in plan.tier(tier) if item.packages]
        if not items:
            continue
        cumulative += [pkg for item in items for pkg in item.packages if pkg not in cumulative]
        layer_indexes += [url for item in items for url in item.index_urls if url not in layer_indexes]
        layer_install = f"uv pip install {' '.join(pip_options(spec, layer_indexes, wheel_dirs))}".rstrip()
        if constraints:
            layer_install += " --build-constraint /tmp/deepbox-build-constraints.txt"
        lines += [
            "",
            f"# {TIER_TITLES[tier]}: {', '.join(item.name for item in items)}.",
            f"RUN {layer_install} " + " ".join(shlex.quote(p) for p in cumulative),
        ]
    checks = _checks(plan)
    files.update(checks)
    if checks:
        lines += [
            "",
            "# Import checks for frameworks that are commands or C++ libraries (used by `deepbox up`).",
            "COPY deepbox/checks/ /tmp/deepbox-checks/",
            "RUN cp /tmp/deepbox-checks/*.py \"$(python -c 'import site; print(site.getsitepackages()[0])')\"/",
        ]
    if plan.env:
        lines += ["", "ENV " + " ".join(f"{name}={value}" for name, value in plan.env)]
    ports = [port for port in plan.ports if not (spec.jupyter and port == JUPYTER_PORT)]
    lines += [
        "",
        "# The SSH layer: hardened sshd_config and the entrypoint that starts sshd.",
        "USER root",
        "COPY deepbox/sshd_config /etc/ssh/sshd_config",
        f"COPY deepbox/sshd-config.sh {LIB}/sshd-config.sh",
        "COPY deepbox/entrypoint.sh /usr/local/bin/deepbox-entrypoint",
        *(["COPY deepbox/jupyter.sh /usr/local/bin/deepbox-jupyter", "EXPOSE 8888"] if spec.jupyter else []),
        *(f"EXPOSE {port}" for port in ports),
        f"ENV DEEPBOX_USER={user.name} DEEPBOX_WORKSPACE={spec.workspace}",
        "EXPOSE 22",
        'ENTRYPOINT ["/usr/local/bin/deepbox-entrypoint"]',
        "CMD []",
    ]
    if spec.apt:
        lines += ["", "# The project's own system packages.", _apt_install(spec.apt)]
    if spec.pip:
        lines += [
            "",
            "# The project's own Python packages, last: changing them rebuilds only this layer.",
            f"USER {user.uid}:{user.gid}",
            f"RUN {install} " + " ".join(shlex.quote(p) for p in spec.pip),
            "USER root",
        ]
    requirements = project_requirements(spec)
    if requirements is not None:
        origin, content = requirements
        files["deepbox/requirements.txt"] = content
        lines += [
            "",
            f"# The project's requirements ({origin}), the very last layer: they change most often.",
            f"USER {user.uid}:{user.gid}",
            f"COPY --chown={user.uid}:{user.gid} deepbox/requirements.txt /tmp/deepbox-requirements.txt",
            f"RUN {install} -r /tmp/deepbox-requirements.txt",
            "USER root",
        ]
    return BuildContext("\n".join(lines) + "\n", files)


def _box_path(facts: BaseFacts | None) -> str:
    """The venv first, then the base image's own PATH (a conda or CUDA image keeps its folders)."""
    folders = [f"{VENV}/bin", *(facts.path if facts else DEFAULT_PATH).split(":")]
    return ":".join(folder for folder in dict.fromkeys(folders) if folder)


def _provided_lines(plan: catalog.Plan) -> list[str]:
    provided = [item for item in plan.selected if item.provided]
    if not provided:
        return []
    names = ", ".join(f"{item.name} {item.provided}" for item in provided)
    return [f"# The base image's Python already has {names}: the box uses them (not installed again).", ""]


def _seed(python: str, spec: Spec) -> list[str]:
    """Shell lines that put uv into the venv of `python`. uv is a static binary, so it also serves the
    Pythons older than 3.8 that its package declines (Ubuntu 18.04's 3.6), once their pip is new
    enough to read its wheel tags; such an old pip is upgraded first, from PyPI's current address."""
    pip = f"{python} -m pip install -q --no-cache-dir --disable-pip-version-check"
    index = f" --index-url {shlex.quote(spec.index_url)}" if spec.index_url else ""
    return [
        f" && if ! {python} -c 'import sys; sys.exit(sys.version_info < (3, 8))'; "
        f"then {pip} --index-url {shlex.quote(spec.index_url or PYPI)} --upgrade pip; fi \\",
        f" && {pip}{index} --ignore-requires-python {shlex.quote(UV)}",
    ]


def _venv_lines(spec: Spec, plan: catalog.Plan) -> list[str]:
    """The venv, and uv in it (installed with pip once; every later install goes through uv)."""
    site = " --system-site-packages" if plan.system_site_packages else ""
    own = catalog.base_python(spec.base)
    if spec.python and own and spec.python != own:
        # Another Python than the base's: uv installs a managed CPython (python-build-standalone).
        return [
            "RUN python3 -m venv /tmp/uv-bootstrap \\",
            *_seed("/tmp/uv-bootstrap/bin/python", spec),  # noqa: S108 - a build-time path in the image
            f" && UV_PYTHON_INSTALL_DIR={VENV}/python /tmp/uv-bootstrap/bin/uv venv{site} --seed "
            f"--python {spec.python} {VENV} && {VENV}/bin/pip install -q --no-cache-dir {shlex.quote(UV)} \\",
            " && rm -rf /tmp/uv-bootstrap",
        ]
    return [f"RUN python3 -m venv{site} {VENV} \\", *_seed(f"{VENV}/bin/python", spec)]


def _apply_rm_host_keys(run_line: str) -> str:
    return run_line + " \\\n && rm -f /etc/ssh/ssh_host_*"


def standalone(
    frameworks: list[str], *, cuda: str | None = None, python: str | None = None, base: str | None = None
) -> BuildContext:
    """`deepbox dockerfile --frameworks a,b [--cuda 12.4] [--python 3.11]`: no project needed, like
    Deepo's generator. A CUDA version implies device = "cuda"; the project's requirements are off."""
    from pydantic import ValidationError

    from deepbox.config import DEFAULT_BASE, BoxConfig, resolve

    try:
        config = BoxConfig(
            name="deepbox",
            base=base or DEFAULT_BASE,
            frameworks=frameworks,
            device="cuda" if cuda else "cpu",
            cuda=cuda or "12.4",
            python=python or "",
            requirements="off",
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"Invalid option ({problems}).") from exc
    return render(resolve(config, Path.cwd(), None))
