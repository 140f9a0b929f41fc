"""SSH plumbing: per-box client keys, pinned host keys, the ssh config deepbox owns, probes.

deepbox never edits a user's ~/.ssh/config beyond one marked `Include` line at the top; every Host
block lives in a file deepbox owns. All writes are atomic (temp file + rename).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepbox import hostos, paths
from deepbox.errors import DeepboxError
from deepbox.fsutil import atomic_write, shared_files_lock

INCLUDE_MARKER = "# Added by deepbox: its boxes' Host entries (see `deepbox --help`)."
BLOCK_START = "# deepbox box: {alias}"
BLOCK_END = "# end deepbox box: {alias}"
CONTROL_DIR_MAX = 104 - 1 - 40 - 17 - 1  # sun_path, '/', %C, ssh's temp suffix, NUL


@dataclass(frozen=True)
class Endpoint:
    alias: str
    host: str
    port: int
    user: str
    identity: Path
    jump: str | None = None  # [user@]server[:port] for a box on a server's engine
    forwards: tuple[tuple[int, int], ...] = ()  # (port on this machine, box port): a server box's `ports`


# Client keys ----------------------------------------------------------------------------------


def require_client() -> None:
    """deepbox reaches its boxes with this machine's OpenSSH client, and makes their keys with ssh-keygen."""
    missing = [tool for tool in ("ssh", "ssh-keygen") if shutil.which(tool) is None]
    if missing:
        raise DeepboxError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed here, and deepbox "
            "reaches its boxes with the OpenSSH client: install it (sudo apt-get install openssh-client) and run "
            "again."
        )


def ensure_client_key(box: str, own_key: Path | None) -> Path:
    """The private key the box trusts: the user's own (checked) or a per-box ed25519 key."""
    if own_key is not None:
        check_private_key(own_key)
        return own_key
    key = paths.keys_dir() / box / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        result = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"deepbox-{box}", "-f", str(key)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DeepboxError(f"ssh-keygen could not create {key}: {result.stderr.strip()}.")
    check_private_key(key)
    return key


def check_private_key(key: Path) -> None:
    try:
        info = key.stat()
        with key.open("rb"):
            pass
    except OSError as exc:
        raise DeepboxError(
            f"Cannot read the SSH key {key} ({exc.strerror}); fix ssh.key in deepbox.toml or the file's permissions."
        ) from exc
    if info.st_mode & 0o077:
        raise DeepboxError(
            f"The SSH key {key} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"ssh refuses such keys: run chmod 600 {key}."
        )
    if not Path(f"{key}.pub").is_file():
        raise DeepboxError(f"The SSH key {key} has no {key}.pub beside it: run ssh-keygen -y -f {key} > {key}.pub.")


def public_key(key: Path) -> str:
    return Path(f"{key}.pub").read_text().strip()


# Host keys and known_hosts ---------------------------------------------------------------------


def pin_host_key(alias: str, host_public_key: str) -> None:
    """Record the box's host key (read out of band, via the Docker API) under its alias."""
    fields = host_public_key.split()
    if len(fields) < 2 or not fields[0].startswith("ssh-"):
        raise DeepboxError(f"The box {alias} reported a malformed host key; run `deepbox rm` and `deepbox up`.")
    entry = f"{alias} {fields[0]} {fields[1]}"
    known = paths.known_hosts()
    with shared_files_lock():
        lines = known.read_text().splitlines() if known.exists() else []
        kept = [line for line in lines if line.split(" ", 1)[0] != alias]
        if [*kept, entry] != lines:
            atomic_write(known, "\n".join([*kept, entry]) + "\n", 0o644)


def pinned_host_key(alias: str) -> str | None:
    """The host key pinned for the alias ("ssh-ed25519 AAAA..."), None when none is."""
    known = paths.known_hosts()
    for line in known.read_text().splitlines() if known.exists() else []:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == alias:
            return f"{fields[1]} {fields[2]}"
    return None


def fingerprint(host_public_key: str) -> str:
    """The key's SHA256 fingerprint as `ssh-keygen -l` and ssh's prompts show it (no network needed)."""
    try:
        blob = base64.b64decode(host_public_key.split()[1], validate=True)
    except (IndexError, binascii.Error) as exc:
        raise DeepboxError(f"{host_public_key!r} is not an OpenSSH public key.") from exc
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def forget_host(alias: str) -> None:
    known = paths.known_hosts()
    with shared_files_lock():
        if not known.exists():
            return
        lines = known.read_text().splitlines()
        kept = [line for line in lines if line.split(" ", 1)[0] != alias]
        if kept != lines:
            atomic_write(known, "".join(f"{line}\n" for line in kept), 0o644)


# The ssh config deepbox owns -------------------------------------------------------------------


