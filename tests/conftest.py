"""Shared fixtures: synthetic UTKFace-style data and a tiny untrained model (no network, no ../shared)."""

from __future__ import annotations

import io
import os
import tarfile

import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests never see the user's Hugging Face cache, agegender cache or model overrides.
_isolated = tempfile.mkdtemp(prefix="agegender-tests-")
os.environ["HF_HOME"] = os.path.join(_isolated, "hf")
os.environ["AGEGENDER_CACHE"] = os.path.join(_isolated, "agegender")
for _var in ("AGEGENDER_CUSTOM_REPO", "AGEGENDER_CUSTOM_REPORT_REPO", "AGEGENDER_VGG16_REPO", "HF_TOKEN"):
    os.environ.pop(_var, None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def synthetic_face(seed: int, size: int = 48) -> bytes:
    """A small random JPEG standing in for a face crop (never a real UTKFace image)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def synthetic_names(n: int) -> list[str]:
    """Well-formed UTKFace file names covering ages, both genders and all races."""
    return [f"{(i * 7) % 100 + 1}_{i % 2}_{i % 5}_2017011{i % 10}1234567{i % 100:02d}.jpg.chip.jpg" for i in range(n)]


@pytest.fixture
def utk_folder(tmp_path):
    """A folder of 60 synthetic UTKFace-named JPEGs."""
    root = tmp_path / "UTKFace"
    root.mkdir()
    for i, name in enumerate(synthetic_names(60)):
        (root / name).write_bytes(synthetic_face(i))
    return root


@pytest.fixture
def utk_archive(tmp_path, utk_folder):
    """The synthetic folder packed like the official archive (UTKFace/<name>)."""
    path = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(utk_folder, arcname="UTKFace")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A small untrained custom CNN saved as an AgeGenderModel directory (fast to build and run)."""
    from agegender.model import AgeGenderModel
    from agegender.models import CustomCNNConfig, build_custom_cnn

    cfg = CustomCNNConfig(input_size=32, trunk=((4, 3), (8, 3)), padding="same", head="distribution", l2=0.0)
    model = AgeGenderModel(build_custom_cnn(cfg), {"name": "tiny-test", "architecture": "custom",
                                                   "recipe": {"model": cfg.__dict__}, "tta_flip": True})
    path = tmp_path_factory.mktemp("models") / "tiny"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """The Space served on localhost with the launch options of `python app.py`, both columns on the tiny model."""
    import app

    env = {"AGEGENDER_CUSTOM_REPO": str(tiny_model_dir), "AGEGENDER_VGG16_REPO": str(tiny_model_dir)}
    demo = app.build_demo(app.Space({slot.key: app.load_slot(slot, env) for slot in app.SPACE_MODELS}))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options(host="127.0.0.1"))
    yield url
    demo.close()
