"""ssh.py: the Include in ~/.ssh/config, the owned ssh config, known_hosts pinning, keys, atomic writes.

HOME is a temporary folder in every test (see conftest.py): the real ~/.ssh is never touched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from deepbox import paths, ssh
from deepbox.errors import DeepboxError
from deepbox.fsutil import atomic_write
from deepbox.ssh import INCLUDE_MARKER, Endpoint, add_include

from .conftest import RUNNING_AS_ROOT

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")
needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="the OpenSSH client is not installed")

LINE = "Include /somewhere/deepbox/ssh_config"
HOST_KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
HOST_KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

TRICKY_CONFIGS = {
    "empty": "",
    "no trailing newline": "Host a\n    User x",
    "crlf": "Host a\r\n    HostName a.example\r\n    User x\r\n",
    "host star and match": (
        '# my config\n\nHost *\n    ServerAliveInterval 10\n\nMatch host *.corp exec "true"\n    User me\n\n'
        "Host b\n    Port 2200\n"
    ),
    "unicode": "# Jürgen's ключи 🔑\nHost café\n    HostName ünï.example\n",
    "leading blank lines and tabs": "\n\n\tHost t\n\t\tUser tab\n",
    "include already elsewhere": "Include ~/.ssh/other\nHost x\n",
    "comment mentioning the line": f"# {LINE}\nHost y\n",
}


def user_config() -> Path:
    return paths.user_ssh_config()


def endpoint(alias: str = "deepbox-one", port: int = 2201) -> Endpoint:
    return Endpoint(alias, "127.0.0.1", port, "dev", paths.keys_dir() / alias / "id_ed25519")


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# add_include (pure) -------------------------------------------------------------------------------


@pytest.mark.parametrize("original", TRICKY_CONFIGS.values(), ids=TRICKY_CONFIGS.keys())
def test_add_include_keeps_every_byte(original):
    updated = add_include(original, LINE)
    assert updated.endswith(original)
    assert updated.encode().endswith(original.encode())
    assert updated.splitlines().count(LINE) == 1
    assert INCLUDE_MARKER in updated


@pytest.mark.parametrize("original", TRICKY_CONFIGS.values(), ids=TRICKY_CONFIGS.keys())
def test_add_include_is_idempotent(original):
    once = add_include(original, LINE)
    assert add_include(once, LINE) == once


@pytest.mark.parametrize("original", TRICKY_CONFIGS.values(), ids=TRICKY_CONFIGS.keys())
def test_add_include_comes_before_the_first_host_or_match(original):
    lines = add_include(original, LINE).splitlines()
    blocks = [i for i, line in enumerate(lines) if line.strip().split(" ")[0] in ("Host", "Match")]
    assert lines.index(LINE) < min(blocks, default=len(lines))


def test_add_include_leaves_a_config_that_has_the_line(tmp_path):
    original = f"Host a\n    User x\n{LINE}\n"
    assert add_include(original, LINE) == original


# ensure_include (files) ----------------------------------------------------------------------------


def test_ensure_include_creates_a_private_config(home):
    assert not (home / ".ssh").exists()

    ssh.ensure_include()

    config = home / ".ssh" / "config"
    assert config.read_text().splitlines()[:2] == [INCLUDE_MARKER, ssh.include_line()]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / ".ssh").stat().st_mode) == 0o700
    assert str(paths.owned_ssh_config()) in ssh.include_line()


@pytest.mark.parametrize(
    "original",
    [v for k, v in TRICKY_CONFIGS.items() if k != "crlf"],
    ids=[k for k in TRICKY_CONFIGS if k != "crlf"],
)
def test_ensure_include_keeps_the_users_bytes(home, original):
    config = home / ".ssh" / "config"
    config.parent.mkdir(mode=0o700)
    config.write_bytes(original.encode())
    config.chmod(0o640)

    ssh.ensure_include()
    first = config.read_bytes()
    ssh.ensure_include()

    assert first.endswith(original.encode())
    assert first.startswith(INCLUDE_MARKER.encode())
    assert config.read_bytes() == first, "a second run changes nothing"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640, "the user's mode is kept"
    assert no_temp_files(config.parent)


def test_ensure_include_keeps_crlf_line_ends(home):
    original = TRICKY_CONFIGS["crlf"].encode()
    config = home / ".ssh" / "config"
    config.parent.mkdir(mode=0o700)
    config.write_bytes(original)

    ssh.ensure_include()

    assert config.read_bytes().endswith(original)


def test_ensure_include_keeps_non_utf8_bytes(home):
    original = "# Jürgen\nHost a\n".encode("latin-1")
    config = home / ".ssh" / "config"
    config.parent.mkdir(mode=0o700)
    config.write_bytes(original)

    ssh.ensure_include()

    assert config.read_bytes().endswith(original)


def test_ensure_include_follows_a_symlink(home, tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "ssh_config"
    target.write_text("Host a\n    User x\n")
    target.chmod(0o644)
    (home / ".ssh").mkdir()
    link = home / ".ssh" / "config"
    link.symlink_to("../../dotfiles/ssh_config")

    ssh.ensure_include()

    assert link.is_symlink()
    assert str(link.readlink()) == "../../dotfiles/ssh_config"
    text = target.read_text()
    assert text.startswith(f"{INCLUDE_MARKER}\n{ssh.include_line()}\n")
    assert text.endswith("Host a\n    User x\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert no_temp_files(dotfiles)
    assert no_temp_files(home / ".ssh")


def test_ensure_include_with_a_config_that_is_a_folder(home):
    (home / ".ssh" / "config").mkdir(parents=True)
    with pytest.raises(DeepboxError) as info:
        ssh.ensure_include()
    message = info.value.message
    assert str(home / ".ssh" / "config") in message
    assert ssh.include_line() in message, "the error tells the user which line to add themselves"
    assert "\n" not in message
    assert "Traceback" not in message


@pytest.mark.skipif(RUNNING_AS_ROOT, reason="root writes through a 0o500 folder, so there is nothing to refuse")
def test_ensure_include_with_a_read_only_folder(home):
    folder = home / ".ssh"
    folder.mkdir()
    (folder / "config").write_text("Host a\n")
    folder.chmod(0o500)
    try:
        with pytest.raises(DeepboxError) as info:
            ssh.ensure_include()
    finally:
        folder.chmod(0o700)
    assert "writable" in info.value.message
    assert (folder / "config").read_text() == "Host a\n"


# The owned ssh config ----------------------------------------------------------------------------


def test_write_host_writes_a_pinned_block(home):
    ssh.write_host(endpoint())

    owned = paths.owned_ssh_config()
    text = owned.read_text()
    assert stat.S_IMODE(owned.stat().st_mode) == 0o600
    assert "Host deepbox-one\n" in text
    assert "    Port 2201\n" in text
    assert "    StrictHostKeyChecking yes\n" in text
    assert "    HostKeyAlias deepbox-one\n" in text
    assert f"    UserKnownHostsFile {paths.known_hosts()}\n" in text
    assert "    IdentitiesOnly yes\n" in text
    assert "StrictHostKeyChecking no" not in text
    assert "/dev/null" not in text
    assert ssh.include_line() in user_config().read_text().splitlines()
    assert ssh.control_dir().is_dir()


def test_write_host_keeps_other_boxes_and_is_idempotent(home):
    ssh.write_host(endpoint("deepbox-one", 2201))
    ssh.write_host(endpoint("deepbox-two", 2202))
    two_block = ssh._blocks(paths.owned_ssh_config().read_text())["deepbox-two"]

    ssh.write_host(endpoint("deepbox-one", 3301))
    owned_once = paths.owned_ssh_config().read_bytes()
    user_once = user_config().read_bytes()
    ssh.write_host(endpoint("deepbox-one", 3301))

    blocks = ssh._blocks(paths.owned_ssh_config().read_text())
    assert set(blocks) == {"deepbox-one", "deepbox-two"}
    assert blocks["deepbox-two"] == two_block
    assert "Port 3301" in blocks["deepbox-one"]
    assert "Port 2201" not in paths.owned_ssh_config().read_text()
    assert paths.owned_ssh_config().read_bytes() == owned_once
    assert user_config().read_bytes() == user_once
    assert user_config().read_text().count(ssh.include_line()) == 1


def test_write_host_never_touches_the_users_own_hosts(home):
    (home / ".ssh").mkdir()
    mine = "Host deepbox-one\n    HostName mine.example\n"
    user_config().write_text(mine)

    ssh.write_host(endpoint("deepbox-one"))

    assert user_config().read_text().endswith(mine)
    assert "mine.example" not in paths.owned_ssh_config().read_text()


def test_remove_host_keeps_the_others_and_is_idempotent(home):
    ssh.write_host(endpoint("deepbox-one", 2201))
    ssh.write_host(endpoint("deepbox-two", 2202))

    ssh.remove_host("deepbox-one")
    after_first = paths.owned_ssh_config().read_bytes()
    ssh.remove_host("deepbox-one")
    ssh.remove_host("deepbox-never-existed")

    assert paths.owned_ssh_config().read_bytes() == after_first
    assert set(ssh._blocks(after_first.decode())) == {"deepbox-two"}
    assert b"deepbox-one" not in after_first


def test_remove_host_without_any_file_creates_nothing(home):
    ssh.remove_host("deepbox-one")
    assert not paths.owned_ssh_config().exists()
    assert not user_config().exists()


def test_aliases_that_share_a_prefix_are_distinct(home):
    ssh.write_host(endpoint("deepbox-a", 2201))
    ssh.write_host(endpoint("deepbox-ab", 2202))
    ssh.remove_host("deepbox-a")
    assert set(ssh._blocks(paths.owned_ssh_config().read_text())) == {"deepbox-ab"}


@needs_ssh
def test_openssh_reads_the_written_config(home, tmp_path, monkeypatch):
    # A space in HOME checks the quoting of every path in the block.
    spaced = tmp_path / "my home"
    spaced.mkdir()
    monkeypatch.setenv("HOME", str(spaced))
    (spaced / ".ssh").mkdir()
    user_config().write_text("Host *\n    User someone-else\n")
    ssh.write_host(endpoint("deepbox-one", 2201))

    result = subprocess.run(
        ["ssh", "-F", str(user_config()), "-G", "deepbox-one"], capture_output=True, text=True, check=False, timeout=20
    )

    assert result.returncode == 0, result.stderr
    options = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert options["hostname"] == "127.0.0.1"
    assert options["port"] == "2201"
    assert options["user"] == "dev", "the Include comes first, so the box's User wins over Host *"
    assert options["stricthostkeychecking"] in ("true", "yes")
    assert options["hostkeyalias"] == "deepbox-one"
    assert options["userknownhostsfile"] == str(paths.known_hosts())
    assert options["identitiesonly"] == "yes"


# known_hosts pinning -------------------------------------------------------------------------------


def test_pin_host_key_replaces_only_its_own_entry(home):
    ssh.pin_host_key("deepbox-one", HOST_KEY_A + " deepbox-host")
    ssh.pin_host_key("deepbox-two", HOST_KEY_B)
    ssh.pin_host_key("deepbox-one", HOST_KEY_B)

    lines = paths.known_hosts().read_text().splitlines()
    assert sorted(lines) == sorted([f"deepbox-two {HOST_KEY_B}", f"deepbox-one {HOST_KEY_B}"])


def test_pin_host_key_keeps_unrelated_lines_and_prefix_aliases(home):
    known = paths.known_hosts()
    known.parent.mkdir(parents=True)
    known.write_text(f"# a comment\ndeepbox-onex {HOST_KEY_A}\n")

    ssh.pin_host_key("deepbox-one", HOST_KEY_B)

    assert known.read_text().splitlines() == ["# a comment", f"deepbox-onex {HOST_KEY_A}", f"deepbox-one {HOST_KEY_B}"]


def test_pin_host_key_does_not_rewrite_an_unchanged_file(home):
    ssh.pin_host_key("deepbox-one", HOST_KEY_A)
    inode = paths.known_hosts().stat().st_ino
    ssh.pin_host_key("deepbox-one", HOST_KEY_A + "\n")
    assert paths.known_hosts().stat().st_ino == inode, "atomic_write would have replaced the file"


@pytest.mark.parametrize("bad", ["", "garbage", "ssh-ed25519", "AAAA ssh-ed25519", "cat: no such file"])
def test_malformed_host_key(home, bad):
    with pytest.raises(DeepboxError) as info:
        ssh.pin_host_key("deepbox-one", bad)
    assert "malformed host key" in info.value.message
    assert not paths.known_hosts().exists()


def test_forget_host(home):
    ssh.pin_host_key("deepbox-one", HOST_KEY_A)
    ssh.pin_host_key("deepbox-two", HOST_KEY_B)
    ssh.forget_host("deepbox-one")
    ssh.forget_host("deepbox-one")
    assert paths.known_hosts().read_text() == f"deepbox-two {HOST_KEY_B}\n"


@needs_ssh_keygen
def test_pinned_entry_is_found_by_ssh_keygen(home):
    ssh.pin_host_key("deepbox-one", HOST_KEY_A)
    result = subprocess.run(
        ["ssh-keygen", "-F", "deepbox-one", "-f", str(paths.known_hosts())],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    assert result.returncode == 0
    assert HOST_KEY_A.split()[1] in result.stdout


@needs_ssh_keygen
def test_fingerprint_is_the_one_ssh_keygen_shows(tmp_path):
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=20)
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"], capture_output=True, text=True, check=True, timeout=20
    )
    expected = listed.stdout.split()[1]  # "256 SHA256:... comment (ED25519)"
    assert expected.startswith("SHA256:")
    assert ssh.fingerprint(Path(f"{key}.pub").read_text()) == expected


def test_fingerprint_of_a_malformed_key():
    with pytest.raises(DeepboxError) as caught:
        ssh.fingerprint("ssh-ed25519 not-base64!")
    assert str(caught.value) == "'ssh-ed25519 not-base64!' is not an OpenSSH public key."


def test_pinned_host_key_reads_back_the_alias_entry(home):
    assert ssh.pinned_host_key("deepbox-one") is None
    ssh.pin_host_key("deepbox-one", HOST_KEY_A)
    ssh.pin_host_key("deepbox-one-more", HOST_KEY_B)
    assert ssh.pinned_host_key("deepbox-one") == HOST_KEY_A
    assert ssh.pinned_host_key("deepbox-one-more") == HOST_KEY_B
    assert ssh.pinned_host_key("deepbox-two") is None


# atomic_write ---------------------------------------------------------------------------------------


def test_atomic_write_creates_with_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "new" / "file"
    atomic_write(target, "hello\n", 0o600)
    assert target.read_text() == "hello\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert no_temp_files(target.parent)
    assert [p.name for p in target.parent.iterdir()] == ["file"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_text("old\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, "new\n")

    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir() if p.name != "tmp" and p.name != "home"] == ["file"]


def test_atomic_write_keeps_the_old_file_on_unencodable_text(tmp_path):
    target = tmp_path / "file"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        atomic_write(target, "bad \udc80 surrogate\n")
    assert target.read_text() == "old\n"
    assert no_temp_files(tmp_path)


# Client keys ------------------------------------------------------------------------------------------


@needs_ssh_keygen
def test_ensure_client_key_makes_and_reuses_an_ed25519_key(home):
    key = ssh.ensure_client_key("proj", None)

    assert key == paths.keys_dir() / "proj" / "id_ed25519"
    assert str(key).startswith(str(home))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"OPENSSH PRIVATE KEY" in key.read_bytes()
    public = ssh.public_key(key)
    assert public.startswith("ssh-ed25519 ")
    assert public.endswith(" deepbox-proj")
    private_bytes = key.read_bytes()

    again = ssh.ensure_client_key("proj", None)

    assert again == key
    assert key.read_bytes() == private_bytes
    assert ssh.public_key(key) == public
    assert ssh.ensure_client_key("other", None) != key


@needs_ssh_keygen
def test_ensure_client_key_uses_the_users_own_key(home, tmp_path):
    own = tmp_path / "mykey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own)], check=True, timeout=20)

    assert ssh.ensure_client_key("proj", own) == own
    assert not paths.keys_dir().exists(), "no per-box key is made when the user brings one"


def _fake_key(folder: Path, mode: int, pub: bool = True) -> Path:
    key = folder / "id_test"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n")
    key.chmod(mode)
    if pub:
        Path(f"{key}.pub").write_text("ssh-ed25519 AAAAfake test\n")
    return key


def test_check_private_key_accepts_600(tmp_path):
    ssh.check_private_key(_fake_key(tmp_path, 0o600))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_check_private_key_rejects_loose_modes(tmp_path, mode):
    key = _fake_key(tmp_path, mode)
    with pytest.raises(DeepboxError) as info:
        ssh.check_private_key(key)
    message = info.value.message
    assert f"chmod 600 {key}" in message
    assert f"{mode:o}" in message


def test_check_private_key_wants_the_public_half(tmp_path):
    key = _fake_key(tmp_path, 0o600, pub=False)
    with pytest.raises(DeepboxError) as info:
        ssh.check_private_key(key)
    assert f"{key}.pub" in info.value.message
    assert "ssh-keygen -y" in info.value.message


def test_check_private_key_missing_file(tmp_path):
    with pytest.raises(DeepboxError) as info:
        ssh.check_private_key(tmp_path / "nope")
    assert "Cannot read the SSH key" in info.value.message


def test_own_key_with_loose_mode_is_refused_by_ensure_client_key(tmp_path):
    with pytest.raises(DeepboxError, match="chmod 600"):
        ssh.ensure_client_key("proj", _fake_key(tmp_path, 0o644))


# Running the system ssh --------------------------------------------------------------------------------


def test_ssh_base_args_adds_F_when_home_is_not_the_accounts(home):
    # No config file yet: ssh must read none rather than fail on a missing -F file, or use the account's.
    assert ssh.ssh_base_args() == ["ssh", "-F", "none"]
    config = home / ".ssh" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("")
    assert ssh.ssh_base_args() == ["ssh", "-F", str(config)]


def test_ssh_base_args_is_plain_when_home_is_the_accounts(home, monkeypatch):
    monkeypatch.setattr(ssh.hostos, "account_home", lambda: home)
    assert ssh.ssh_base_args() == ["ssh"]


def test_control_path_fits_a_unix_socket(home, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    socket_path = ssh.control_dir() / ("f" * 40)  # %C expands to 40 hex digits
    assert len(str(socket_path)) < 104
    assert str(os.getuid()) in ssh.control_dir().name


def test_control_dir_differs_per_data_dir(home, tmp_path, monkeypatch):
    first = ssh.control_dir()
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    assert ssh.control_dir() != first
