"""A failed build's report: TLS interception recognised in real pip, uv and apt logs, Docker's noise left
out of the tail, and the sentence printed after the tail."""

from __future__ import annotations

from typing import Any

import pytest

from deepbox import box
from deepbox.cli import main
from deepbox.engine import buildlog
from deepbox.engine.docker import DockerEngine
from deepbox.errors import DeepboxError
from deepbox.model import BuildEvent

RUN_ERROR = "The command '/bin/sh -c uv pip install numpy' returned a non-zero code: 1"

PIP = [
    "WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection "
    "broken by 'SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
    "unable to get local issuer certificate (_ssl.c:1006)'))': /simple/numpy/",
    "ERROR: Could not find a version that satisfies the requirement numpy (from versions: none)",
    "ERROR: No matching distribution found for numpy",
]
UV = [
    "error: Request failed after 3 retries",
    "  Caused by: Failed to fetch: `https://pypi.org/simple/numpy/`",
    "  Caused by: error sending request for url (https://pypi.org/simple/numpy/)",
    "  Caused by: client error (Connect)",
    "  Caused by: invalid peer certificate: UnknownIssuer",
]
APT = [
    "Err:1 https://deb.debian.org/debian bookworm InRelease",
    "  Certificate verification failed: The certificate is NOT trusted. The certificate issuer is unknown.  "
    "Could not handshake: Error in the certificate verification. [IP: 151.101.2.132 443]",
    "E: The repository 'https://deb.debian.org/debian bookworm InRelease' is not signed.",
]
OLD_APT = [
    "Ign:1 https://archive.ubuntu.com/ubuntu focal InRelease",
    "Err:2 https://archive.ubuntu.com/ubuntu focal Release",
    "  server certificate verification failed. CAfile: /etc/ssl/certs/ca-certificates.crt CRLfile: none",
]
UNRELATED = [
    "  × No solution found when resolving dependencies:",  # noqa: RUF001 - uv prints it so
    "  ╰─▶ Because there is no version of numpy==9.9 and you require numpy==9.9, we can conclude that your "
    "requirements are unsatisfiable.",
]

STEP = "step 14/22 (RUN uv pip install numpy)"
TLS_SENTENCE = (
    "The image build failed at step 14/22 (RUN uv pip install numpy): a download was refused because its TLS "
    'certificate is not trusted ("{marker}" in the log above), which is what a TLS-intercepting (company) proxy '
    "causes; add its CA, or this machine's whole bundle, with [build] ca_certificates = "
    '["/etc/ssl/certs/ca-certificates.crt"] in deepbox.toml and run `deepbox up` again.'
)


@pytest.mark.parametrize(
    ("log", "marker"),
    [
        (PIP, "CERTIFICATE_VERIFY_FAILED"),
        (UV, "invalid peer certificate"),
        (APT, "Certificate verification failed"),
        (OLD_APT, "server certificate verification failed"),
    ],
)
def test_tls_interception_names_build_ca_certificates(log, marker):
    error = buildlog.failure(STEP, RUN_ERROR, log)
    assert error.message == TLS_SENTENCE.format(marker=marker)
    assert error.detail == "\n".join(log)


def test_other_failures_keep_the_engine_s_reason():
    error = buildlog.failure(STEP, RUN_ERROR + "\n", UNRELATED)
    assert buildlog.tls_refusal(UNRELATED) is None
    assert error.message == (
        f"The image build failed at {STEP}: {RUN_ERROR}. Fix that step's input (see the log above) and run "
        "`deepbox up` again."
    )


class _Api:
    """The Docker API's build stream of a RUN step that fails behind a TLS-intercepting proxy."""

    def build(self, **_options: Any) -> list[dict[str, str]]:
        lines = ["Step 14/22 : RUN uv pip install numpy", " ---> Running in 5d1c0e8a9b2f", *UV]
        return [
            {"stream": "Step 1/22 : FROM debian:bookworm-slim\n"},
            {"stream": " ---> 0123456789ab\n"},
            *({"stream": line + "\n"} for line in lines),
            {"stream": "Removing intermediate container 5d1c0e8a9b2f\n"},
            {"errorDetail": {"code": 1, "message": RUN_ERROR}, "error": RUN_ERROR},
        ]

    def ping(self) -> bool:  # the engine still answers: the step failed, not the engine
        return True


class _Context:
    buildkit = False

    def tar(self) -> bytes:
        return b""


def test_the_tail_is_the_failing_step_without_docker_s_bookkeeping():
    engine = DockerEngine.__new__(DockerEngine)
    engine.where = "test"
    engine.client = type("Client", (), {"api": _Api()})()
    shown: list[BuildEvent] = []
    with pytest.raises(DeepboxError) as raised:
        engine.build(_Context(), "deepbox/x:1", {}, None, shown.append)  # type: ignore[arg-type]
    assert raised.value.detail.splitlines() == ["Step 14/22 : RUN uv pip install numpy", *UV]
    assert raised.value.message == TLS_SENTENCE.format(marker="invalid peer certificate")
    # the log file still gets everything
    assert "Removing intermediate container 5d1c0e8a9b2f" in [event.text for event in shown]


def test_the_sentence_comes_after_the_log_tail(make_project, monkeypatch, capsys):
    def failing_up(*_args: object, **_options: object) -> None:
        raise buildlog.failure(STEP, RUN_ERROR, UV)

    monkeypatch.setattr(box, "up", failing_up)
    monkeypatch.setattr("deepbox.site.Site.bind", lambda _site, spec: spec)
    code = main(["-C", str(make_project("")), "up"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert lines[: len(UV)] == UV
    assert lines[-1] == "Error: " + TLS_SENTENCE.format(marker="invalid peer certificate")
