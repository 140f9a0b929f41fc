"""Spec + resolved catalog -> Dockerfile text and the build context that goes with it.

The text is deterministic (same spec, same bytes) and ordered for the layer cache: what rarely
changes comes first, the user's own packages last. The context holds only public material:
assets, CA certificates and local wheel folders; never a private key or authorized_keys.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import tomllib
from importlib import resources
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from deepbox import catalog
from deepbox.baseimage import DEFAULT_PATH, BaseFacts
from deepbox.catalog.model import normalize
from deepbox.config import Spec
from deepbox.errors import ConfigError, DeepboxError
from deepbox.lock import Variant
from deepbox.model import BuildContext
from deepbox.resolver import ALL_TIERS, PYPI

VENV = "/opt/venv"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SYSTEM_PACKAGES = ("ca-certificates", "openssh-server", "python3", "python3-venv")
LIB = "/usr/local/lib/deepbox"
UNREAD_BASE = "The base image was not read (no engine, or not pulled yet): `deepbox up` uses what it has."
UNLOCKED = "Not locked: installs what the specifiers resolve to today; `deepbox lock` pins every package."
WHEELS = "/tmp/deepbox-wheels"  # noqa: S108 - local wheel folders in the image, while building
LOCKED = "/tmp/deepbox-lock"  # noqa: S108 - the lock's parts in the image, while building
# What the box's venv holds as built (name==version a line, deepbox's own tools left out): the image keeps
# it, so `deepbox status NAME` can tell what was installed in the box since.
INSTALLED = f"{LIB}/installed.txt"
# What making the venv and seeding uv put in it besides the lock (Debian's and Ubuntu's ensurepip add
# a pkg-resources 0.0.0 stand-in).
SEEDED = ("pip", "setuptools", "wheel", "pkg-resources", "uv")
JUPYTER_PORT = 8888
TIER_TITLES = {
    "base": "Scientific base (rarely changes)",
    "heavy": "Deep-learning frameworks (heavy, rarely changed)",
    "library": "Libraries on top of them",
    "tool": "Tools",
}


def _asset(name: str) -> str:
    return resources.files("deepbox.assets").joinpath(name).read_text()


def _read_host_file(path: Path, what: str, source: Path | None, fix: str) -> bytes:
    """A file a setting names; `fix` says which setting to change when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{source or 'deepbox.toml'}: cannot read the {what} {path} ({exc.strerror}); {fix}."
        ) from exc


def _run(*lines: str) -> str:
    return "RUN " + " \\\n && ".join(lines)


# BuildKit keeps apt's and uv's downloads in cache mounts between builds, so a rebuild (another
# framework, one more package) fetches only what it has not fetched before. apt's archives go to a
# folder of their own: Docker's Debian images delete the ones in /var/cache/apt after every install.
APT_ARCHIVES = "/var/cache/deepbox-apt"
APT_CACHES = (
    f"--mount=type=cache,id=deepbox-apt-archives,target={APT_ARCHIVES},sharing=locked "
    "--mount=type=cache,id=deepbox-apt-lists,target=/var/lib/apt/lists,sharing=locked"
)
UV_CACHE = "/tmp/deepbox-uv-cache"  # noqa: S108 - a cache mount, only while building


class _Both(str):
    """A RUN line in BuildKit's form (with cache mounts); `plain` is the same step for the classic
    builder, and what the spec hash is taken from."""

    plain: str

    def __new__(cls, buildkit: str, plain: str) -> _Both:
        line = super().__new__(cls, buildkit)
        line.plain = plain
        return line


# apt-get writes its package caches (pkgcache.bin, srcpkgcache.bin: about 80 MB on Debian 12) on every
# update and install; the next apt-get makes them again, so no layer keeps them.
APT_BINARY_CACHES = "rm -f /var/cache/apt/*.bin"
# dpkg leaves out what a box user does not read: documentation (but each package's copyright), man and
# info pages, and the translations of programs' messages. It holds for later `apt-get install`s too.
NO_DOCS = "/etc/dpkg/dpkg.cfg.d/deepbox-no-docs"
NO_DOCS_RULES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)


def _no_docs() -> str:
    """A shell command that writes the dpkg rule that leaves documentation out."""
    return "printf '%s\\n' " + " ".join(shlex.quote(rule) for rule in NO_DOCS_RULES) + f" >{NO_DOCS}"


