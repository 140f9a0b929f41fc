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
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from deepbox import catalog
from deepbox.config import Spec
from deepbox.errors import ConfigError

VENV = "/opt/venv"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SYSTEM_PACKAGES = ("ca-certificates", "openssh-server", "python3", "python3-venv")


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


def pip_options(spec: Spec, frameworks: list[catalog.Framework], wheel_dirs: list[str]) -> list[str]:
    options = ["--no-cache-dir", "--disable-pip-version-check"]
    if spec.index_url:
        options += ["--index-url", spec.index_url]
    extra = list(spec.extra_index_urls)
    extra += sorted({fw.cpu_index_url for fw in frameworks if fw.cpu_index_url} - set(extra))
    for url in extra:
        options += ["--extra-index-url", url]
    for link in [*wheel_dirs, *(fl for fl in spec.find_links if "://" in fl)]:
        options += ["--find-links", link]
    return [shlex.quote(option) for option in options]


def render(spec: Spec) -> BuildContext:
    frameworks = catalog.resolve(spec.framework_names)
    files: dict[str, bytes] = {
        "deepbox/sshd_config": _asset("sshd_config").replace("{user}", spec.user.name).encode(),
        "deepbox/entrypoint.sh": _asset("entrypoint.sh").encode(),
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

    pip = f"{VENV}/bin/pip install " + " ".join(pip_options(spec, frameworks, wheel_dirs))
    user = spec.user
    lines = [
        f"# Generated by deepbox for box '{spec.name}'. Print it again with `deepbox dockerfile`.",
        f"FROM {spec.base}",
        "USER root",
        "ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8",
        "",
        "# System packages change rarely, so they come first. Debian's openssh-server makes host",
        "# keys on install: delete them in the same layer, the box makes its own on first start.",
        _apply_rm_host_keys(_apt_install(SYSTEM_PACKAGES)),
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
        "# pip, requests and Python's ssl all use the system bundle, extra CAs included.",
        f"ENV PIP_CERT={SYSTEM_BUNDLE} SSL_CERT_FILE={SYSTEM_BUNDLE} REQUESTS_CA_BUNDLE={SYSTEM_BUNDLE}",
        "",
        f"# The box user mirrors the host user ({user.uid}:{user.gid}) so mounted files keep their owner.",
        "COPY deepbox/create-user.sh /usr/local/lib/deepbox/create-user.sh",
        f"RUN sh /usr/local/lib/deepbox/create-user.sh {user.name} {user.uid} {user.gid}",
        "",
        "# The Python environment belongs to the box user, so `pip install` works without sudo.",
        f"RUN install -d -o {user.uid} -g {user.gid} {VENV}",
        f"USER {user.uid}:{user.gid}",
        f"RUN python3 -m venv {VENV}",
        f"ENV VIRTUAL_ENV={VENV} PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    if wheel_dirs:
        lines += [f"COPY --chown={user.uid}:{user.gid} deepbox/wheels/ /tmp/deepbox-wheels/"]
    packages = [pkg for fw in frameworks for pkg in fw.pip]
    if packages:
        lines += [
            "",
            f"# Frameworks: {', '.join(fw.name for fw in frameworks)} (heavy, rarely changed).",
            f"RUN {pip} " + " ".join(shlex.quote(p) for p in packages),
        ]
    lines += [
        "",
        "# The SSH layer: hardened sshd_config and the entrypoint that starts sshd.",
        "USER root",
        "COPY deepbox/sshd_config /etc/ssh/sshd_config",
        "COPY deepbox/entrypoint.sh /usr/local/bin/deepbox-entrypoint",
        *(["COPY deepbox/jupyter.sh /usr/local/bin/deepbox-jupyter", "EXPOSE 8888"] if spec.jupyter else []),
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
            f"RUN {pip} " + " ".join(shlex.quote(p) for p in spec.pip),
            "USER root",
        ]
    return BuildContext("\n".join(lines) + "\n", files)


def _apply_rm_host_keys(run_line: str) -> str:
    return run_line + " \\\n && rm -f /etc/ssh/ssh_host_*"
