"""`AgeGenderModel`: a trained network plus its preprocessing contract, with Hub save/load.

A model directory (local or a Hub repo) holds `model.keras` (Keras 3 native format, loaded with
`safe_mode=True`) and `config.json`: the preprocessing contract (input size, RGB order, pixel
range), the labels, the calibration, and where the model came from.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from huggingface_hub import ModelCard, ModelHubMixin
from PIL import Image

from .pipeline import resize_face

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
FORMAT = "agegender/1"
LABELS = ("male", "female")


class ModelLoadError(RuntimeError):
    """A model that cannot be found, fetched or trusted; the message says what to do."""


def contract(input_size: int) -> dict:
    """The preprocessing every agegender model expects: RGB uint8 crops resized to `input_size`."""
    return {"input_size": input_size, "channel_order": "RGB", "pixel_range": [0, 255], "resize": "PIL bilinear",
            "scaling": "inside the model"}


class AgeGenderModel(
    ModelHubMixin,
    library_name="agegender",
    tags=["age-estimation", "gender-classification", "keras", "utkface"],
    license="cc-by-nc-4.0",
    pipeline_tag="image-classification",
    repo_url="https://github.com/agegender/agegender",
):
    """A Keras age/gender network with `from_pretrained`, `save_pretrained` and `push_to_hub`."""

    def __init__(self, keras_model: Any = None, config: dict | None = None):
        if keras_model is None:
            raise ModelLoadError("AgeGenderModel needs a Keras model; use AgeGenderModel.from_pretrained(...)")
        self.keras_model = keras_model
        self.config = dict(config or {})
        self.config.setdefault("format", FORMAT)
        self.config.setdefault("labels", {"gender": list(LABELS)})
        self.config.setdefault("preprocessing", contract(int(keras_model.input_shape[1])))
        self._hub_mixin_config = self.config  # what save_pretrained writes to config.json

    # ----- properties of the contract ---------------------------------------------------------
    @property
    def input_size(self) -> int:
        return int(self.config["preprocessing"]["input_size"])

    @property
    def name(self) -> str:
        return self.config.get("name", self.keras_model.name)

    # ----- inference ---------------------------------------------------------------------------
    def preprocess(self, faces: Sequence) -> np.ndarray:
        """RGB face crops (PIL images or HxWx3 uint8 arrays) as a float32 batch at the input size."""
        batch = np.empty((len(faces), self.input_size, self.input_size, 3), dtype=np.float32)
        for i, face in enumerate(faces):
            if isinstance(face, np.ndarray):
                if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
                    raise ValueError(f"face {i}: expected an HxWx3 uint8 RGB array, got {face.dtype} {face.shape}")
                face = Image.fromarray(face)
            elif not isinstance(face, Image.Image):
                raise TypeError(f"face {i}: expected a PIL image or numpy array, got {type(face).__name__}")
            batch[i] = resize_face(face, self.input_size)
        return batch

    def predict_batch(self, x: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Raw calibrated outputs for a preprocessed batch: `age`, `p_female` and `age_std` arrays."""
        x = np.asarray(x, dtype=np.float32)
        tta = bool(self.config.get("tta_flip", False))
        ages, probs, stds = [], [], []
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size]
            inp = np.concatenate([chunk, chunk[:, :, ::-1]]) if tta else chunk
            out = self.keras_model.predict_on_batch(inp)
            age = np.asarray(out["age"], dtype=np.float64).reshape(-1)
            p = np.asarray(out["gender"], dtype=np.float64).reshape(-1)
            std = None
            if "age_dist" in out:
                dist = np.asarray(out["age_dist"], dtype=np.float64)
                if tta:
                    dist = (dist[: len(chunk)] + dist[len(chunk):]) / 2
                grid = np.arange(dist.shape[1])
                mean = dist @ grid
                std = np.sqrt(np.maximum(dist @ grid**2 - mean**2, 0))
            if tta:
                age = (age[: len(chunk)] + age[len(chunk):]) / 2
                p = (p[: len(chunk)] + p[len(chunk):]) / 2
            ages.append(age)
            probs.append(p)
            stds.append(std if std is not None else np.full(len(chunk), np.nan))
        if not ages:
            return {"age": np.zeros(0), "p_female": np.zeros(0), "age_std": np.zeros(0)}
        p = self._calibrate_gender(np.concatenate(probs))
        age = np.maximum(np.concatenate(ages), 0.0)
        return {"age": age, "p_female": p, "age_std": np.concatenate(stds)}

    def _calibrate_gender(self, p: np.ndarray) -> np.ndarray:
        """Temperature scaling fitted on validation data at training time (1.0 = unchanged)."""
        t = float(self.config.get("calibration", {}).get("gender_temperature", 1.0))
        if t == 1.0:
            return p
        logit = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))
        return 1 / (1 + np.exp(-logit / t))

    def age_interval(self, age: float, age_std: float) -> tuple[float, float]:
        """An ~80% interval for the true age, from the calibration fitted on validation data."""
        cal = self.config.get("calibration", {})
        if not math.isnan(age_std) and "age_std_scale" in cal:
            half = 1.2816 * cal["age_std_scale"] * age_std
        else:
            half = float(cal.get("age_abs_error_q80", 8.0))
        return max(0.0, age - half), age + half

    def predict(self, faces: Sequence, batch_size: int = 64) -> list[dict]:
        """Per face: `age` (years), `p_female`, `gender` ('male'/'female'), `confidence` and `age_interval`."""
        if len(faces) == 0:
            return []
        raw = self.predict_batch(self.preprocess(faces), batch_size)
        out = []
        for age, p, std in zip(raw["age"], raw["p_female"], raw["age_std"]):
            female = bool(p >= 0.5)
            lo, hi = self.age_interval(float(age), float(std))
            out.append({
                "age": round(float(age), 2),
                "p_female": round(float(p), 4),
                "gender": LABELS[int(female)],
                "confidence": round(float(p if female else 1 - p), 4),
                "age_interval": [round(lo, 1), round(hi, 1)],
            })
        return out

    # ----- Hub mixin hooks ----------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        save_directory = Path(save_directory)
        self.keras_model.save(save_directory / MODEL_FILE)
        (save_directory / CONFIG_FILE).write_text(json.dumps(self.config, indent=2, default=str))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
    ) -> "AgeGenderModel":
        """Load from a local directory or a Hub repo id (pin with `revision`) in Keras safe mode.

        Replaces the mixin's version, whose separate `config.json` download would bypass our checks: every
        failure (missing, private or gated repo, unknown revision, not an agegender repo, corrupt download,
        offline without a cached copy) raises `ModelLoadError` saying what to do, and an offline load
        from the cache logs a warning that says so.
        """
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision,
                                    cache_dir=cache_dir, force_download=force_download,
                                    local_files_only=local_files_only, token=token)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None = None, cache_dir: str | Path | None = None,
                         force_download: bool = False, local_files_only: bool = False,
                         token: str | bool | None = None, **_: Any) -> "AgeGenderModel":
        """The mixin's loading hook: resolve and check the directory (or Hub snapshot), then load it."""
        from .loading import resolve_model_dir

        directory = resolve_model_dir(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                      local_files_only=local_files_only, token=token)
        return cls.from_directory(directory)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The card `save_pretrained` writes: from this model's config, plus a training run's files if given."""
        from hub.cards import model_card

        return model_card(self.config, **kwargs)

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict | None = None, **kwargs: Any) -> str:
        """Push to a Hub repo (token: `token=`, else HF_TOKEN or `hf auth login`); the card's code names the repo."""
        return super().push_to_hub(repo_id, model_card_kwargs={"repo_id": repo_id, **(model_card_kwargs or {})},
                                   **kwargs)

    @classmethod
    def from_directory(cls, directory: str | Path) -> "AgeGenderModel":
        """Load `model.keras` and `config.json` from a local directory, in Keras safe mode."""
        import keras

        from . import models  # noqa: F401  registers our custom layers

        directory = Path(directory)
        cfg_path, model_path = directory / CONFIG_FILE, directory / MODEL_FILE
        if not model_path.exists() or not cfg_path.exists():
            raise ModelLoadError(f"{directory} is not an agegender model: it needs {MODEL_FILE} and {CONFIG_FILE}")
        try:
            config = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{cfg_path} is corrupt: {exc}") from exc
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ModelLoadError(f"{directory} is not an agegender model (config.json has no format {FORMAT!r})")
        try:
            keras_model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        except Exception as exc:  # zip/h5/json errors all mean the same thing to a user
            raise ModelLoadError(f"{model_path} is corrupt or not a safe Keras model: {type(exc).__name__}: {exc}") from exc
        return cls(keras_model, config)
