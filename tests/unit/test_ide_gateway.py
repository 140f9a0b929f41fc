"""ide/gateway.py: the jetbrains-gateway://connect link and the command that opens it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from deepbox.errors import DeepboxError
from deepbox.ide import gateway

from .helpers import up_result


def fragment(url: str) -> dict[str, list[str]]:
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path, parts.query) == ("jetbrains-gateway", "connect", "", "")
    return parse_qs(parts.fragment, keep_blank_values=True, strict_parsing=True)


def test_default_link_lets_gateway_deploy_pycharm():
    assert gateway.gateway_url(up_result()) == (
        "jetbrains-gateway://connect#projectPath=%2Fworkspace&host=127.0.0.1&port=2222&user=alice"
        "&type=ssh&deploy=true&productCode=PY"
    )


def test_link_to_an_installed_backend_matches_the_backends_own_link_shape():
    url = gateway.gateway_url(up_result(), ide_path="/home/alice/.cache/JetBrains/RemoteDev/dist/pycharm")
    assert url == (
        "jetbrains-gateway://connect#idePath=%2Fhome%2Falice%2F.cache%2FJetBrains%2FRemoteDev%2Fdist%2Fpycharm"
        "&projectPath=%2Fworkspace&host=127.0.0.1&port=2222&user=alice&type=ssh&deploy=false"
    )


def test_parsing_the_link_back_gives_the_box():
    result = up_result(host="gpu.example.com", port=40022, user="bob", workspace="/srv/my project/ü&x=1#y")
    params = fragment(gateway.gateway_url(result, "IU", build="251.23774.444"))
    assert params == {
        "projectPath": ["/srv/my project/ü&x=1#y"],
        "host": ["gpu.example.com"],
        "port": ["40022"],
        "user": ["bob"],
        "type": ["ssh"],
        "deploy": ["true"],
        "productCode": ["IU"],
        "buildNumber": ["251.23774.444"],
    }


def test_every_reserved_character_is_percent_encoded():
    url = gateway.gateway_url(up_result(workspace="/a b/c+d&e=f#g%h"))
    encoded = url.split("#", 1)[1]
    assert encoded.count("#") == 0
    assert "projectPath=%2Fa%20b%2Fc%2Bd%26e%3Df%23g%25h&" in encoded
    assert fragment(url)["projectPath"] == ["/a b/c+d&e=f#g%h"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ide": "pycharm"}, "is not a JetBrains product code"),
        ({"ide": "PY&x=1"}, "is not a JetBrains product code"),
        ({"build": "latest"}, "is not a JetBrains build number"),
        ({"ide_path": "relative/idea"}, "must be an absolute path inside the box"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(DeepboxError, match=message):
        gateway.gateway_url(up_result(), **kwargs)


@pytest.mark.parametrize(
    ("platform", "available", "expected"),
    [
        ("linux", {"xdg-open"}, ["xdg-open", "URL"]),
        ("darwin", {"open"}, ["open", "URL"]),
        ("linux", set(), None),
        ("darwin", {"xdg-open"}, None),
        ("win32", {"xdg-open", "open"}, None),
    ],
)
def test_open_command_uses_the_desktops_opener(monkeypatch, platform, available, expected):
    monkeypatch.setattr(gateway.sys, "platform", platform)
    monkeypatch.setattr(gateway.shutil, "which", lambda name: f"/usr/bin/{name}" if name in available else None)
    assert gateway.open_command("URL") == expected