def _apt_install(packages: tuple[str, ...] | list[str], buildkit: bool, then: str = "", first: bool = False) -> str:
    """apt-get install in one layer, without apt's lists and caches; `then`: more shell to run in the same
    layer; `first`: the image's first install, which also writes the dpkg rule that leaves docs out."""
    install = "apt-get install -y --no-install-recommends " + " ".join(shlex.quote(p) for p in packages)
    setup = [_no_docs()] if first else []
    plain = _run(*setup, "apt-get update", install, f"rm -rf /var/lib/apt/lists/* && {APT_BINARY_CACHES}") + then
    if not buildkit:
        return plain
    cached = _run(
        *setup,
        f"mkdir -p {APT_ARCHIVES}/partial",
        "apt-get update",
        install.replace(" -y ", f" -y -o Dir::Cache::Archives={APT_ARCHIVES}/ ", 1),
        APT_BINARY_CACHES,
    )
    return _Both(cached.replace("RUN ", f"RUN {APT_CACHES} \\\n    ", 1) + then, plain)


def _uv_run(command: str, buildkit: bool, user: str, wheels: bool = False) -> str:
    """RUN a uv command; with BuildKit its downloads and built wheels stay in a cache mount of the box
    user's (uv keeps none in the image either way), and `wheels`: the local wheel folders of the build
    context are mounted for it, so no layer keeps them."""
    plain = f"RUN {command}"
    if not buildkit:
        return plain
    uid, _, gid = user.partition(":")
    mount = f"--mount=type=cache,id=deepbox-uv-{uid},target={UV_CACHE},uid={uid},gid={gid}"
    if wheels:
        mount += f" --mount=type=bind,source=deepbox/wheels,target={WHEELS}"
    return _Both(f"RUN {mount} \\\n    UV_NO_CACHE=0 UV_CACHE_DIR={UV_CACHE} {command}", plain)


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


def plan_for(
    spec: Spec, facts: BaseFacts | None = None, *, cuda_major: int | None = None, vendor_tag: str | None = None
) -> catalog.Plan:
    """The catalog plan for a spec (and what its base image already has): every compatibility error is
    raised here, before anything is built. On a cuda box without a CUDA major (printing a Dockerfile
    that is not locked), an explicit cuda setting gives it; "auto" takes CUDA 13 from PyPI."""
    if spec.device == "cuda" and cuda_major is None:
        cuda_major, exact = catalog.cuda.parse_setting(spec.cuda) if spec.cuda and spec.cuda != "auto" else (13, None)
        vendor_tag = catalog.cuda.tag(exact) if exact else None
    return catalog.plan(
        spec.framework_names,
        device=spec.device,
        cuda_major=cuda_major,
        vendor_tag=vendor_tag,
        python=spec.python,
        base=spec.base,
        facts=facts,
    )


def project_requirements(spec: Spec) -> tuple[str, bytes] | None:
    """The project's own requirements, as repo2docker finds them: (where from, requirements text).

    "auto": requirements.txt, else [project] dependencies of pyproject.toml; a path: that file;
    "off": none."""
    setting = spec.requirements
    if setting == "off":
        return None
    if setting != "auto":
        path = spec.project_path(setting)
        return str(path), _read_host_file(
            path,
            "requirements file",
            spec.source,
            'fix the requirements setting (a path from the project folder), or set requirements = "off"',
        )
    candidate = spec.project / "requirements.txt"
    if candidate.is_file():
        return "requirements.txt", _read_host_file(
            candidate, "requirements file", spec.source, 'make it readable, or set requirements = "off"'
        )
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
UV = "uv==0.13.9"  # the resolver deepbox locks with installs the lock in the image
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


