"""agegender: age and gender estimation from face photos (custom CNN and VGG16, trained on UTKFace).

    import agegender
    model = agegender.load_model("custom")
    model.predict([face_crop])  # [{'age': 31.2, 'p_female': 0.93, 'gender': 'female', ...}]
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["AgeGenderModel", "load_model", "load_utkface", "ModelLoadError", "__version__"]


def __getattr__(name: str):
    # Lazy imports keep `import agegender` fast; TensorFlow loads only when a model does.
    if name in ("AgeGenderModel", "ModelLoadError"):
        from . import model

        return getattr(model, name)
    if name == "load_model":
        from .loading import load_model

        return load_model
    if name == "load_utkface":
        from .data import load_utkface

        return load_utkface
    if name == "Estimator":
        from .estimator import Estimator

        return Estimator
    raise AttributeError(f"module 'agegender' has no attribute {name!r}")
