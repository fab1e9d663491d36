"""`load_model`: the one loader for built-in names, local directories and Hub repo ids."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .model import AgeGenderModel, ModelLoadError

WEIGHTS_DIR = Path(__file__).parent / "weights"

# Built-in names. A name maps to an embedded directory (shipped in the package) and/or a Hub
# repo that an environment variable can set; the embedded copy needs no network.
BUILTIN = {
    "custom": {"embedded": "custom", "env": "AGEGENDER_CUSTOM_REPO"},
    "custom-report": {"embedded": "custom-report", "env": "AGEGENDER_CUSTOM_REPORT_REPO"},
    "vgg16": {"embedded": None, "env": "AGEGENDER_VGG16_REPO"},
}


def _looks_like_repo_id(name: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", name))


def resolve_model_dir(model_id: str, revision: str | None = None, cache_dir=None, force_download: bool = False,
                      local_files_only: bool = False, token=None) -> Path:
    """A local directory holding the model: `model_id` itself, or a Hub snapshot of it."""
    path = Path(model_id)
    if path.is_dir():
        return path
    if not _looks_like_repo_id(model_id):
        raise ModelLoadError(f"{model_id!r} is neither a model directory nor a Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                      local_files_only=local_files_only, token=token,
                                      allow_patterns=["*.json", "*.keras", "*.md", "*.png", "*.csv"]))
    except Exception as exc:
        raise ModelLoadError(f"cannot fetch {model_id!r} from the Hugging Face Hub: {type(exc).__name__}: {exc}") from exc


def load_model(name: str = "custom", revision: str | None = None, token=None) -> AgeGenderModel:
    """Load a model by built-in name (`custom`, `custom-report`, `vgg16`), local directory or Hub repo id."""
    if name in BUILTIN:
        spec = BUILTIN[name]
        repo = os.environ.get(spec["env"])
        if repo:
            return AgeGenderModel.from_pretrained(repo, revision=revision, token=token)
        if spec["embedded"] and (WEIGHTS_DIR / spec["embedded"] / "model.keras").exists():
            return AgeGenderModel.from_directory(WEIGHTS_DIR / spec["embedded"])
        raise ModelLoadError(
            f"no trained {name!r} model is available here: train one with "
            f"`python -m training.train --model {name.split('-')[0]} --out runs/{name}` and load that directory, "
            f"or set {spec['env']}=<hub repo id>"
        )
    if Path(name).is_dir():
        return AgeGenderModel.from_directory(name)
    return AgeGenderModel.from_pretrained(name, revision=revision, token=token)