def render(
    spec: Spec,
    plan: catalog.Plan | None = None,
    facts: BaseFacts | None = None,
    lock: Variant | None = None,
    *,
    buildkit: bool = False,
) -> BuildContext:
    """The Dockerfile and build context for a spec (plan: the spec's catalog plan, when already made;
    facts: what the base image already has, when it could be read; lock: the locked variant to install
    exactly; without one, the Dockerfile installs from the requirement specifiers and says so;
    buildkit: for BuildKit, with cache mounts for apt's and uv's downloads)."""
    if plan is None:
        plan = plan_for(spec, facts, cuda_major=lock.cuda_major if lock is not None else None)
    user = spec.user
    files: dict[str, bytes] = {
        "deepbox/sshd_config": sshd_config(spec).encode(),
        "deepbox/entrypoint.sh": _asset("entrypoint.sh").encode(),
        "deepbox/sshd-config.sh": _asset("sshd-config.sh").encode(),
        "deepbox/create-user.sh": _asset("create-user.sh").encode(),
        "deepbox/secrets.sh": _asset("secrets.sh").encode(),
    }
    if spec.jupyter:
        files["deepbox/jupyter.sh"] = _asset("jupyter.sh").encode()
    if not spec.sudo and user.uid != 0:
        files["deepbox/sudo-off.sh"] = _asset("sudo-off.sh").encode()
    for index, cert in enumerate(spec.ca_certificates):
        content = _read_host_file(cert, "CA certificate file", spec.source, "fix the path in build.ca_certificates")
        if b"PRIVATE KEY" in content:
            raise ConfigError(
                f"{spec.source or 'deepbox.toml'}: the CA file {cert} contains a private key, which must never "
                "enter an image; point build.ca_certificates at a file with only the certificate."
            )
        files[f"deepbox/certs/extra-{index}.crt"] = content

    notes = [] if facts else [f"# {UNREAD_BASE}"]
    if lock is None:
        notes.append(f"# {UNLOCKED}")
    lines = [
        f"# Generated by deepbox for box '{spec.name}'. Print it again with "
        f"`deepbox dockerfile{f' --box {spec.box}' if spec.box else ''}`.",
        *notes,
        f"FROM {spec.base}",
        "USER root",
        "ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8",
        "",
        "# System packages change rarely, so they come first. Debian's openssh-server makes host",
        "# keys on install: delete them in the same layer, the box makes its own on first start. dpkg leaves",
        "# out documentation, man pages and translations, in this install and in every later one.",
        _apt_install(SYSTEM_PACKAGES, buildkit, then=" \\\n && rm -f /etc/ssh/ssh_host_*", first=True),
        "",
    ]
    framework_apt = sorted({pkg for item in plan.selected for pkg in item.apt} - set(SYSTEM_PACKAGES))
    if framework_apt:
        lines += [
            "# System libraries and Debian-packaged frameworks from the catalog.",
            _apt_install(framework_apt, buildkit),
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
    constraints = sorted({c for fw in plan.frameworks for c in fw.build_constraints})
    if constraints:
        # Old sdists (chainer) build only with an older setuptools; this binds their build step only.
        files["deepbox/build-constraints.txt"] = ("\n".join(constraints) + "\n").encode()
        lines += ["COPY deepbox/build-constraints.txt /tmp/deepbox-build-constraints.txt"]
    installs = _Installs(spec, plan, lock, files, bool(constraints), facts, buildkit)
    lines += installs.frameworks()
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
        "# The secrets `deepbox up` hands over, for login shells and (first line of bash.bashrc) ssh commands.",
        "COPY deepbox/secrets.sh /etc/profile.d/deepbox-secrets.sh",
        "RUN grep -qs deepbox-secrets /etc/bash.bashrc || { { echo '. /etc/profile.d/deepbox-secrets.sh'; "
        "cat /etc/bash.bashrc 2>/dev/null || true; } >/tmp/bash.bashrc && mv /tmp/bash.bashrc /etc/bash.bashrc; }",
        *(["COPY deepbox/jupyter.sh /usr/local/bin/deepbox-jupyter", "EXPOSE 8888"] if spec.jupyter else []),
        *(f"EXPOSE {port}" for port in ports),
        f"ENV DEEPBOX_USER={user.name} DEEPBOX_WORKSPACE={spec.workspace}",
        "EXPOSE 22",
        'ENTRYPOINT ["/usr/local/bin/deepbox-entrypoint"]',
        "CMD []",
    ]
    if spec.apt:
        lines += ["", "# The project's own system packages.", _apt_install(spec.apt, buildkit)]
    lines += installs.project()
    lines += _sudo_lines(spec)
    dockerfile = "\n".join(lines) + "\n"
    if not buildkit:
        return BuildContext(dockerfile, files)
    plain = "\n".join(getattr(line, "plain", line) for line in lines) + "\n"
    return BuildContext(dockerfile, files, buildkit=True, plain_dockerfile=plain)


SUDOERS = "/etc/sudoers.d/deepbox"
SUDO_STUB = "/usr/local/bin/sudo"


