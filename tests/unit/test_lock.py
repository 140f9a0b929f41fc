"""lock: tiers from uv's annotations, CUDA from resolved packages, cuda = "auto" against recorded
nvidia-smi outputs, the lock file, freshness and --check, ensure() with a stand-in resolver.

The real resolver (uv against PyPI) is exercised by tests/integration/test_lock.py; here a resolver
function stands in so every decision is checked without a network.
"""

from __future__ import annotations

import dataclasses

import pytest

from deepbox import cudachoice, doctor, gpu, lock, resolver
from deepbox.config import load_spec
from deepbox.cudachoice import Host
from deepbox.errors import DeepboxError
from deepbox.lock import Variant
from deepbox.resolver import Job, NoSolution, Package, Resolution

# What `uv pip compile --emit-index-annotation` printed for scikit-learn (library), rich (pip) and a
# requirements.txt with tqdm: the via-annotations tell which tier needs what.
ANNOTATED = """\
cloudpickle==3.1.3
    # via joblib
    # from https://pypi.org/simple
joblib==1.6.0
    # via scikit-learn
    # from https://pypi.org/simple
markdown-it-py==4.3.0
    # via rich
mdurl==0.1.2
    # via markdown-it-py
numpy==2.4.6
    # via
    #   deepbox-box (pyproject.toml)
    #   scikit-learn
    #   scipy
rich==15.0.0
    # via deepbox-box (pyproject.toml)
scikit-learn==1.9.1
    # via deepbox-box (pyproject.toml)
scipy==1.17.1
    # via scikit-learn
tqdm==4.70.1
    # via -r requirements.txt
"""
TIERS = {"base": ("numpy",), "heavy": (), "library": ("scikit-learn==1.9.*",), "tool": (), "pip": ("rich",)}

# nvidia-smi --query-gpu=index,name,driver_version,memory.total[,compute_cap] --format=csv,noheader
SMI = {
    "470-v100": "0, Tesla V100-SXM2-16GB, 470.182.03, 16160 MiB\n",
    "535-a100": "0, NVIDIA A100-SXM4-80GB, 535.183.01, 81920 MiB, 8.0\n",
    "550-l4": "0, NVIDIA L4, 550.54.15, 23034 MiB, 8.9\n",
    "580-h100": "0, NVIDIA H100 80GB HBM3, 580.65.06, 81559 MiB, 9.0\n",
    "580-v100": (
        "0, Tesla V100-SXM2-32GB, 580.82.07, 32768 MiB, 7.0\n1, Tesla V100-SXM2-32GB, 580.82.07, 32768 MiB, 7.0\n"
    ),
}


def test_annotations_give_each_package_the_earliest_tier_that_needs_it():
    graph = resolver.parse_annotated(ANNOTATED)
    assert graph["numpy"] == ("2.4.6", ["deepbox-box (pyproject.toml)", "scikit-learn", "scipy"])
    tiers = resolver.assign_tiers(graph, TIERS)
    assert tiers["numpy"] == "base"
    assert tiers["scipy"] == tiers["joblib"] == tiers["cloudpickle"] == "library"
    assert tiers["rich"] == tiers["mdurl"] == "pip"
    assert tiers["tqdm"] == "requirements"
    roots = resolver.roots_of(graph)
    assert roots["cloudpickle"] == {"scikit-learn"}
    assert roots["numpy"] == {"numpy", "scikit-learn"}


def package(name: str, version: str, tier: str = "heavy") -> Package:
    return Package(name, version, tier, f"https://files.example/{name}-{version}.whl", "0" * 64)


TORCH_PYPI = [
    package("torch", "2.13.0"),
    package("nvidia-cuda-runtime", "13.0.96"),
    package("nvidia-cudnn-cu13", "9.20"),
]
TF_CUDA = [package("tensorflow", "2.21.0"), package("nvidia-cuda-runtime-cu12", "12.9.79")]
JAX13 = [package("jax", "0.10.2"), package("jax-cuda13-plugin", "0.10.2"), package("nvidia-cuda-runtime", "13.5.37")]
TORCH_CU128 = [package("torch", "2.13.0+cu128"), package("nvidia-cuda-runtime-cu12", "12.8.90")]


