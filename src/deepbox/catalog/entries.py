"""Every catalog entry, one record each: every module Deepo shipped, plus what ML users pick today.

Adding a framework is adding a record here. Versions are release series checked against PyPI (or
Debian) when the record was written; `releases` lists the series the catalog knows, oldest first,
with the Pythons each has wheels for. Entries that cannot work on a current Python say why in
`refusal` and name the modern `replacement`.
"""

from __future__ import annotations

from deepbox.catalog.model import Framework, Release

PYTORCH_INDEX = "https://download.pytorch.org/whl/{cu}"
PADDLE_INDEX = "https://www.paddlepaddle.org.cn/packages/stable/{cu}/"
# GPU checks return how many GPUs the framework sees (a count), or whether it sees one (a bool).
TORCH_GPU = "m.cuda.device_count()"


def _series(first: int, last: int, major: int = 2, **python: tuple[str, str | None]) -> tuple[Release, ...]:
    """Releases major.first .. major.last; python={'2.5': ('3.9', '3.13')} sets ranges from that series on."""
    releases = []
    current: tuple[str, str | None] = ("3.8", None)
    for minor in range(first, last + 1):
        key = f"{major}.{minor}"
        current = python.get(f"v{major}_{minor}", current)
        releases.append(Release(key, *current))
    return tuple(releases)