def _sudo_lines(spec: Spec) -> list[str]:
    """[user] sudo, the very last layer: switching it rebuilds only this one. On, the sudo package and a
    checked sudoers entry; off, a stand-in `sudo` that says how to turn it on. A root box user needs
    neither (with sudo on, the package is still installed for scripts that call sudo)."""
    user = spec.user
    if spec.sudo:
        grant = (
            [
                f"printf '%s\\n' {shlex.quote(f'{user.name} ALL=(ALL) NOPASSWD:ALL')} >{SUDOERS}",
                f"chmod 0440 {SUDOERS}",
                f"visudo -cf {SUDOERS}",
            ]
            if user.uid != 0
            else []
        )
        return [
            "",
            "# Passwordless sudo for the box user ([user] sudo = true), last: switching it rebuilds only this layer.",
            "# Containers may not raise RLIMIT_CORE, which sudo would try (and warn about) on every call.",
            _run(
                "apt-get update",
                "apt-get install -y --no-install-recommends sudo",
                f"rm -rf /var/lib/apt/lists/* {SUDO_STUB} && {APT_BINARY_CACHES}",
                "echo 'Set disable_coredump false' >>/etc/sudo.conf",
                *grant,
            ),
        ]
    if user.uid == 0:
        return []
    return [
        "",
        "# No sudo for the box user ([user] sudo = false): a stand-in says how to turn it on.",
        f"COPY deepbox/sudo-off.sh {SUDO_STUB}",
        f"RUN rm -f {SUDOERS}",
    ]


def _local_path(url: str) -> str | None:
    """The file a file:// URL names ('%2B' read as '+'), or None for other URLs."""
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme == "file" else None


