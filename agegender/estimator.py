"""`Estimator`: ordinary photos in, faces with age and gender from one or several models out.

    from agegender.estimator import Estimator

    est = Estimator(models=("custom", "vgg16"))   # each model loads once; missing ones go to est.unavailable
    for face in est.predict("photo.jpg"):         # a path, bytes, a PIL image or a numpy array
        print(face.box, face.predictions["custom"]["age"], face.predictions["custom"]["gender"])

A photo goes through `images.load_image` (safe decoding and conversions), `faces.detect_faces`
(MTCNN, at most `faces.MAX_FACES` faces), `faces.align_face` (UTKFace framing, cut from the
full-resolution photo) and then, as one batch, through each model.
"""

from __future__ import annotations

import json
import sys
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .faces import MAX_FACES, Detection, align_face, annotate, cap_faces, get_detector
from .images import ImageError, load_image
from .loading import load_model
from .model import AgeGenderModel, ModelLoadError

# `--model both` and `Estimator(models="both")`: the two built-in models.
BOTH = ("custom", "vgg16")


@dataclass
class Face:
    """One face in a photo: where it is and, per model, its age and gender."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the (upright) photo's pixels, clipped to the photo
    landmarks: dict[str, tuple[float, float]]  # left_eye, right_eye, nose, mouth_left, mouth_right
    score: float  # the detector's face probability
    # per model name: {"age", "gender", "p_female", "confidence", "age_interval"}
    predictions: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict of the face."""
        d = asdict(self)
        d["box"] = list(self.box)
        d["landmarks"] = {k: [round(x, 1), round(y, 1)] for k, (x, y) in self.landmarks.items()}
        d["score"] = round(self.score, 4)
        return d


def _model_sources(models: str | Sequence | Mapping) -> dict[str, Any]:
    """Model names to load: "both", one name, a sequence of names, or a mapping label -> name/dir/model."""
    if isinstance(models, Mapping):
        return dict(models)
    if isinstance(models, (str, Path)):
        models = BOTH if str(models) == "both" else (str(models),)
    sources: dict[str, Any] = {}
    for name in models:
        for n in (BOTH if str(name) == "both" else (str(name),)):
            sources[n] = n
    return sources


def _face_from(detection: Detection, width: int, height: int) -> Face:
    """A detection as a Face with an integer box clipped to the photo."""
    x0, y0, x1, y1 = detection.box
    box = (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))), min(width, int(np.ceil(x1))),
           min(height, int(np.ceil(y1))))
    return Face(box=box, landmarks=dict(detection.landmarks), score=detection.score)


class Estimator:
    """Face detection plus one or more age/gender models, each loaded once.

    A model that cannot load is recorded in `unavailable` (name -> reason and what to do)
    unless `strict=True`, in which case `ModelLoadError` is raised. With no model loaded,
    `predict` still finds faces, with empty predictions.
    """

    def __init__(self, models: str | Sequence | Mapping = BOTH, strict: bool = False,
                 max_faces: int = MAX_FACES, warm_up: bool = True):
        self.models: dict[str, AgeGenderModel] = {}
        self.unavailable: dict[str, str] = {}
        self.max_faces = max_faces
        self._lock = threading.Lock()  # one model call at a time; detection may run in parallel
        self._last = threading.local()  # last_timings and last_capped, per thread
        for label, source in _model_sources(models).items():
            try:
                self.models[label] = source if isinstance(source, AgeGenderModel) else load_model(str(source))
            except ModelLoadError as exc:
                if strict:
                    raise
                self.unavailable[label] = str(exc)
        self._detector = get_detector()
        if warm_up:
            self.warm_up()

    @property
    def last_timings(self) -> dict[str, float]:
        """Milliseconds per step of this thread's last `predict`: load, detect, align, <model>..., total."""
        return getattr(self._last, "timings", {})

    @property
    def last_capped(self) -> bool:
        """Whether this thread's last photo had more than `max_faces` faces (only the largest were kept)."""
        return getattr(self._last, "capped", False)

    def warm_up(self) -> None:
        """Run each model on batches of one and two blank crops, so that the first photo is as fast as the next.

        Two batch sizes make Keras trace a prediction graph for any batch size (about 0.1 s each).
        """
        blank = Image.new("RGB", (64, 64), (128, 128, 128))
        with self._lock:
            for model in self.models.values():
                model.predict([blank])
                model.predict([blank, blank])

    def predict(self, image: Any) -> list[Face]:
        """The faces in a photo (path, bytes, PIL image or array), left to right; [] when there is none."""
        return self.analyse(image)[0]

    def analyse(self, image: Any) -> tuple[list[Face], Image.Image]:
        """Like `predict`, and also the upright RGB photo the boxes refer to (for drawing on it)."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        photo = load_image(image)
        t1 = time.perf_counter()
        timings["load_ms"] = (t1 - t0) * 1e3
        detections = self._detector.detect(photo, max_faces=None)
        self._last.capped = len(detections) > self.max_faces
        detections = cap_faces(detections, self.max_faces)
        t2 = time.perf_counter()
        timings["detect_ms"] = (t2 - t1) * 1e3
        crops = [align_face(photo, d) for d in detections]
        faces = [_face_from(d, *photo.size) for d in detections]
        t3 = time.perf_counter()
        timings["align_ms"] = (t3 - t2) * 1e3
        for name, per_face in self._predict_crops(crops, timings).items():
            for face, prediction in zip(faces, per_face):
                face.predictions[name] = prediction
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        self._last.timings = {k: round(v, 2) for k, v in timings.items()}
        return faces, photo

    def predict_crops(self, crops: Sequence[Any]) -> dict[str, list[dict]]:
        """Per model, predictions for faces that are already cropped (no detection, no alignment)."""
        return self._predict_crops([load_image(c) for c in crops], {})

    def _predict_crops(self, crops: list[Image.Image], timings: dict[str, float]) -> dict[str, list[dict]]:
        """Each model on the whole batch of crops, timed into `timings` as "<model>_ms"."""
        out = {}
        for name, model in self.models.items():
            t = time.perf_counter()
            with self._lock:
                out[name] = model.predict(crops) if crops else []
            timings[f"{name}_ms"] = (time.perf_counter() - t) * 1e3
        return out


# ----- the `agegender predict` command ------------------------------------------------------------
def _format_prediction(p: Mapping) -> str:
    """One model's answer for one face, in a table cell."""
    lo, hi = p["age_interval"]
    return f"{p['age']:4.0f} ({lo:.0f}-{hi:.0f}) {p['gender']:<6} {p['confidence']:.0%}"


