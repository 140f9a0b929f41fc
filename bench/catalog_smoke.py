"""Smoke-build every catalog entry, one image each, on the same base; print a markdown table.

    .venv/bin/python bench/catalog_smoke.py [--base deepbox/debian:bookworm] [--only a,b] [--out FILE]
        [--wheels DIR]

Each entry gets deepbox's own Dockerfile (the box user, uv, the hardened sshd layer) for that one
framework; the row says its installed version, whether its import check passes, the build seconds
and the image size. Refused entries get their refusal instead of a build. PyTorch (and what needs
it) comes from the CPU wheel folder --wheels DIR (default: $DEEPBOX_BENCH_WHEELS) when given (PyPI's
torch is a multi-GB CUDA build), otherwise from the framework indexes.
Every image carries the label deepbox.bench=catalog-smoke and is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from deepbox import catalog
from deepbox.config import BoxConfig, resolve
from deepbox.dockerfile import plan_for, render
from deepbox.engine import Engine, connect, locate
from deepbox.errors import DeepboxError

LABEL = "deepbox.bench"
CA = "/etc/ssl/certs/ca-certificates.crt"
NEEDS_TORCH = {"pytorch", "transformers", "lightning"}
CHECK = """
import importlib, json, sys
out = {}
for name, module in json.loads(sys.argv[1]):
    try:
        m = importlib.import_module(module)
        out[name] = [True, str(getattr(m, "__version__", ""))]
    except Exception as exc:
        out[name] = [False, f"{type(exc).__name__}: {str(exc)[:160]}"]
print(json.dumps(out))
"""


def config_for(name: str, base: str, wheels: str | None) -> BoxConfig:
    fw = catalog.lookup(name)
    data: dict[str, Any] = {"name": "smoke", "base": base, "frameworks": [name], "requirements": "off"}
    build: dict[str, Any] = {"ca_certificates": [CA] if Path(CA).is_file() else []}
    if (name in NEEDS_TORCH or "pytorch" in fw.depends) and wheels:
        build["find_links"] = [wheels]
        data["framework_indexes"] = False
        data["frameworks"] = ["pytorch==2.13.0", name] if name != "pytorch" else ["pytorch==2.13.0"]
    if fw.suites and catalog.base_suite(base) not in fw.suites:
        data["base"] = f"deepbox/debian:{fw.suites[0]}"
    data["build"] = build
    return BoxConfig.model_validate(data)


def smoke(engine: Engine, name: str, base: str, project: Path, wheels: str | None) -> dict[str, Any]:
    fw = catalog.lookup(name)
    row: dict[str, Any] = {"entry": name, "version": "", "ok": False, "seconds": None, "size_mb": None, "note": ""}
    if fw.status != "ok":
        row["note"] = f"refused: {fw.refusal} Use {fw.replacement}."
        return row
    config = config_for(name, base, wheels)
    if engine.image(config.base) is None:
        row["note"] = f"skipped: base {config.base} missing (deepbox base bootstrap --suite ...)"
        return row
    spec = resolve(config, project, None)
    context = render(spec)
    tag = f"deepbox-smoke/{name}:{context.spec_hash}"
    started = time.monotonic()
    error = ""
    try:
        engine.build(context, tag, {LABEL: "catalog-smoke"}, None, lambda _line: None)
    except DeepboxError as exc:
        error = exc.message
    row["seconds"] = round(time.monotonic() - started, 1)
    if error:
        row["note"] = f"build failed: {error[-200:]}"
        return row
    built = engine.image(tag)
    row["size_mb"] = round(built.size / 1e6) if built else None
    checks = [[f.name, f.module] for f in plan_for(spec).frameworks if f.name == name]
    output = engine.run_once(
        tag, ["/opt/venv/bin/python", "-c", CHECK, json.dumps(checks)], entrypoint=[], labels={LABEL: "catalog-smoke"}
    )
    ok, detail = json.loads(output.strip().splitlines()[-1])[name]
    row["ok"], row["version"] = ok, detail if ok else ""
    row["note"] = "" if ok else detail
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| entry | version | import ok | build s | image MB | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        ok = "yes" if r["ok"] else ("-" if r["seconds"] is None else "NO")
        lines.append(
            f"| {r['entry']} | {r['version']} | {ok} | {r['seconds'] if r['seconds'] is not None else ''} | "
            f"{r['size_mb'] or ''} | {r['note'].replace('|', '/')} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="deepbox/debian:bookworm")
    parser.add_argument("--only", default="", help="comma-separated entries (default: all)")
    parser.add_argument("--out", default="", help="also write the table (and JSON rows beside it) here")
    parser.add_argument("--keep-going-after", type=float, default=0, help="stop starting builds after S seconds")
    parser.add_argument(
        "--wheels",
        default=os.environ.get("DEEPBOX_BENCH_WHEELS") or None,
        metavar="DIR",
        help="a folder with PyTorch's CPU wheel (default: $DEEPBOX_BENCH_WHEELS; none: the framework indexes)",
    )
    args = parser.parse_args()
    names = args.only.split(",") if args.only else sorted(catalog.FRAMEWORKS)
    engine = connect(locate())
    project = Path(os.environ.get("TMPDIR", "/tmp")) / f"deepbox-smoke-{os.getpid()}"
    project.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for name in names:
            if args.keep_going_after and time.monotonic() - started > args.keep_going_after:
                break
            print(f"[smoke] {name}", file=sys.stderr, flush=True)
            try:
                rows.append(smoke(engine, name, args.base, project, args.wheels))
            except Exception as exc:  # one entry's failure must not stop the table
                rows.append(
                    {
                        "entry": name,
                        "version": "",
                        "ok": False,
                        "seconds": None,
                        "size_mb": None,
                        "note": str(exc)[:200],
                    }
                )
            print(f"[smoke] {rows[-1]}", file=sys.stderr, flush=True)
            if args.out:
                Path(args.out).write_text(table(rows) + "\n")
                Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    finally:
        for image in engine.images(f"{LABEL}=catalog-smoke"):
            for tag in image.tags:
                engine.untag(tag)
        engine.close()
        project.rmdir()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