class _Installs:
    """The Python install lines: from the lock (exact files, hashes required) or, unlocked, from the
    requirement specifiers. Both put the catalog's tiers early and the project's packages last."""

    def __init__(
        self,
        spec: Spec,
        plan: catalog.Plan,
        lock: Variant | None,
        files: dict[str, bytes],
        constraints: bool,
        facts: BaseFacts | None,
        buildkit: bool = False,
    ) -> None:
        self.spec, self.plan, self.lock, self.files, self.facts = spec, plan, lock, files, facts
        self.buildkit = buildkit
        self.build_constraint = " --build-constraint /tmp/deepbox-build-constraints.txt" if constraints else ""
        self.user = f"{spec.user.uid}:{spec.user.gid}"
        self.wheel_dirs: list[str] = []
        self.local_wheels: dict[str, str] = {}  # a locked wheel's path here -> its file:// URL in the image
        self.head: list[str] = self._wheels()

    def _wheels(self) -> list[str]:
        """Local find-links folders travel in the build context; with a lock, only the wheels it names.
        BuildKit mounts them into each install; the classic builder, which cannot, copies them in."""
        spec = self.spec
        for index, link in enumerate(fl for fl in spec.find_links if "://" not in fl):
            folder = spec.project_path(link)
            if not folder.is_dir():
                raise ConfigError(
                    f"{spec.source or 'deepbox.toml'}: build.find_links folder {folder} does not exist; "
                    "fix the path or remove it."
                )
            named = {_local_path(package.url) for package in self.lock.packages} if self.lock else None
            for wheel in sorted(folder.iterdir()):
                if not (wheel.is_file() and wheel.suffix in {".whl", ".gz", ".zip"}):
                    continue
                if named is not None and str(wheel.resolve()) not in named:
                    continue
                self.files[f"deepbox/wheels/{index}/{wheel.name}"] = _read_host_file(
                    wheel, "wheel", spec.source, "make it readable, or remove it from the build.find_links folder"
                )
                self.local_wheels[str(wheel.resolve())] = f"file://{WHEELS}/{index}/{wheel.name}"
            self.wheel_dirs.append(f"{WHEELS}/{index}")
        if not any(name.startswith("deepbox/wheels/") for name in self.files):
            return []
        copy = f"COPY --chown={self.user} deepbox/wheels/ {WHEELS}/"
        if not self.buildkit:
            return [copy]
        return [_Both("# The local wheel folders are mounted into each install below: no layer keeps them.", copy)]

    # The catalog's tiers, before the SSH layer ------------------------------------------------------

    def frameworks(self) -> list[str]:
        lines = list(self.head)
        if self.lock is not None:
            for tier in catalog.model.TIERS:
                items = [item.name for item in self.plan.tier(tier) if item.packages]
                lines += self._locked_tier(tier, f"{TIER_TITLES[tier]}: {', '.join(items) or 'their dependencies'}")
            return lines
        # One layer per tier, heavy and rarely changed first. Each layer names the earlier tiers'
        # packages again, so a later install cannot silently up- or downgrade them. A layer names only
        # the vendor indexes of its own and earlier frameworks, so adding PyTorch does not invalidate
        # the scientific base layer below it.
        cumulative: list[str] = []
        layer_indexes: list[str] = []
        for tier in catalog.model.TIERS:
            items = [item for item in self.plan.tier(tier) if item.packages]
            if not items:
                continue
            cumulative += [pkg for item in items for pkg in item.packages if pkg not in cumulative]
            layer_indexes += [url for item in items for url in item.index_urls if url not in layer_indexes]
            install = f"uv pip install {' '.join(pip_options(self.spec, layer_indexes, self.wheel_dirs))}".rstrip()
            lines += [
                "",
                f"# {TIER_TITLES[tier]}: {', '.join(item.name for item in items)}.",
                self._uv(f"{install}{self.build_constraint} " + " ".join(shlex.quote(p) for p in cumulative)),
            ]
        return lines

    def _locked_tier(self, tier: str, title: str) -> list[str]:
        """COPY the tier's part of the lock right before its RUN, so a change in a later tier keeps
        this layer cached."""
        assert self.lock is not None
        packages = self.lock.tier(tier)
        if not packages:
            return []
        name = f"{ALL_TIERS.index(tier)}-{tier}.txt"
        self.files[f"deepbox/lock/{name}"] = "".join(
            f"{p.name} @ {self.local_wheels.get(_local_path(p.url) or '', p.url)} --hash=sha256:{p.sha256}\n"
            for p in packages
        ).encode()
        return [
            "",
            f"# {title} ({len(packages)} locked package{'s' if len(packages) != 1 else ''}).",
            f"COPY --chown={self.user} deepbox/lock/{name} {LOCKED}/{name}",
            self._uv(f"uv pip install --no-deps --require-hashes{self.build_constraint} -r {LOCKED}/{name}"),
        ]

    def _uv(self, command: str) -> str:
        return _uv_run(command, self.buildkit, self.user, wheels=bool(self.head))

    # The project's own packages, after the SSH layer --------------------------------------------------

    def project(self) -> list[str]:
        spec, user = self.spec, self.user
        if self.lock is not None:
            lines: list[str] = []
            origin = project_requirements(spec)
            for tier, title in (
                ("pip", "The project's own Python packages (pip), last: changing them rebuilds only this layer"),
                ("requirements", f"The project's requirements ({origin[0] if origin else 'none'}), the very last"),
            ):
                part = self._locked_tier(tier, title)
                if part:
                    lines += [part[0], part[1], f"USER {user}", *part[2:], "USER root"]
            return lines + self._check()
        index_urls = [url for item in self.plan.selected for url in item.index_urls]
        install = f"uv pip install {' '.join(pip_options(spec, index_urls, self.wheel_dirs))}".rstrip()
        lines = []
        if spec.pip:
            lines += [
                "",
                "# The project's own Python packages, last: changing them rebuilds only this layer.",
                f"USER {user}",
                self._uv(f"{install} " + " ".join(shlex.quote(p) for p in spec.pip)),
                "USER root",
            ]
        requirements = project_requirements(spec)
        if requirements is not None:
            origin, content = requirements
            self.files["deepbox/requirements.txt"] = content
            lines += [
                "",
                f"# The project's requirements ({origin}), the very last layer: they change most often.",
                f"USER {user}",
                f"COPY --chown={user} deepbox/requirements.txt /tmp/deepbox-requirements.txt",
                self._uv(f"{install} -r /tmp/deepbox-requirements.txt"),
                "USER root",
            ]
        return lines

    def _check(self) -> list[str]:
        """The built environment must equal the lock: nothing missing, nothing extra (deepbox's own pip
        and uv aside, unless the lock has them)."""
        assert self.lock is not None
        expected = {normalize(p.name): p.version for p in self.lock.packages}
        tools = [tool for tool in SEEDED if tool not in expected]
        facts = self.facts
        if facts is not None and facts.python_path.startswith(f"{VENV}/") and self.plan.system_site_packages:
            # A snapshot base: its venv is the box's, with the packages it already had.
            expected = {
                **{name: version for name, version in facts.packages.items() if name not in tools},
                **expected,
            }
        # Sorted as lines, the way `sort` in the image sorts them ("foo-bar==1" before "foo==1").
        lines = sorted(f"{name}=={version}\n" for name, version in expected.items())
        self.files["deepbox/lock/installed.txt"] = "".join(lines).encode()
        normalized = "awk -F'==' '{ name = tolower($1); gsub(/[-_.]+/, \"-\", name); print name \"==\" $2 }'"
        return [
            "",
            "# The environment equals the lock: every locked package, nothing else.",
            f"COPY deepbox/lock/installed.txt {INSTALLED}",
            f"RUN uv pip list --format freeze | {normalized} | grep -v -E '^({'|'.join(tools)})==' | LC_ALL=C sort \\",
            f" | diff {INSTALLED} - \\",
            " || { echo 'deepbox: the environment differs from deepbox.lock (< missing, > extra)' >&2; exit 1; }",
        ]


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
        # The options, not the config keys they fill: "--python must be a version such as '3.11'."
        options = {"python": "--python", "cuda": "--cuda", "base": "--base", "frameworks": "--frameworks"}
        problems = [
            f"{options.get(str(error['loc'][0]), error['loc'][0])} {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors()
        ]
        raise ConfigError(" ".join(f"{problem.rstrip('.')}." for problem in problems)) from exc
    return render(resolve(config, Path.cwd(), None))