def format_table(path: str, faces: Sequence[Face], timings: Mapping[str, float], model_names: Iterable[str],
                 capped: bool = False) -> str:
    """A readable report of one photo: a header line with the timings, then one row per face."""
    names = list(model_names)
    steps = ", ".join(f"{k[:-3]} {v:.0f}" for k, v in timings.items() if k not in ("total_ms", "load_ms"))
    n = len(faces)
    head = f"{path}: {'no face found' if n == 0 else f'{n} face' + ('s' if n > 1 else '')}"
    head += f"  ({timings.get('total_ms', 0):.0f} ms: {steps})"
    if capped:
        head += f"  [only the {n} largest faces are shown]"
    if not faces:
        return head
    cell = 26
    lines = [head, "  #  box (x0, y0, x1, y1)     score  " + "".join(f"{name[:cell - 1]:<{cell}}" for name in names),
             "                                      " + "".join(f"{'age (80% range) gender':<{cell}}" for _ in names)]
    for i, face in enumerate(faces, 1):
        box = ", ".join(str(v) for v in face.box)
        cells = "".join(f"{_format_prediction(face.predictions[n]) if n in face.predictions else '-':<{cell}}"
                        for n in names)
        lines.append(f"  {i:<2} {box:<24} {face.score:5.2f}  {cells}".rstrip())
    return "\n".join(lines)


def _annotation_paths(images: Sequence[str], out: str) -> list[Path]:
    """Where --annotate writes: OUT itself for one photo (unless OUT is a folder), else OUT/<name>-annotated.png."""
    target = Path(out)
    is_folder = target.is_dir() or out.endswith(("/", os.sep)) or not target.suffix
    if len(images) == 1 and not is_folder:
        if target.suffix.lower() not in Image.registered_extensions():
            raise ValueError(f"--annotate {out}: unknown image extension; use for example .png or .jpg")
        return [target]
    paths, used = [], set()
    for i, image in enumerate(images):
        name = f"{Path(image).stem}-annotated.png"
        if name in used:
            name = f"{Path(image).stem}-{i + 1}-annotated.png"
        used.add(name)
        paths.append(target / name)
    return paths


def run_predict_cli(args) -> int:
    """`agegender predict`: a table (or one JSON document) per photo; 0 unless a photo could not be read.

    Each photo is decoded before the models load, so a bad file is reported at once, without
    waiting for TensorFlow to start.
    """
    from .cli import UserError

    annotate_to = _annotation_paths(args.images, args.annotate) if args.annotate else None
    estimator: Estimator | None = None
    reports, failed = [], 0
    for i, path in enumerate(args.images):
        report: dict[str, Any] = {"path": path, "faces": [], "timings": {}, "capped": False, "error": None}
        reports.append(report)
        t0 = time.perf_counter()
        try:
            photo = load_image(path)
        except ImageError as exc:
            failed += 1
            report["error"] = str(exc)
            print(f"agegender: error: {exc}", file=sys.stderr)
            continue
        load_ms = (time.perf_counter() - t0) * 1e3
        if estimator is None:
            estimator = Estimator(models=args.model, strict=False)
            if not estimator.models:
                raise UserError("no model could be loaded: " +
                                "; ".join(f"{k}: {v}" for k, v in estimator.unavailable.items()))
            for name, reason in estimator.unavailable.items():
                print(f"agegender: warning: model {name!r} is unavailable, continuing without it: {reason}",
                      file=sys.stderr)
        faces, photo = estimator.analyse(photo)
        timings = {"load_ms": round(load_ms, 2), **{k: v for k, v in estimator.last_timings.items() if k != "load_ms"}}
        timings["total_ms"] = round(timings["total_ms"] + load_ms, 2)
        report.update(faces=[f.to_dict() for f in faces], timings=timings, capped=estimator.last_capped)
        if annotate_to:
            annotate_to[i].parent.mkdir(parents=True, exist_ok=True)
            annotate(photo, faces).save(annotate_to[i])
            report["annotated"] = str(annotate_to[i])
        if not args.json:
            print(format_table(path, faces, timings, estimator.models, estimator.last_capped))
            if annotate_to:
                print(f"  annotated image: {annotate_to[i]}")
    if args.json:
        models = {name: {"name": m.name, "input_size": m.input_size} for name, m in estimator.models.items()} \
            if estimator else {}
        print(json.dumps({"models": models, "unavailable": estimator.unavailable if estimator else {},
                          "max_faces": MAX_FACES if estimator is None else estimator.max_faces,
                          "images": reports}, indent=2))
    return 2 if failed else 0
