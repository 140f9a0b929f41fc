"""The box container's own profile: the capabilities it keeps, no-new-privileges and a pids limit.

Docker's default set has 14 capabilities; a box keeps those that sshd, the entrypoint, deepbox's own
root commands (writing the secrets, installing dotfiles) and, with [user] sudo, sudo and apt need. The
box user's own work needs none. README.md, "The box's own profile", has the table against Docker's.
"""

from __future__ import annotations

from dataclasses import dataclass

# sshd: SETUID/SETGID to become the user, SYS_CHROOT for its privilege-separation chroot (it refuses
# logins without), AUDIT_WRITE for the audit record of every terminal login (Debian's sshd ends such a
# session when it cannot write one: "linux_audit_write_entry failed"), NET_BIND_SERVICE for port 22
# where the engine does not open low ports to all (Docker before 20.10, some Podman setups). Root in the
# box (the entrypoint, `deepbox up` writing the box user's secrets, token and dotfiles): CHOWN,
# DAC_OVERRIDE, FOWNER.
BASE_CAPABILITIES = (
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
    "SYS_CHROOT",
)
# Under sudo, apt keeps the setgid bits of what it installs with FSETID and stops its download helpers
# (another user) with KILL, as `sudo kill` stops the box user's processes. (sudo's audit record on every
# call needs AUDIT_WRITE, which every box has for sshd.)
SUDO_CAPABILITIES = ("FSETID", "KILL")
# Counts threads too: a training job with DataLoader workers on a many-core server runs thousands, a
# fork bomb millions.
PIDS_LIMIT = 32768
# Part of a box's settings hash: raising it makes `deepbox up` recreate boxes made under an older profile.
PROFILE_VERSION = 2


@dataclass(frozen=True)
class Profile:
    capabilities: tuple[str, ...]
    no_new_privileges: bool  # off only with sudo, whose setuid bit it would disarm
    pids_limit: int


def box_profile(sudo: bool) -> Profile:
    return Profile(
        capabilities=BASE_CAPABILITIES + (SUDO_CAPABILITIES if sudo else ()),
        no_new_privileges=not sudo,
        pids_limit=PIDS_LIMIT,
    )