def test_cuda_major_and_version_come_from_the_resolved_packages():
    assert cudachoice.cuda_majors(TORCH_PYPI) == {13} and cudachoice.cuda_version(TORCH_PYPI) == "13.0"
    assert cudachoice.cuda_majors(TF_CUDA) == {12} and cudachoice.cuda_version(TF_CUDA) == "12.9"
    assert cudachoice.cuda_majors(JAX13) == {13}
    assert cudachoice.cuda_majors([package("torch", "2.13.0+cu128")]) == {12}
    assert cudachoice.cuda_majors([package("cupy-cuda12x", "14.2.0"), package("numpy", "2.4.6")]) == {12}
    assert cudachoice.cuda_majors([package("cuda-bindings", "13.5.0"), package("cuda-pathfinder", "1.9.1")]) == set()
    assert cudachoice.cuda_version([package("numpy", "2.4.6")]) == ""


@pytest.mark.parametrize(
    ("smi", "majors"),
    [
        ("470-v100", [11]),
        ("535-a100", [12, 11]),
        ("550-l4", [12, 11]),
        ("580-h100", [13, 12, 11]),
        ("580-v100", [12, 11]),
    ],
)
def test_auto_tries_the_majors_the_driver_and_the_gpus_run(smi, majors):
    host = Host.of(gpu.parse_nvidia_smi(SMI[smi]))
    found, reasons = cudachoice.candidate_majors("auto", host)
    assert found == majors
    assert len(reasons) == 3 - len(majors)
    if smi == "580-v100":
        assert "compute capability 7.5 or newer (the host's is 7.0)" in reasons[0]
    if smi == "470-v100":
        assert reasons[0].startswith("CUDA 13 needs driver 580.65.06 or newer (the host has 470.182.03)")


