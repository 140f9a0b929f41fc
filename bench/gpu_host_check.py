"""The host-side GPU checks of deepbox, run on a machine with an NVIDIA GPU (no Docker needed).

    python3 bench/gpu_host_check.py [--out DIR]

It runs what deepbox does on a GPU host before and after a box starts, with this machine's parts:

1. `nvidia-smi`, queried as deepbox queries it (deepbox.gpu.NVIDIA_SMI), parsed by
   deepbox.gpu.parse_nvidia_smi; the driver's own CUDA version from its header;
2. the CUDA choice of `cuda = "auto"` (deepbox.cudachoice.candidate_majors) and the driver verdict
   `doctor` gives for every CUDA version deepbox knows (deepbox.gpu.driver_verdict);
3. the box's framework check (the script `up` runs in the box, deepbox/verify.py) with this
   machine's Python, for every catalog framework whose module imports here (torch, jax, ...), with
   the catalog's GPU checks; then a small bf16 matrix product on each framework that sees a GPU, as
   proof that the GPU it reports really computes.

Only deepbox's pure modules are imported (the catalog, gpu, cudachoice), so the machine needs no
deepbox dependencies beyond `platformdirs` (install it, or put it on PYTHONPATH). The framework
check's script is read from verify.py's source, as the box receives it. With --out DIR, the raw
`nvidia-smi` output and the results are written there as files too.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))

from deepbox import catalog, cudachoice, gpu  # noqa: E402
from deepbox.catalog import cuda as cuda_versions  # noqa: E402


def verify_script() -> str:
    """The framework check as `up` sends it into the box: verify.py's _VERIFY, read from its source."""
    tree = ast.parse((SRC / "deepbox" / "verify.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_VERIFY" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit("verify.py has no _VERIFY script")


def importable(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, timeout=300, check=False)
    return probe.returncode == 0


PROOF = {
    "torch": (
        "import torch, time; a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16); "
        "torch.cuda.synchronize(); t = time.perf_counter(); [a @ a for _ in range(20)]; torch.cuda.synchronize(); "
        "s = time.perf_counter() - t; print(f'{torch.cuda.get_device_name(0)}: 20 bf16 8192^3 matmuls in {s:.3f} s "
        "= {20 * 2 * 8192**3 / s / 1e12:.0f} TFLOP/s')"
    ),
    "jax": (
        "import jax, jax.numpy as jnp, time; a = jnp.ones((8192, 8192), jnp.bfloat16); f = jax.jit(lambda x: x @ x); "
        "f(a).block_until_ready(); t = time.perf_counter(); [f(a).block_until_ready() for _ in range(20)]; "
        "s = time.perf_counter() - t; print(f'{jax.devices()[0].device_kind}: 20 bf16 8192^3 matmuls in {s:.3f} s "
        "= {20 * 2 * 8192**3 / s / 1e12:.0f} TFLOP/s')"
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the raw nvidia-smi output and the results here")
    args = parser.parse_args()
    report: dict[str, object] = {"python": sys.version.split()[0]}

    print("== 1. nvidia-smi, as deepbox queries it")
    raw = gpu.read_nvidia_smi()
    print(raw if raw is not None else "(no working driver: nvidia-smi failed)")
    gpus = gpu.parse_nvidia_smi(raw or "")
    for found in gpus:
        print(f"parsed: {found}")
    try:
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False).stdout.splitlines()[:4]
    except OSError:
        header = []
    print("\n".join(header))
    report["nvidia_smi"] = raw
    report["gpus"] = [vars(found) for found in gpus]

    print('\n== 2. the CUDA choice for cuda = "auto", and doctor\'s driver verdicts')
    host = cudachoice.Host.of(gpus)
    majors, reasons = cudachoice.candidate_majors("auto", host)
    print(f"host: driver {host.driver}, lowest compute capability {host.compute_capability}")
    print(f"CUDA majors to try, newest first: {majors}; left out: {reasons or 'none'}")
    verdicts = {}
    if host.driver:
        for version in cuda_versions.SUPPORTED:
            verdict = gpu.driver_verdict(host.driver, version)
            verdicts[version] = verdict.level
            print(f"  CUDA {version}: {verdict.level}: {verdict.message}")
        print(f"newest CUDA this driver runs in full: {cuda_versions.max_cuda(host.driver)}")
    report["cuda_majors"], report["left_out"], report["verdicts"] = majors, reasons, verdicts

    print("\n== 3. the box's framework check with this machine's Python")
    checks = [
        {"name": fw.name, "module": fw.module, "gpu": fw.gpu_check}
        for fw in catalog.ENTRIES
        if fw.gpu_check and importable(fw.module)
    ]
    print(f"frameworks importable here: {[check['name'] for check in checks] or 'none'}")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", verify_script(), json.dumps(checks), "null"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(f"exit {done.returncode} in {time.perf_counter() - started:.1f} s")
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"error": done.stderr}
    for row in result.get("checks", []):
        print(f"  {row['name']:<14} ok={row['ok']} version={row['version']} gpu={row['gpu']} count={row['gpu_count']}")
    report["framework_check"] = result

    proofs = {}
    for row in result.get("checks", []):
        if row.get("gpu") and row["module"] in PROOF:
            ran = subprocess.run(
                [sys.executable, "-c", PROOF[row["module"]]], capture_output=True, text=True, timeout=300, check=False
            )
            proofs[row["module"]] = (ran.stdout or ran.stderr).strip().splitlines()[-1:]
            print(f"  {row['module']} computes: {proofs[row['module']]}")
    report["proofs"] = proofs

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "nvidia-smi.csv").write_text(raw or "")
        (args.out / "gpu_host_check.json").write_text(json.dumps(report, indent=2, default=str))
    return 0 if gpus and result.get("checks") is not None else 1


if __name__ == "__main__":
    sys.exit(main())
