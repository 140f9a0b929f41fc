"""deepbox's Dockerfile vs a Deepo-style one for the same frameworks, on the same base, in one run.

    .venv/bin/python bench/build_compare.py [--base deepbox/debian:bookworm] [--wheels DIR]
        [--skip-installers] [--skip-framework-change] [--builder buildkit|classic]

--builder: the builder of every build here (default buildkit, as `deepbox up` on Docker). With
BuildKit, "cold" means no layer cache; deepbox's apt and uv cache mounts keep what earlier builds
downloaded, as they do for a user. Every Dockerfile here carries `ENV DEEPBOX_BENCH_RUN=<run id>`
right after FROM, so its layers are this run's own: no layer cached by an earlier run (or by another
build on the engine) is reused, while the cache mounts are shared as a user's are. The images are
removed at the end, and so is the build cache this run added (about 5 GB for a full run with
--wheels), which no later run would reuse.

a) cold build time (no layer cache) and image size for pytorch + scikit-learn: deepbox vs a
   Deepo-style Dockerfile (one RUN layer, plain pip, build tools and the scientific base, no cache
   mounts). Targets: time <= 0.4x, size <= 0.6x.
b) deepbox rebuild after adding one pip package vs its cold build. Target <= 0.15x.
c) installer choice: the scientific preset installed by uv (deepbox's choice) vs by pip, in the
   same Dockerfile otherwise (cold).
d) rebuild after changing the framework set: a scikit-learn box, then pytorch added to it; the
   rebuild against the cold build of the bigger box from (a). Target <= 0.3x.

PyTorch is the CPU build on both sides: from the wheel folder --wheels DIR (default: the
DEEPBOX_BENCH_WHEELS environment variable) when given, for machines that cannot reach
download.pytorch.org, otherwise from PyTorch's CPU index. Every image is tagged
deepbox-bench-<run id>/..., labelled deepbox.bench=build-compare and deepbox.bench.run=<run id>, and
removed at the end (this run's alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import uuid
from pathlib import Path

import buildcache

from deepbox.config import BoxConfig, resolve
from deepbox.dockerfile import render
from deepbox.engine import Engine, connect, locate
from deepbox.model import BuildContext

RUN = uuid.uuid4().hex[:6]  # two runs on one engine must neither share tags nor remove each other's images
LABEL = {"deepbox.bench": "build-compare", "deepbox.bench.run": RUN}
PREFIX = f"deepbox-bench-{RUN}"
CA = "/etc/ssl/certs/ca-certificates.crt"
TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

DEEPO_STYLE = """FROM {base}
ENV LANG=C.UTF-8
COPY deepbox/certs/ /usr/local/share/ca-certificates/deepbox/
COPY deepbox/wheels/ /tmp/wheels/
RUN APT_INSTALL="apt-get install -y --no-install-recommends" && \\
    PIP_INSTALL="/opt/venv/bin/python -m pip --no-cache-dir install --upgrade" && \\
    apt-get update && \\
    DEBIAN_FRONTEND=noninteractive $APT_INSTALL build-essential apt-utils ca-certificates wget git vim \\
        libssl-dev curl unzip cmake openssh-server python3 python3-dev python3-venv && \\
    update-ca-certificates && \\
    python3 -m venv /opt/venv && \\
    $PIP_INSTALL pip setuptools && \\
    $PIP_INSTALL numpy scipy pandas cloudpickle 'scikit-image>=0.14.2' scikit-learn matplotlib Cython tqdm {extra} && \\
    $PIP_INSTALL {torch_source} {torch} && \\
    ldconfig && apt-get clean && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* ~/*
ENV PATH=/opt/venv/bin:$PATH
"""


BUILDKIT = True  # --builder


def for_this_run(context: BuildContext) -> BuildContext:
    """The same build with `ENV DEEPBOX_BENCH_RUN=<run id>` right after FROM: BuildKit keys every later
    RUN step on it (the classic builder every later step), so only this run's layers can be reused."""

    def unique(text: str) -> str:
        if not text:
            return text
        lines = text.splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
        return "".join([*lines[: at + 1], f"ENV DEEPBOX_BENCH_RUN={RUN}\n", *lines[at + 1 :]])

    return dataclasses.replace(
        context, dockerfile=unique(context.dockerfile), plain_dockerfile=unique(context.plain_dockerfile)
    )


def deepbox_context(
    base: str, frameworks: list[str], pip: list[str], project: Path, wheels: str | None
) -> BuildContext:
    """deepbox's own Dockerfile; PyTorch's CPU build from the wheel folder, or from its CPU index."""
    build = {"ca_certificates": [CA], "find_links": [wheels] if wheels else []}
    config = BoxConfig.model_validate(
        {
            "name": "bench",
            "base": base,
            "frameworks": frameworks,
            "pip": pip,
            "requirements": "off",
            "framework_indexes": not wheels,
            "build": build,
        }
    )
    return for_this_run(render(resolve(config, project, None), buildkit=BUILDKIT))


def deepo_context(base: str, extra: str, project: Path, wheels: str | None) -> BuildContext:
    ours = deepbox_context(base, [], [], project, wheels)  # only for the same certs and wheels in the context
    files = {path: data for path, data in ours.files.items() if path.startswith(("deepbox/certs/", "deepbox/wheels/"))}
    files = {path.replace("deepbox/wheels/0/", "deepbox/wheels/"): data for path, data in files.items()}
    source = "--find-links /tmp/wheels" if wheels else f"--index-url {CPU_INDEX}"
    return for_this_run(
        BuildContext(
            DEEPO_STYLE.format(base=base, extra=extra, torch=TORCH, torch_source=source), files, buildkit=BUILDKIT
        )
    )


def build(engine: Engine, context: BuildContext, tag: str, nocache: bool) -> float:
    started = time.monotonic()
    engine.build(context, tag, LABEL, None, lambda _line: None, no_cache=nocache)
    return time.monotonic() - started


def size_mb(client: Engine, tag: str) -> float:
    image = client.image(tag)
    return image.size / 1e6 if image else 0.0


def log(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="deepbox/debian:bookworm")
    parser.add_argument(
        "--wheels",
        default=os.environ.get("DEEPBOX_BENCH_WHEELS") or None,
        metavar="DIR",
        help="a folder with PyTorch's CPU wheel (default: $DEEPBOX_BENCH_WHEELS; none: PyTorch's CPU index)",
    )
    parser.add_argument("--skip-installers", action="store_true", help="skip (c), the uv vs pip measurement")
    parser.add_argument(
        "--skip-framework-change", action="store_true", help="skip (d), the rebuild after adding pytorch"
    )
    parser.add_argument("--builder", choices=["buildkit", "classic"], default="buildkit")
    args = parser.parse_args()
    global BUILDKIT
    BUILDKIT = args.builder == "buildkit"
    wheels = args.wheels
    if wheels and not Path(wheels).is_dir():
        print(f"--wheels {wheels} is not a folder; name the folder that holds PyTorch's CPU wheel", file=sys.stderr)
        return 2
    client = connect(locate())
    project = Path.cwd()
    frameworks = ["pytorch==2.13.0", "scikit-learn"]
    rows: list[tuple[str, str, str, str]] = []
    cache_before = buildcache.record_ids(client)
    try:
        change = None
        if not args.skip_framework_change:
            # First, so that no layer of (a)'s bigger box is in the cache yet.
            log("framework change: a scikit-learn box (cold), then pytorch added")
            smaller = deepbox_context(args.base, ["scikit-learn"], [], project, wheels)
            build(client, smaller, f"{PREFIX}/ours:sklearn", True)
            bigger = deepbox_context(args.base, frameworks, [], project, wheels)
            change = build(client, bigger, f"{PREFIX}/ours:sklearn-plus-torch", False)
        log("deepbox cold build")
        ours = build(client, deepbox_context(args.base, frameworks, [], project, wheels), f"{PREFIX}/ours:cold", True)
        ours_size = size_mb(client, f"{PREFIX}/ours:cold")
        log("Deepo-style cold build")
        deepo = build(client, deepo_context(args.base, "", project, wheels), f"{PREFIX}/deepo:cold", True)
        deepo_size = size_mb(client, f"{PREFIX}/deepo:cold")
        log("deepbox rebuild with one more pip package")
        rebuild = build(
            client, deepbox_context(args.base, frameworks, ["rich"], project, wheels), f"{PREFIX}/ours:plus", False
        )
        rows += [
            ("cold build s", f"{ours:.1f}", f"{deepo:.1f}", f"{ours / deepo:.2f}x (target <= 0.4x)"),
            ("image MB", f"{ours_size:.0f}", f"{deepo_size:.0f}", f"{ours_size / deepo_size:.2f}x (target <= 0.6x)"),
            (
                "rebuild +1 pip package s",
                f"{rebuild:.1f}",
                "(full rebuild)",
                f"{rebuild / ours:.2f}x of cold (target <= 0.15x)",
            ),
        ]
        if change is not None:
            rows.append(
                (
                    "rebuild after adding pytorch to a scikit-learn box s",
                    f"{change:.1f}",
                    "(full rebuild)",
                    f"{change / ours:.2f}x of cold (target <= 0.3x)",
                )
            )
        if not args.skip_installers:
            log("installers: scientific preset with uv, then with pip (cold)")
            # Both without cache mounts: this compares the installers, not the caches.
            made = deepbox_context(args.base, ["scientific"], [], project, wheels)
            context = BuildContext(made.plain_dockerfile or made.dockerfile, made.files)
            uv = build(client, context, f"{PREFIX}/uv:cold", True)
            pip_text = context.dockerfile.replace(
                "RUN uv pip install", "RUN pip install --no-cache-dir --disable-pip-version-check"
            )
            pip = build(client, BuildContext(pip_text, context.files), f"{PREFIX}/pip:cold", True)
            rows.append(("scientific preset, uv vs pip s", f"{uv:.1f}", f"{pip:.1f} (pip)", f"{uv / pip:.2f}x"))
    finally:
        for image in client.images(f"deepbox.bench.run={RUN}"):
            for tag in image.tags:
                client.untag(tag)
        log(f"removed this run's build cache: {buildcache.remove_new(client, cache_before):.1f} GB")
        client.close()
    print("| measure | deepbox | Deepo-style | ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
