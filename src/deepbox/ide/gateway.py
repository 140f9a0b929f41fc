"""JetBrains Gateway: the `jetbrains-gateway://connect#...` link that opens a box over SSH.

The link format is JetBrains' own. The parameter names are those of
`com.intellij.remoteDev.util.UrlParameterKeys` in JetBrains/intellij-community
(platform/remoteDev-util): projectPath, idePath, host, user, port, type, deploy, buildNumber,
productCode. Their order and encoding follow the "Gateway link" that a JetBrains backend prints when
started with `remote-dev-server.sh run <project> --ssh-link-host ...`:

    jetbrains-gateway://connect#idePath=%2Fopt%2Fidea&projectPath=%2Fvar%2Fproject&host=192.168.56.2
        &port=22&user=root&type=ssh&deploy=false

Every value is percent-encoded, `/` included. With `deploy=false` the link names a backend that is
already installed in the box (`idePath`); with `deploy=true` Gateway installs the backend itself, and
`productCode` (PY for PyCharm) with an optional `buildNumber` say which one. Gateway pre-fills its SSH
connection form from the link; the user still confirms it and picks the key (the box's key is
`UpResult.key`), since a link carries no credentials.
"""

from __future__ import annotations

import re
import shutil
import sys
from urllib.parse import quote, urlencode

from deepbox.errors import DeepboxError
from deepbox.model import UpResult

SCHEME = "jetbrains-gateway"
_PRODUCT_CODE = re.compile(r"^[A-Z]{2,3}$")
_BUILD_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+){1,3}$")


def gateway_url(result: UpResult, ide: str = "PY", *, ide_path: str | None = None, build: str | None = None) -> str:
    """The Gateway link for the box: the product `ide` (a JetBrains product code, PY for PyCharm)
    deployed by Gateway, or the backend already installed at `ide_path` in the box."""
    if not _PRODUCT_CODE.match(ide):
        raise DeepboxError(
            f"{ide!r} is not a JetBrains product code; use two or three capital letters such as PY (PyCharm) or IU."
        )
    if build is not None and not _BUILD_NUMBER.match(build):
        raise DeepboxError(f"{build!r} is not a JetBrains build number; use one such as 251.23774.444.")
    if ide_path is not None and not ide_path.startswith("/"):
        raise DeepboxError(f"The backend path {ide_path!r} must be an absolute path inside the box.")
    params: list[tuple[str, str]] = []
    if ide_path is not None:
        params.append(("idePath", ide_path))
    params += [
        ("projectPath", result.workspace),
        ("host", result.ide_host or result.host),  # the alias for a box behind a server's jump
        ("port", str(result.port)),
        ("user", result.user),
        ("type", "ssh"),
        ("deploy", "false" if ide_path is not None else "true"),
    ]
    if ide_path is None:
        params.append(("productCode", ide))
        if build is not None:
            params.append(("buildNumber", build))
    return f"{SCHEME}://connect#" + urlencode(params, quote_via=quote, safe="")


def open_command(url: str) -> list[str] | None:
    """The desktop's URL opener for the link (`open` on macOS, `xdg-open` elsewhere), or None without one."""
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if sys.platform == "win32" or shutil.which(opener) is None:
        return None
    return [opener, url]
