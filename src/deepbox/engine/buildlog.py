"""A failed image build in one sentence: what the log's tail says went wrong, and the fix.

The tail is what the user reads first, so Docker's bookkeeping lines are left out of it; the sentence
comes after it (the CLI prints the detail first), so it is the last thing on the terminal.
"""

from __future__ import annotations

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


def is_noise(line: str) -> bool:
    return line.startswith(NOISE)


def tls_refusal(lines: list[str]) -> str | None:
    """The first marker of an untrusted TLS certificate in the log, None when there is none."""
    for line in lines:
        for marker in TLS_REFUSALS:
            if marker in line:
                return marker
    return None


def failure(step: str, error: str, tail: list[str]) -> DeepboxError:
    """The error for a build that stopped at `step` with the engine's `error`, its log's `tail` as detail."""
    where = step or "the first step"
    marker = tls_refusal([*tail, error])
    if marker is not None:
        message = (
            f"The image build failed at {where}: a download was refused because its TLS certificate is not "
            f'trusted ("{marker}" in the log above), which is what a TLS-intercepting (company) proxy causes; '
            "add its CA, or this machine's whole bundle, with [build] ca_certificates = "
            '["/etc/ssl/certs/ca-certificates.crt"] in deepbox.toml and run `deepbox up` again.'
        )
    else:
        message = (
            f"The image build failed at {where}: {error.strip().rstrip('.')}. Fix that step's input (see the "
            "log above) and run `deepbox up` again."
        )
    return DeepboxError(message, detail="\n".join(tail))