def control_dir() -> Path:
    """Short path for ControlMaster sockets (a unix socket path must stay under ~104 bytes)."""
    digest = hashlib.sha256(str(paths.data_dir()).encode()).hexdigest()[:8]
    ids = hostos.user_ids()
    owner = ids[0] if ids else hostos.account_name() or "user"  # one folder per user of a shared /tmp
    name = f"deepbox-{owner}-{digest}"
    folder = Path(tempfile.gettempdir()) / name
    # ssh binds PATH/%C (40 characters) plus a 17-character suffix: within macOS's 104-byte limit only
    # under a short folder, which a long TMPDIR (macOS's own /var/folders/..., a test's) is not.
    return folder if len(str(folder)) <= CONTROL_DIR_MAX else Path("/tmp") / name  # noqa: S108 (per user, 0700)


def _quote(path: Path | str) -> str:
    text = str(path)
    return f'"{text}"' if " " in text else text


def host_block(endpoint: Endpoint) -> str:
    return "\n".join(
        [
            BLOCK_START.format(alias=endpoint.alias),
            f"Host {endpoint.alias}",
            f"    HostName {endpoint.host}",
            f"    Port {endpoint.port}",
            f"    User {endpoint.user}",
            f"    IdentityFile {_quote(endpoint.identity)}",
            "    IdentitiesOnly yes",
            *([f"    ProxyJump {endpoint.jump}"] if endpoint.jump else []),
            # Through the box's own sshd, so a program listening on the box's loopback is reached too.
            *(f"    LocalForward 127.0.0.1:{local} 127.0.0.1:{box_port}" for local, box_port in endpoint.forwards),
            f"    UserKnownHostsFile {_quote(paths.known_hosts())}",
            f"    HostKeyAlias {endpoint.alias}",
            "    StrictHostKeyChecking yes",
            "    ControlMaster auto",
            f"    ControlPath {_quote(control_dir() / '%C')}",
            "    ControlPersist 10m",
            "    ServerAliveInterval 30",
            BLOCK_END.format(alias=endpoint.alias),
            "",
        ]
    )


def node_alias(box: str) -> str:
    """The alias of the Slurm node that box's alias jumps through (box: its name on the engine)."""
    return f"deepbox-{box}.node"


def node_block(node_name: str, node: str, user: str, login_jump: str, identities: list[str]) -> str:
    """The hop from the login node to a Slurm job's node: pinned like a box (the key the job reported),
    with the identities the user's ssh uses for the login node, since a cluster's nodes take the same."""
    return "\n".join(
        [
            BLOCK_START.format(alias=node_name),
            f"Host {node_name}",
            f"    HostName {node}",
            f"    User {user}",
            f"    ProxyJump {login_jump}",
            *(f"    IdentityFile {_quote(identity)}" for identity in identities),
            f"    UserKnownHostsFile {_quote(paths.known_hosts())}",
            f"    HostKeyAlias {node_name}",
            "    StrictHostKeyChecking yes",
            "    ServerAliveInterval 30",
            BLOCK_END.format(alias=node_name),
            "",
        ]
    )


def write_node(node_name: str, node: str, user: str, login_jump: str, identities: list[str]) -> None:
    with shared_files_lock():
        blocks = _blocks(_read(paths.owned_ssh_config()))
        blocks[node_name] = node_block(node_name, node, user, login_jump, identities)
        _write_owned(blocks)
        ensure_include()


def login_identities(destination: list[str]) -> list[str]:
    """The IdentityFile values ssh uses for a destination (`ssh -G`: the user's config and defaults)."""
    done = subprocess.run(
        [*ssh_base_args(), "-G", *destination], capture_output=True, text=True, timeout=10, check=False
    )
    return [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("identityfile ")]


def _blocks(text: str) -> dict[str, str]:
    """Alias -> block text, from the file deepbox owns."""
    blocks: dict[str, str] = {}
    current: list[str] | None = None
    alias = ""
    for line in text.splitlines():
        if line.startswith("# deepbox box: "):
            alias, current = line.removeprefix("# deepbox box: "), [line]
        elif current is not None:
            current.append(line)
            if line == BLOCK_END.format(alias=alias):
                blocks[alias] = "\n".join(current) + "\n"
                current = None
    return blocks


def _values(alias: str, keyword: str) -> list[list[str]]:
    """The arguments of each `keyword` line in the alias's block."""
    lines = (line.split() for line in _blocks(_read(paths.owned_ssh_config())).get(alias, "").splitlines())
    return [fields[1:] for fields in lines if fields and fields[0] == keyword]


def host_name(alias: str) -> str | None:
    """Where the alias connects (its HostName); None when deepbox wrote no such alias."""
    return next((args[0] for args in _values(alias, "HostName") if args), None)


def forwards(alias: str) -> dict[int, int]:
    """Box port -> port on this machine, from the LocalForward lines of the alias's block."""
    return {
        int(args[1].rsplit(":", 1)[1]): int(args[0].rsplit(":", 1)[1])
        for args in _values(alias, "LocalForward")
        if len(args) == 2
    }


def write_host(endpoint: Endpoint) -> None:
    with shared_files_lock():
        blocks = _blocks(_read(paths.owned_ssh_config()))
        blocks[endpoint.alias] = host_block(endpoint)
        _write_owned(blocks)
        ensure_include()


def remove_host(alias: str) -> None:
    with shared_files_lock():
        blocks = _blocks(_read(paths.owned_ssh_config()))
        if blocks.pop(alias, None) is not None:
            _write_owned(blocks)