class FakeResolver:
    """Answers like uv would for a few framework sets: PyPI's torch is CUDA 13; tensorflow is CUDA 12
    only; jax has cuda12 and cuda13 extras; torch's vendor index has cu128 and cu126 for CUDA 12."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def __call__(self, job: Job) -> Resolution:
        self.jobs.append(job)
        wanted = " ".join(r for tier in job.tiers.values() for r in tier)
        packages: list[Package] = [package("numpy", "2.4.6", "base")]
        roots = {"numpy": frozenset({"numpy"})}
        if "torch" in wanted:
            index = job.vendor.get("torch")
            if index is None:
                chosen = TORCH_PYPI
            elif index.endswith("/cpu"):
                chosen = [package("torch", "2.13.0+cpu")]
            elif index.endswith(("/cu128", "/cu126")):
                chosen = [dataclasses.replace(p, version=p.version.replace("cu128", index[-5:])) for p in TORCH_CU128]
            else:
                raise NoSolution(f"Because there is no version of torch on {index}, ...")
            packages += chosen
            roots |= {p.name: frozenset({"torch"}) for p in chosen}
        if "tensorflow" in wanted:
            packages += TF_CUDA
            roots |= {p.name: frozenset({"tensorflow"}) for p in TF_CUDA}
        warnings: tuple[str, ...] = ()
        if "jax[cuda13]==0.6" in wanted:
            warnings = ("warning: The package `jax==0.6.2` does not have an extra named `cuda13`",)
            packages += [package("jax", "0.6.2")]
        elif "jax[cuda13]" in wanted:
            packages += JAX13
        elif "jax[cuda12]" in wanted:
            packages += [package("jax", "0.10.2"), package("jax-cuda12-plugin", "0.10.2")]
        return Resolution(tuple(packages), warnings, roots)


@pytest.fixture
def cuda_project(make_project):
    def make(frameworks: str, cuda: str = "auto"):
        text = f'device = "cuda"\ncuda = "{cuda}"\nframeworks = {frameworks}\n[user]\nuid = 4321\ngid = 4321\n'
        return load_spec(make_project(text))

    return make


class Steps:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, message: str) -> None:
        self.lines.append(message)


def locked(spec, smi: str | None, resolver: FakeResolver) -> Variant:
    gpus = gpu.parse_nvidia_smi(SMI[smi]) if smi else None
    return lock.ensure(spec, None, Steps(), gpus=gpus, resolver=resolver)


def test_auto_on_a_580_driver_takes_pytorch_s_cuda_13_from_pypi(cuda_project):
    variant = locked(cuda_project('["pytorch"]'), "580-h100", FakeResolver())
    assert (variant.key, variant.cuda, variant.min_driver) == ("cuda13", "13.0", "580.65.06")
    assert variant.driver == "580.65.06"


def test_auto_on_a_550_driver_takes_cuda_12_from_the_vendor_index(cuda_project):
    resolver = FakeResolver()
    variant = locked(cuda_project('["pytorch"]'), "550-l4", resolver)
    assert (variant.key, variant.cuda) == ("cuda12", "12.8")
    tried = [job.vendor.get("torch", "PyPI") for job in resolver.jobs]
    assert tried[0] == "PyPI", "PyPI first: its torch is CUDA 13, which this driver cannot run"
    assert tried[-1] == "https://download.pytorch.org/whl/cu128"
    assert tried[1] == "https://download.pytorch.org/whl/cu124", "what the driver fully supports comes first"


def test_auto_with_tensorflow_falls_back_to_cuda_12_without_trying_vendor_indexes(cuda_project):
    resolver = FakeResolver()
    variant = locked(cuda_project('["tensorflow"]'), "580-h100", resolver)
    assert variant.key == "cuda12"
    assert len(resolver.jobs) == 2, "CUDA 13 once from PyPI (tensorflow brings CUDA 12), then CUDA 12"


def test_volta_gpus_on_a_580_driver_get_cuda_12(cuda_project):
    assert locked(cuda_project('["jax"]'), "580-v100", FakeResolver()).key == "cuda12"


def test_jax_gets_its_cuda13_extra(cuda_project):
    resolver = FakeResolver()
    assert locked(cuda_project('["jax"]'), "580-h100", resolver).key == "cuda13"
    assert "jax[cuda13]==0.10.*" in resolver.jobs[0].tiers["heavy"]


def test_an_explicit_cuda_that_does_not_fit_names_what_would(cuda_project):
    with pytest.raises(DeepboxError) as info:
        locked(cuda_project('["tensorflow"]', cuda="13.0"), None, FakeResolver())
    message = info.value.message
    assert message.startswith('cuda = "13.0" does not fit these frameworks (CUDA 13: tensorflow brings CUDA 12)')
    assert 'CUDA 12 resolves: set cuda = "12" or "auto"' in message


def test_a_missing_extra_is_refused_not_locked_as_a_cpu_build(cuda_project):
    with pytest.raises(DeepboxError, match=r"does not have an extra named `cuda13` \(it would install a CPU build\)"):
        locked(cuda_project('["jax==0.6.*"]', cuda="13"), None, FakeResolver())


def test_no_major_fits_an_old_driver(cuda_project):
    with pytest.raises(DeepboxError) as info:
        locked(cuda_project('["pytorch"]'), "470-v100", FakeResolver())
    assert "CUDA 13 needs driver 580.65.06" in info.value.message
    assert "CUDA 11: " in info.value.message


# The lock file, freshness, --check, ensure ----------------------------------------------------------


@pytest.fixture
def cpu_project(make_project):
    return make_project('frameworks = ["tensorflow", "pytorch"]\npip = ["rich"]\n[user]\nuid = 4321\ngid = 4321\n')


def test_lock_file_round_trip_and_check(cpu_project):
    spec = load_spec(cpu_project)
    assert lock.check(spec) == [f"{lock.LOCK_FILE} is missing: run `deepbox lock` and commit it."]
    first = lock.ensure(spec, None, Steps(), resolver=FakeResolver())
    assert lock.read(cpu_project) == {"cpu": first}
    assert lock.check(spec) == []
    text = (cpu_project / lock.LOCK_FILE).read_text()
    assert text.startswith("# deepbox.lock: exactly what box 'proj' installs")

    # The same frameworks in another order, or by their aliases: the same lock.
    (cpu_project / "deepbox.toml").write_text(
        'frameworks = ["torch", "tf"]\npip = ["rich"]\n[user]\nuid = 4321\ngid = 4321\n'
    )
    assert lock.check(load_spec(cpu_project)) == []

    (cpu_project / "deepbox.toml").write_text('frameworks = ["pytorch"]\n[user]\nuid = 4321\ngid = 4321\n')
    (problem,) = lock.check(load_spec(cpu_project))
    assert "(cpu) no longer matches deepbox.toml" in problem


def test_a_fresh_lock_is_used_without_resolving_and_frozen_refuses_a_stale_one(cpu_project):
    spec = load_spec(cpu_project)
    resolver = FakeResolver()
    first = lock.ensure(spec, None, Steps(), resolver=resolver)
    assert lock.ensure(spec, None, Steps(), resolver=resolver) == first
    assert len(resolver.jobs) == 1

    (cpu_project / "requirements.txt").write_text("tqdm\n")
    changed = load_spec(cpu_project)
    with pytest.raises(DeepboxError, match=r"stale .* --frozen forbids locking again"):
        lock.ensure(changed, None, Steps(), resolver=resolver, frozen=True)
    steps = Steps()
    second = lock.ensure(changed, None, steps, resolver=resolver)
    assert resolver.jobs[-1].preferences == first.pins, "locked versions are kept where they still fit"
    assert resolver.jobs[-1].requirements_file == b"tqdm\n"
    assert second.exclude_newer >= first.exclude_newer
    assert steps.lines[-1].startswith("Locked cpu (")


def test_upgrade_resolves_anew(cpu_project):
    spec = load_spec(cpu_project)
    resolver = FakeResolver()
    lock.ensure(spec, None, Steps(), resolver=resolver)
    lock.ensure(spec, None, Steps(), resolver=resolver, upgrade=("numpy",))
    assert len(resolver.jobs) == 2 and resolver.jobs[-1].upgrade == ("numpy",)


def test_what_moved_is_said_in_short():
    before = Variant("cpu", "c", "3.11", "p", "", "", "", "t", "uv", (package("numpy", "2.4.5"), package("six", "1")))
    after = dataclasses.replace(before, packages=(package("numpy", "2.4.6"), package("rich", "15.0.0")))
    assert lock.changes(before, after) == ["numpy 2.4.5 -> 2.4.6", "+ rich 15.0.0", "- six 1"]
    assert lock.summary([str(n) for n in range(8)], limit=3) == "0, 1, 2 and 5 more"


def test_the_platform_follows_the_base_s_glibc():
    from deepbox.baseimage import BaseFacts

    assert lock.platform_for(BaseFacts("x", glibc="2.36")) == "x86_64-manylinux_2_36"
    assert lock.platform_for(BaseFacts("x", glibc="2.27")) == "x86_64-manylinux_2_17"
    assert lock.platform_for(BaseFacts("x", glibc="2.41", arch="aarch64")) == "aarch64-manylinux_2_40"
    assert lock.platform_for(BaseFacts("x", glibc="2.30")) == "x86_64-manylinux_2_28"


def test_uv_errors_become_one_sentence():
    job = Job("3.11", "x86_64-manylinux_2_36", {}, None, {"torch": "https://download.pytorch.org/whl/cu129"},
              resolver.PYPI, (), (), provided=(), exclude_newer="2026-01-01T00:00:00Z")  # fmt: skip
    unreachable = resolver._uv_error(
        "error: Failed to fetch: `https://download.pytorch.org/whl/cu129/torch/`\n  cause: dns error\n", job
    )
    assert unreachable.message.startswith("The package index https://download.pytorch.org/whl/cu129 cannot be reached")
    assert "framework_indexes = false" in unreachable.message
    unsolvable = resolver._uv_error(
        "  x No solution found when resolving dependencies:\n  `-> Because the requested Python version (>=3.11) "
        "does not satisfy Python>=3.12 and deepbox-box depends on jax>=0.11, we can conclude that your "
        "requirements are unsatisfiable.\n",
        job,
    )
    assert isinstance(unsolvable, NoSolution)
    assert unsolvable.message.startswith("The box's packages do not resolve for Python 3.11 on x86_64-manylinux_2_36: ")
    assert "Because the requested Python version" in unsolvable.message


def test_doctor_says_the_lock_state_and_the_cuda_choice(cuda_project):
    spec = cuda_project('["pytorch"]')
    assert doctor.lock_finding(spec, {}, lock.config_digest(spec)).level == "warning"
    variant = locked(spec, "580-h100", FakeResolver())
    variants = lock.read(spec.project)
    assert doctor.lock_finding(spec, variants, lock.config_digest(spec)).level == "ok"
    fits = doctor.cuda_finding(spec, variants, gpu.parse_nvidia_smi(SMI["580-h100"]))
    assert fits.level == "ok" and fits.message == (
        "cuda13 in the lock: NVIDIA driver 580.65.06 runs CUDA 13.0 (needs 580.65.06 or newer)."
    )
    old = doctor.cuda_finding(spec, variants, gpu.parse_nvidia_smi(SMI["550-l4"]))
    assert old.level == "warning" and "cuda13, which driver 550.54.15 cannot run" in old.message
    assert "locks CUDA 12" in old.message
    assert variant.key == "cuda13"


def test_doctor_warns_when_the_driver_runs_the_locked_cuda_only_by_minor_compatibility(cuda_project):
    spec = cuda_project('["tensorflow"]')
    variant = locked(spec, "550-l4", FakeResolver())
    assert (variant.key, variant.cuda) == ("cuda12", "12.9")
    finding = doctor.cuda_finding(spec, lock.read(spec.project), gpu.parse_nvidia_smi(SMI["550-l4"]))
    assert finding.level == "warning" and "only through minor-version compatibility" in finding.message