# The build context as a folder ------------------------------------------------------------------

CONTEXT_LIST = ".deepbox-context"  # in a written context: the files deepbox wrote there, one a line
_CONTEXT_HEADER = (
    "# Written by `deepbox dockerfile --output`: the files of this build context. The next --output\n"
    "# replaces the folder; it refuses a folder that holds anything else.\n"
)


def context_files(context: BuildContext) -> dict[str, bytes]:
    """Every file of the build context by its path in the folder: the Dockerfile and each file it COPYs."""
    return {"Dockerfile": context.dockerfile.encode(), **context.files}


def _check_replaceable(folder: Path) -> None:
    """An existing folder may be replaced when it is empty or holds only a context written before."""
    present = {path.relative_to(folder).as_posix() for path in folder.rglob("*")}
    if not present:
        return
    listing = folder / CONTEXT_LIST
    if not listing.is_file():
        raise DeepboxError(
            f"{folder} is not empty and is not a build context deepbox wrote; name a new or empty folder."
        )
    files = {line for line in listing.read_text().splitlines() if line and not line.startswith("#")}
    owned = {CONTEXT_LIST, *files, *(parent.as_posix() for name in files for parent in PurePosixPath(name).parents)}
    foreign = sorted(present - owned)
    if foreign:
        raise DeepboxError(
            f"{folder} holds {foreign[0]}, which deepbox did not write there; move it away or name another folder."
        )


def write_context(context: BuildContext, folder: Path) -> list[str]:
    """Write the complete build context into `folder` (`docker build folder` builds it) and return its
    files. The folder must be new, empty or a context written before: nothing else is ever overwritten.
    The new context is made beside it and renamed into place, so the folder is never half written."""
    if folder.exists() and not folder.is_dir():
        raise DeepboxError(f"{folder} is a file, not a folder; name a new or empty folder.")
    if folder.is_dir():
        _check_replaceable(folder)
    files = context_files(context)
    try:
        _replace(folder, files)
    except OSError as exc:
        raise DeepboxError(
            f"Cannot write the build context to {folder} ({exc.strerror}); it is unchanged: fix that and run the "
            "command again."
        ) from exc
    return sorted(files)


def _replace(folder: Path, files: dict[str, bytes]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.new-"))
    try:
        for name, content in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(0o755 if name.endswith(".sh") else 0o644)  # as the engine's tar has them
        (staging / CONTEXT_LIST).write_text(_CONTEXT_HEADER + "".join(f"{name}\n" for name in sorted(files)))
        staging.chmod(0o755)
        if not folder.is_dir():
            staging.replace(folder)
            return
        retired = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
        folder.replace(retired / folder.name)
        try:
            staging.replace(folder)
        except BaseException:
            (retired / folder.name).replace(folder)  # the previous context comes back
            retired.rmdir()
            raise
        shutil.rmtree(retired)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