def _write_owned(blocks: dict[str, str]) -> None:
    header = "# Managed by deepbox: rewritten on every `deepbox up`; edit deepbox.toml instead.\n\n"
    control_dir().mkdir(mode=0o700, exist_ok=True)
    atomic_write(paths.owned_ssh_config(), header + "\n".join(blocks[a] for a in sorted(blocks)), 0o600)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def include_line() -> str:
    return f"Include {_quote(paths.owned_ssh_config())}"


def add_include(text: str, line: str) -> str:
    """The user's config with our Include as the first directive; every other byte kept."""
    if line in text.splitlines():
        return text
    newline = "\r\n" if "\r\n" in text else "\n"  # a CRLF file stays all CRLF
    return f"{INCLUDE_MARKER}{newline}{line}{newline}{newline}{text}"


def ensure_include() -> None:
    """Put one Include at the top of ~/.ssh/config (following a symlink), atomically."""
    config = paths.user_ssh_config()
    target = config.resolve() if config.is_symlink() else config
    try:
        # Bytes in, bytes out: CRLF line ends and non-UTF-8 comments survive untouched.
        raw = target.read_bytes() if target.exists() else b""
        original = raw.decode("utf-8", "surrogateescape")
        updated = add_include(original, include_line()).encode("utf-8", "surrogateescape")
        if updated != raw:
            mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o600
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(target, updated, mode)
    except OSError as exc:
        raise DeepboxError(
            f"Cannot update {target} ({exc.strerror}): make it writable, or add this line at its top "
            f"yourself: {include_line()}"
        ) from exc


# Running the system ssh ------------------------------------------------------------------------


def ssh_base_args() -> list[str]:
    """`ssh`, plus -F when HOME is not the account's home (ssh itself reads the passwd entry)."""
    config = paths.user_ssh_config()
    if config != hostos.account_home() / ".ssh" / "config":
        # `none`: ssh reads no config at all (a missing -F file would be an error).
        return ["ssh", "-F", str(config) if config.exists() else "none"]
    return ["ssh"]


HOST_KEY_REFUSED = "Host key verification failed."
PROBE_KEX = "curve25519-sha256@libssh.org"


def probe(
    alias: str,
    timeout: float,
    command: str = "true",
    *,
    trusting_pin: bool = False,
    shared: bool = False,
    failed: Callable[[], BaseException | None] | None = None,
) -> str | None:
    """Wait until an authenticated `ssh <alias> COMMAND` succeeds (a TCP connect is not enough); returns
    what it printed. trusting_pin: the host key pinned earlier is tried as it is, and a box that shows
    another key gives None at once (read and pin its key, then probe again). shared: a ControlMaster
    the alias already has carries the check (no new handshake); without one, a fresh connection.
    failed: what `up` does meanwhile through the engine; its error ends the wait at once (an engine that
    went away will not bring the box up either)."""
    deadline = time.monotonic() + timeout
    last = ""
    args = [
        *ssh_base_args(),
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "ControlMaster=no",
        *(() if shared else ("-o", "ControlPath=none")),
        "-o",
        "ClearAllForwardings=yes",  # the alias's forwards belong to the user's sessions, not to this check
        # The check carries no data: classic curve25519, which every box offers (OpenSSH 6.5+ knows this
        # name), saves the post-quantum handshake's ~100 ms on each `up`. Sessions keep the box's order.
        "-o",
        f"KexAlgorithms={PROBE_KEX}",
        alias,
        command,
    ]
    attempts = 0
    while time.monotonic() < deadline:
        if failed is not None and (error := failed()) is not None:
            raise error
        result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
        if result.returncode == 0:
            return result.stdout
        if trusting_pin and HOST_KEY_REFUSED in result.stderr:
            return None
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
        attempts += 1
        # sshd listens within a fraction of a second of the start (a refused attempt costs ~10 ms): ask
        # often for the first second, then gently.
        time.sleep(0.02 if attempts < 30 else 0.3)
    raise DeepboxError(f"The box did not answer an authenticated `ssh {alias} true` within {timeout:.0f} s ({last}).")


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether an SSH server greets on host:port. The engine's port proxy accepts a connection even when
    nothing listens in the box, so it is the server's identification line that counts."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            return connection.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def await_greeting(
    host: str, port: int, timeout: float, failed: Callable[[], BaseException | None] | None = None
) -> None:
    """Wait until an SSH server greets on host:port (see `answers`). failed: as for `probe`."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while not answers(host, port):
        if failed is not None and (error := failed()) is not None:
            raise error
        if time.monotonic() >= deadline:
            raise DeepboxError(f"The box's sshd did not greet on {host}:{port} within {timeout:.0f} s.")
        attempts += 1
        # A refused attempt costs well under a millisecond: ask often for the first second, then gently.
        time.sleep(0.01 if attempts < 100 else 0.3)


def close_master(alias: str) -> None:
    """Stop a ControlMaster for the alias, so a recreated box is not reached through a stale one."""
    subprocess.run([*ssh_base_args(), "-O", "exit", alias], capture_output=True, check=False, timeout=10)
