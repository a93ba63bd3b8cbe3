import importlib
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CIFAR10_JPEG = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def ci() -> bool:
    """Whether this run is CI (CI=true, as CI services and .ci/run set it)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


IN_CI = ci()


def _missing(reason: str):
    """Skip a test whose peer library or data set is absent; under CI=true fail it, so a broken install shows."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing peer or data set is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    """Under ``tools/mutation.py`` for code every model runs alike (its ``SAMPLED`` modules), a test run over
    every registered model runs only on the models ``CNNZOO_MUTATION_MODELS`` names, one of each family."""
    sample = os.environ.get("CNNZOO_MUTATION_MODELS")
    if not sample:
        return
    import cnnzoo

    every, keep = set(cnnzoo.list_models()), set(sample.split(","))
    models = {item: set(item.nodeid.partition("[")[2].removesuffix("]").split("-")) & every for item in items}
    per_test: dict[str, set[str]] = {}
    for item in items:
        per_test.setdefault(item.nodeid.partition("[")[0], set()).update(models[item])
    dropped = [i for i in items if len(per_test[i.nodeid.partition("[")[0]]) == len(every) and not models[i] & keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = set(dropped)
        items[:] = [i for i in items if i not in gone]


def require_peer(name: str):
    """Import the peer library ``name`` (timm, torchvision, pretrainedmodels.models.polynet, onnxruntime, ...)
    for the test that calls this; the test skips without it, or fails under CI=true."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        _missing(f"peer library {name} is not installed: {e}")


def require_shared_data(path: Path = CIFAR10_JPEG) -> Path:
    """The development data beside the checkout (../shared/data); skip without it, fail under CI=true."""
    if not path.is_file():
        _missing(f"development data not found at {path} (../shared/data beside the project)")
    return path


def recipe(name: str) -> Path:
    """A training recipe by file name: packaged (src/cnnzoo/configs) or, before that move, at the top (configs)."""
    for folder in (ROOT / "src" / "cnnzoo" / "configs", ROOT / "configs"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no recipe {name} in src/cnnzoo/configs or configs")


def recipes() -> list[Path]:
    """Every training recipe the project ships."""
    for folder in (ROOT / "src" / "cnnzoo" / "configs", ROOT / "configs"):
        found = sorted(folder.glob("*.yaml"))
        if found:
            return found
    return []


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never write to ~/.cache/cnnzoo and never reach for the network."""
    saved = {k: os.environ.get(k) for k in ("CNNZOO_CACHE", "CNNZOO_OFFLINE")}
    os.environ["CNNZOO_CACHE"] = str(tmp_path_factory.mktemp("cnnzoo-cache"))
    os.environ["CNNZOO_OFFLINE"] = "1"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def cifar10_jpeg(tmp_path_factory) -> Path:
    """The first 40 CIFAR-10 JPEGs of every class and split (800 files), unpacked once per session."""
    archive = require_shared_data(CIFAR10_JPEG)
    out = tmp_path_factory.mktemp("cifar10-jpeg")
    with tarfile.open(archive) as tar:
        members = [m for m in tar if m.isfile() and m.name.endswith(".jpg") and int(Path(m.name).stem) < 40]
        tar.extractall(out, members=members, filter="data")
    return out / "cifar10"


def write_image(path: Path, size=(40, 40), mode="RGB", seed=0, fmt=None) -> Path:
    """A random image of ``size`` in ``mode`` (RGB, RGBA, L, CMYK, ...) saved at ``path``."""
    rng = np.random.default_rng(seed)
    channels = len(Image.new(mode, (1, 1)).getbands())
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, "L" if channels == 1 else None)
    if channels > 1 and image.mode != mode:
        image = Image.frombytes(mode, size, pixels.tobytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def make_folder(root: Path, classes=("cat", "dog"), per_class=(6, 3), size=(40, 40)) -> Path:
    """A clean ImageFolder tree: train/<class>/ with per_class[0] images, val/<class>/ with per_class[1]."""
    seed = 0
    for split, count in zip(("train", "val"), per_class):
        for name in classes:
            for i in range(count):
                seed += 1
                write_image(root / split / name / f"{i:03d}.jpg", size=size, seed=seed)
    return root


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    """A folder data set holding every kind of bad input of issue 8, made on the fly."""
    root = make_folder(tmp_path / "bad", classes=("cat", "dog", "fish"))
    train = root / "train"
    good = (train / "cat" / "000.jpg").read_bytes()
    (train / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (train / "cat" / "zero.jpg").write_bytes(b"")
    (train / "dog" / "notes.jpg").write_text("these are not pixels\n")
    write_image(train / "dog" / "alpha.png", mode="RGBA", seed=101)
    write_image(train / "dog" / "gray.jpg", mode="L", seed=102)
    write_image(train / "fish" / "cmyk.jpg", mode="CMYK", seed=103)
    (train / "eel").mkdir()  # an empty class folder
    for path in (root / "val" / "fish").iterdir():  # fish: present in train, missing in val
        path.unlink()
    (root / "val" / "fish").rmdir()
    return root


def meta_model(name: str, **kwargs):
    """A registered model built on the meta device (no memory, no init cost)."""
    import torch

    import cnnzoo

    with torch.device("meta"):
        return cnnzoo.create_model(name, **kwargs)


def feature_shapes(name: str, size: int, **kwargs):
    """C x H x W of each ``feature_info`` module's output at ``size`` (one traced pass on the meta device)."""
    from cnnzoo.analysis.complexity import meta_model as analysis_meta_model
    from cnnzoo.analysis.complexity import trace

    model = analysis_meta_model(name, **kwargs)
    names = [info["module"] for info in model.feature_info]
    shapes = {call.name: call.output_shape[1:] for call in trace(model, size).calls if call.name in names}
    return [shapes[n] for n in names], model.feature_info


def assert_built_as_registered(cls, name: str, dropout: float) -> None:
    """``cls()``, with no arguments, is the registered ``name``: the same tensors (1000 classes, RGB input, the
    paper's widths) and the paper's dropout before the classifier. A family's own defaults are otherwise
    never exercised: ``create_model`` passes ``num_classes`` and ``in_chans`` itself."""
    import torch

    with torch.device("meta"):
        model = cls()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in meta_model(name).state_dict().items()}
    assert model.num_classes == 1000 and model.get_classifier().out_features == 1000
    assert next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels == 3
    assert model.dropout.p == dropout


def assert_every_conv_built_by_conv_block(cls, **kwargs) -> None:
    """``cls(conv_block=...)`` builds every convolution through the given builder (a subclass of the default
    ``ConvBnAct`` here), so a user's conv-BN-activation reaches every module, the stem and the reductions too."""
    import torch

    from cnnzoo.layers import ConvBnAct

    class Tagged(ConvBnAct):
        pass

    with torch.device("meta"):
        model = cls(conv_block=Tagged, **kwargs)
    convs = {id(m) for m in model.modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs and convs == {id(m.conv) for m in model.modules() if isinstance(m, Tagged)}


def assert_warned_at(warning, path: str) -> None:
    """``warning`` points at a line of ``path`` (a test's own ``__file__``): its caller's, as ``stacklevel`` means.

    Under mutmut, the trampoline it wraps around each mutated function adds a frame, so the warning lands in
    that trampoline: accepted there (TESTING.md lists the stacklevel mutants, killed by the plain test run).
    """
    assert warning.filename == path or "mutmut" in Path(warning.filename).parts, warning.filename
