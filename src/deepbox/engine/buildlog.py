"""A failed image build in one sentence: what the log's tail says went wrong, and the fix.

The tail is what the user reads first, so Docker's bookkeeping lines are left out of it; the sentence
comes after it (the CLI prints the detail first), so it is the last thing on the terminal.
"""

from __future__ import annotations

import re
from pathlib import Path

from deepbox.errors import DeepboxError

# Docker's classic builder announces every layer it made and every container it removed.
NOISE = ("Removing intermediate container ", " ---> ")

# What pip, uv, apt and curl print when a TLS-intercepting proxy presents its own certificate.
TLS_REFUSALS = (
    "CERTIFICATE_VERIFY_FAILED",  # pip (Python's ssl)
    "invalid peer certificate",  # uv (rustls)
    "UnknownIssuer",  # uv
    "Certificate verification failed",  # apt (gnutls)
    "server certificate verification failed",  # apt over https, older gnutls
    "SSL certificate problem",  # curl
)


class BuildFailed(DeepboxError):
    """A failed build, with its parts kept so the caller can name the file the whole log went to."""

    def __init__(self, message: str, *, step: str, error: str, tail: list[str]) -> None:
        super().__init__(message, detail="\n".join(tail))
        self.step, self.error, self.tail = step, error, tail


_CLASSIC_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
_BUILDKIT_STEP = re.compile(r"^\[(?:\S+ )?\s*(\d+)/(\d+)\] (.*)")  # "[3/9] RUN x", "[stage-0  3/9] RUN x"


def step_title(name: str) -> str:
    """'Step 3/9 : RUN x' (classic) or '[3/9] RUN x' (BuildKit) -> 'step 3/9 (RUN x)'; others as they are."""
    match = _CLASSIC_STEP.match(name) or _BUILDKIT_STEP.match(name)
    if match is None:
        return name
    return f"step {match.group(1)}/{match.group(2)} ({' '.join(match.group(3).split())[:80]})"


def is_noise(line: str) -> bool:
    return line.startswith(NOISE)


def tls_refusal(lines: list[str]) -> str | None:
    """The first marker of an untrusted TLS certificate in the log, None when there is none."""
    for line in lines:
        for marker in TLS_REFUSALS:
            if marker in line:
                return marker
    return None


def failure(step: str, error: str, tail: list[str], log: Path | None = None) -> BuildFailed:
    """The error for a build that stopped at `step` with the engine's `error`, its log's `tail` as detail;
    `log`: the file the whole log was written to."""
    where = step or "the first step"
    above = f"the log above; all of it is in {log}" if log is not None else "the log above"
    marker = tls_refusal([*tail, error])
    if marker is not None:
        message = (
            f"The image build failed at {where}: a download was refused because its TLS certificate is not "
            f'trusted ("{marker}" in {above}), which is what a TLS-intercepting (company) proxy causes; '
            "add its CA, or this machine's whole bundle, with [build] ca_certificates = "
            '["/etc/ssl/certs/ca-certificates.crt"] in deepbox.toml and run `deepbox up` again.'
        )
    else:
        message = (
            f"The image build failed at {where}: {error.strip().rstrip('.')}. Fix that step's input (see "
            f"{above}) and run `deepbox up` again."
        )
    return BuildFailed(message, step=step, error=error, tail=tail)