ENTRIES: tuple[Framework, ...] = (
    # The scientific base Deepo put in every image --------------------------------------------------
    Framework(
        "numpy",
        "N-dimensional arrays (its version is left to the frameworks that need it)",
        "numpy",
        pip=("numpy",),
        tier="base",
    ),
    Framework("scipy", "scientific computing", "scipy", pip=("scipy",), depends=("numpy",), tier="base"),
    Framework("pandas", "data frames", "pandas", pip=("pandas",), depends=("numpy",), tier="base"),
    Framework(
        "matplotlib",
        "plotting",
        "matplotlib",
        pip=("matplotlib",),
        depends=("numpy",),
        tier="base",
        version="3.10",
        releases=(Release("3.8", "3.9"), Release("3.9", "3.9"), Release("3.10", "3.10"), Release("3.11", "3.11")),
    ),
    Framework(
        "scikit-image",
        "image processing",
        "skimage",
        pip=("scikit-image",),
        depends=("numpy",),
        aliases=("skimage",),
        tier="base",
    ),
    Framework("tqdm", "progress bars", "tqdm", pip=("tqdm",), tier="base"),
    Framework("cython", "C extensions for Python", "Cython", pip=("cython",), tier="base"),
    # Deep-learning frameworks (heavy: their own layer, early) ----------------------------------------
    Framework(
        "pytorch",
        "PyTorch (the CPU build, or the CUDA build on a cuda box)",
        "torch",
        pip=("torch",),
        depends=("numpy",),
        aliases=("torch",),
        tier="heavy",
        version="2.13",
        releases=_series(0, 14, v2_0=("3.8", "3.11"), v2_2=("3.8", "3.12"), v2_5=("3.9", "3.13"), v2_9=("3.10", None)),
        cpu_index_url=PYTORCH_INDEX.format(cu="cpu"),
        cuda_index_url=PYTORCH_INDEX,
        cuda_on_pypi=True,  # PyPI's Linux torch is a CUDA build; other CUDA versions are on the vendor index
        gpu_check=TORCH_GPU,
    ),
    Framework(
        "tensorflow",
        "TensorFlow 2 (tensorflow-cpu, or tensorflow[and-cuda] with its own CUDA libraries)",
        "tensorflow",
        pip=("tensorflow-cpu",),
        cuda_pip=("tensorflow[and-cuda]",),
        dists=("tensorflow-gpu", "tf-nightly"),
        depends=("numpy",),
        aliases=("tf",),
        tier="heavy",
        version="2.21",
        releases=_series(
            12,
            21,
            v2_12=("3.8", "3.11"),
            v2_14=("3.9", "3.11"),
            v2_16=("3.9", "3.12"),
            v2_18=("3.9", "3.12"),
            v2_20=("3.9", "3.13"),
        ),
        gpu_check="len(m.config.list_physical_devices('GPU'))",
        ports=(6006,),
    ),
    Framework(
        "jax",
        "JAX (jax[cuda12] or jax[cuda13] on a cuda box: CUDA libraries from pip)",
        "jax",
        pip=("jax",),
        cuda_pip=("jax[cuda{major}]",),
        depends=("numpy",),
        tier="heavy",
        version="0.10",
        releases=(*(Release("0.4", "3.9", "3.13"),), *(Release(f"0.{n}", "3.10", None) for n in range(5, 11))),
        gpu_check="sum(d.platform == 'gpu' for d in m.devices())",
    ),
    Framework(
        "paddlepaddle",
        "PaddlePaddle (paddlepaddle-gpu from Paddle's own index on a cuda box)",
        "paddle",
        pip=("paddlepaddle",),
        cuda_pip=("paddlepaddle-gpu",),
        depends=("numpy",),
        apt=("libgomp1",),
        aliases=("paddle",),
        tier="heavy",
        version="3.3",
        releases=(Release("2.6", "3.8", "3.12"), *(Release(f"3.{n}", "3.9", None) for n in range(0, 4))),
        cuda_index_url=PADDLE_INDEX,
        gpu_check="m.device.cuda.device_count() if m.device.is_compiled_with_cuda() else 0",
    ),
    Framework(
        "mxnet",
        "Apache MXNet 1.9 (retired to the Apache Attic in 2023; CPU only, numpy<1.24)",
        "mxnet",
        pip=("mxnet", "numpy<1.24"),
        dists=("mxnet-mkl", "mxnet-cu112", "mxnet-cu110", "mxnet-cu102", "mxnet-cu101"),
        apt=("libgomp1", "libquadmath0"),
        depends=("numpy",),
        tier="heavy",
        version="1.9",
        releases=(Release("1.9", "3.7", "3.11"),),
        cuda_supported=False,
        replacement="pytorch",
        notes="mxnet-cu* wheels stop at CUDA 11.2 and Python 3.8; numpy 1.24 removed np.bool, which mxnet uses.",
    ),
    Framework(
        "chainer",
        "Chainer 7.8 (in maintenance since 2019; numpy<2; cupy-cuda12x or cupy-cuda13x on a cuda box)",
        "chainer",
        pip=("chainer", "numpy<2"),  # chainer reads np.sctypes, which NumPy 2.0 removed
        cuda_pip=("chainer", "numpy<2", "cupy-cuda{major}x"),
        depends=("numpy",),
        build_constraints=("setuptools<81",),
        tier="heavy",
        version="7.8",
        releases=(Release("7.8", "3.5", None),),
        gpu_check="m.backends.cuda.available",
        replacement="pytorch",
    ),
    # Keras 3 and the libraries on top of the frameworks ----------------------------------------------
    Framework(
        "keras",
        "Keras 3 (backend: tensorflow, jax or pytorch, whichever the box has; jax when none)",
        "keras",
        pip=("keras",),
        version="3.15",
        releases=tuple(Release(f"3.{n}", "3.9" if n < 9 else "3.10", None) for n in range(0, 16)),
    ),
    Framework(
        "sonnet",
        "DeepMind Sonnet 2 (on TensorFlow)",
        "sonnet",
        pip=("dm-sonnet", "dm-tree"),
        depends=("tensorflow",),
        aliases=("dm-sonnet",),
        version="2.0",
        releases=(Release("2.0", "3.6", None),),
    ),
    Framework(
        "scikit-learn",
        "classical machine learning",
        "sklearn",
        pip=("scikit-learn",),
        depends=("numpy",),
        aliases=("sklearn",),
        version="1.9",
        releases=(
            Release("1.3", "3.8", "3.12"),
            Release("1.4", "3.9", "3.12"),
            Release("1.5", "3.9", "3.13"),
            Release("1.6", "3.9", "3.13"),
            Release("1.7", "3.10", None),
            Release("1.8", "3.10", None),
            Release("1.9", "3.11", None),
        ),
    ),
    Framework(
        "xgboost",
        "gradient boosting (xgboost-cpu on a cpu box: no bundled NCCL)",
        "xgboost",
        pip=("xgboost-cpu",),
        cuda_pip=("xgboost",),
        depends=("numpy",),
        version="3.2",
        releases=(
            Release("2.1", "3.8", None),
            Release("3.0", "3.10", None),
            Release("3.1", "3.10", None),
            Release("3.2", "3.10", None),
        ),
        gpu_check="'cuda' in str(m.build_info().get('USE_CUDA', '')).lower() or bool(m.build_info().get('USE_CUDA'))",
    ),
    Framework(
        "lightgbm",
        "gradient boosting (CPU; the GPU build needs a source build)",
        "lightgbm",
        pip=("lightgbm",),
        apt=("libgomp1",),
        depends=("numpy",),
        version="4.7",
        releases=tuple(Release(f"4.{n}", "3.7" if n < 6 else "3.9", None) for n in range(0, 8)),
    ),
    Framework(
        "catboost",
        "gradient boosting on categorical features (CUDA support built into the wheel)",
        "catboost",
        pip=("catboost",),
        depends=("numpy",),
        version="1.2",
        releases=(Release("1.2", "3.8", None),),
    ),
    Framework(
        "onnx",
        "the ONNX model format",
        "onnx",
        pip=("onnx",),
        depends=("numpy",),
        version="1.23",
        releases=tuple(Release(f"1.{n}", "3.8" if n < 18 else "3.9", None) for n in range(14, 24)),
    ),
    Framework(
        "onnxruntime",
        "ONNX Runtime (onnxruntime-gpu with its CUDA and cuDNN libraries on a cuda box)",
        "onnxruntime",
        pip=("onnxruntime",),
        cuda_pip=("onnxruntime-gpu[cuda,cudnn]",),
        depends=("numpy",),
        version="1.30",
        releases=tuple(Release(f"1.{n}", "3.10", None) for n in range(16, 32)),
        gpu_check="'CUDAExecutionProvider' in m.get_available_providers()",
    ),
    Framework(
        "opencv",
        "OpenCV with GUI support (needs libGL; prefer opencv-headless in a box)",
        "cv2",
        pip=("opencv-python",),
        dists=("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
        apt=("libgl1", "libglib2.0-0"),
        depends=("numpy",),
        conflicts=("opencv-headless",),
        aliases=("cv2", "opencv-python"),
        version="4.14",
        releases=(
            Release("4.10", "3.7", None),
            Release("4.11", "3.7", None),
            Release("4.12", "3.7", None),
            Release("4.13", "3.7", None),
            Release("4.14", "3.7", None),
            Release("5.0", "3.7", None),
        ),
    ),
    Framework(
        "opencv-headless",
        "OpenCV without GUI libraries (the right one for servers and boxes)",
        "cv2",
        pip=("opencv-python-headless",),
        dists=("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
        depends=("numpy",),
        conflicts=("opencv",),
        aliases=("opencv-python-headless",),
        version="4.14",
        releases=(
            Release("4.10", "3.7", None),
            Release("4.11", "3.7", None),
            Release("4.12", "3.7", None),
            Release("4.13", "3.7", None),
            Release("4.14", "3.7", None),
            Release("5.0", "3.7", None),
        ),
    ),
    Framework(
        "transformers",
        "Hugging Face Transformers (+ datasets, accelerate) on PyTorch",
        "transformers",
        pip=("transformers", "datasets", "accelerate"),
        depends=("pytorch",),
        aliases=("huggingface", "hf"),
        version="5.18",
        releases=(
            *(Release(f"4.{n}", "3.9", None) for n in range(40, 58)),
            *(Release(f"5.{n}", "3.10", None) for n in range(0, 19)),
        ),
    ),
    # torchvision and torchaudio pin the exact torch they were built for: left unpinned, the installer
    # picks the release that matches the box's torch (from the same vendor index).
    Framework(
        "torchvision",
        "PyTorch's image datasets, models and transforms",
        "torchvision",
        pip=("torchvision",),
        depends=("pytorch",),
        cpu_index_url=PYTORCH_INDEX.format(cu="cpu"),
        cuda_index_url=PYTORCH_INDEX,
        cuda_on_pypi=True,
    ),
    Framework(
        "torchaudio",
        "PyTorch's audio I/O and transforms",
        "torchaudio",
        pip=("torchaudio",),
        depends=("pytorch",),
        cpu_index_url=PYTORCH_INDEX.format(cu="cpu"),
        cuda_index_url=PYTORCH_INDEX,
        cuda_on_pypi=True,
    ),
    Framework(
        "lightning",
        "PyTorch Lightning",
        "lightning",
        pip=("lightning",),
        depends=("pytorch",),
        aliases=("pytorch-lightning",),
        version="2.6",
        releases=tuple(Release(f"2.{n}", "3.9", None) for n in range(0, 7)),
    ),
    # Tools ----------------------------------------------------------------------------------------
    Framework(
        "tensorboard",
        "TensorBoard (port 6006)",
        "tensorboard",
        pip=("tensorboard",),
        tier="tool",
        version="2.21",
        releases=tuple(Release(f"2.{n}", "3.9", None) for n in range(14, 22)),
        ports=(6006,),
    ),
    Framework(
        "jupyter",
        "Jupyter Notebook 7 (port 8888)",
        "notebook",
        pip=("notebook",),
        tier="tool",
        aliases=("notebook",),
        version="7.6",
        releases=tuple(Release(f"7.{n}", "3.8" if n < 3 else "3.9", None) for n in range(0, 7)),
        ports=(8888,),
    ),
    Framework(
        "jupyterlab",
        "JupyterLab notebooks (`jupyter = true` runs it; port 8888)",
        "jupyterlab",
        pip=("jupyterlab",),
        tier="tool",
        aliases=("lab",),
        version="4.6",
        releases=tuple(Release(f"4.{n}", "3.8" if n < 3 else "3.9", None) for n in range(0, 7)),
        ports=(8888,),
    ),
    # Debian-packaged frameworks ---------------------------------------------------------------------
    Framework(
        "darknet",
        "Darknet (Debian's package: the darknet command; CPU only)",
        "deepbox_check_darknet",
        apt=("darknet",),
        tier="heavy",
        suites=("bookworm", "trixie"),
        cuda_supported=False,
        version_attr="__version__",
        notes="Debian builds darknet without CUDA; on a cuda box use a CUDA build of ultralytics or PyTorch.",
    ),
    Framework(
        "caffe",
        "BVLC Caffe 1.0 (Debian bullseye's caffe and python3-caffe; its Python is the system's 3.9)",
        "caffe",
        apt=("caffe", "python3-caffe"),
        tier="heavy",
        suites=("bullseye",),
        system_site_packages=True,
        cuda_supported=False,
        replacement="pytorch",
        notes="Only Debian bullseye and Ubuntu 22.04 still package Caffe; make the base with "
        "`deepbox base bootstrap --suite bullseye`.",
    ),
    Framework(
        "boost",
        "Boost C++ libraries (Debian's libboost-all-dev)",
        "deepbox_check_boost",
        apt=("libboost-all-dev",),
        tier="base",
    ),
    # Dead upstream: kept so that a Deepo user's name gets an answer, refused with the replacement -------
    Framework(
        "theano",
        "Theano (upstream dead since 2017)",
        "theano",
        status="refused",
        refusal="Theano's last release (1.0.5, 2020) fails to import on Python 3.11: it reads "
        "numpy.distutils' BLAS configuration (blas_opt_info), which NumPy builds for 3.11 no longer have; "
        "its development ended in 2017.",
        replacement="pytensor",
    ),
    Framework(
        "pytensor",
        "PyTensor, the maintained successor of Theano/Aesara",
        "pytensor",
        pip=("pytensor",),
        depends=("numpy",),
        apt=("g++",),
        version="3.0",
        releases=(Release("2.30", "3.10", None), Release("3.0", "3.11", None)),
    ),
    Framework(
        "lasagne",
        "Lasagne (on Theano; dead upstream)",
        "lasagne",
        status="refused",
        refusal="Lasagne's only PyPI release (0.1, 2015) imports Theano, which fails to import on "
        "Python 3.11; the project stopped in 2018.",
        replacement="keras",
    ),
    Framework(
        "cntk",
        "Microsoft Cognitive Toolkit (retired 2019)",
        "cntk",
        status="refused",
        refusal="CNTK was retired in 2019 and has no wheel for Python 3.7 or newer "
        "(PyPI has no installable file at all for Linux today).",
        replacement="onnxruntime",
    ),
    Framework(
        "torch7",
        "Lua Torch 7 (unmaintained since 2017)",
        "torch",
        status="refused",
        aliases=("lua-torch", "luatorch"),
        refusal="Lua Torch (torch7) is a Lua framework, unmaintained since 2017, with no package for "
        "Debian bookworm or any pip wheel; its successor is PyTorch.",
        replacement="pytorch",
    ),
    Framework(
        "caffe2",
        "Caffe2 (merged into PyTorch in 2018)",
        "caffe2",
        status="refused",
        refusal="Caffe2 was merged into PyTorch in 2018 and removed from its wheels in PyTorch 2.x; "
        "there is no separate caffe2 package.",
        replacement="pytorch",
    ),
)


# Presets, like Deepo's image tags: a name that stands for several entries.
PRESETS: dict[str, tuple[str, ...]] = {
    "scientific": ("numpy", "scipy", "pandas", "scikit-image", "scikit-learn", "matplotlib", "tqdm", "cython"),
    "all-cpu": (
        "scientific",
        "pytorch",
        "tensorflow",
        "jax",
        "keras",
        "onnx",
        "onnxruntime",
        "opencv-headless",
        "xgboost",
        "lightgbm",
        "transformers",
        "lightning",
        "tensorboard",
        "jupyterlab",
    ),
}
# `all` is the same set, in the builds of the box's device: CUDA builds on a cuda box. `all-cpu` keeps
# the promise of its name (Deepo's CPU tag): it is refused on a cuda box, where it would get CUDA builds.
PRESETS["all"] = PRESETS["all-cpu"]
CPU_PRESETS: dict[str, str] = {"all-cpu": "all"}  # CPU-only preset -> the one to use on a cuda box
