"""`Estimator`: photos in any form -> faces with per-model predictions; models load once, faces batch."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import agegender.estimator as estimator_module
from agegender.estimator import Estimator, Face, _model_sources
from agegender.images import ImageError
from agegender.model import AgeGenderModel, ModelLoadError

EXAMPLES = Path(__file__).resolve().parents[1] / "agegender" / "examples"
PREDICTION_KEYS = {"age", "gender", "p_female", "confidence", "age_interval"}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> AgeGenderModel:
    return AgeGenderModel.from_directory(tiny_model_dir)


@pytest.fixture(scope="module")
def est(tiny) -> Estimator:
    return Estimator(models={"tiny": tiny})


def check_prediction(p: dict) -> None:
    """One model's answer for one face has the documented keys, types and ranges."""
    assert set(p) == PREDICTION_KEYS
    assert p["gender"] in ("male", "female") and 0 <= p["p_female"] <= 1 and 0.5 <= p["confidence"] <= 1
    assert p["age"] >= 0 and p["age_interval"][0] <= p["age"] <= p["age_interval"][1]


@pytest.mark.parametrize("name, n", [("astronaut.jpg", 1), ("grace_hopper.jpg", 1), ("five_faces.jpg", 5)])
def test_predictions_on_the_example_photos(est, name, n):
    faces = est.predict(EXAMPLES / name)
    assert len(faces) == n and all(isinstance(f, Face) for f in faces)
    width, height = Image.open(EXAMPLES / name).size
    for face in faces:
        x0, y0, x1, y1 = face.box
        assert all(isinstance(v, int) for v in face.box) and 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert face.score > 0.9 and len(face.landmarks) == 5
        assert set(face.predictions) == {"tiny"}
        check_prediction(face.predictions["tiny"])
        d = json.loads(json.dumps(face.to_dict()))
        assert d["box"] == list(face.box) and d["predictions"]["tiny"]["gender"] == face.predictions["tiny"]["gender"]
    t = est.last_timings
    assert {"load_ms", "detect_ms", "align_ms", "tiny_ms", "total_ms"} <= set(t)
    assert t["total_ms"] >= t["detect_ms"] + t["tiny_ms"]


def test_every_input_form_gives_the_same_faces(est):
    path = EXAMPLES / "astronaut.jpg"
    reference = [f.to_dict() for f in est.predict(path)]
    photo = Image.open(path)
    for src in (str(path), path.read_bytes(), photo, photo.convert("RGB"), np.asarray(photo.convert("RGB"))):
        assert [f.to_dict() for f in est.predict(src)] == reference


def test_no_face_is_an_empty_list_not_an_error(est):
    assert est.predict(Image.new("RGB", (320, 240), (200, 200, 200))) == []
    assert est.last_timings["tiny_ms"] >= 0 and "total_ms" in est.last_timings
    assert est.predict(np.zeros((3, 3, 3), np.uint8)) == []


def test_bad_input_raises_image_error(est):
    with pytest.raises(ImageError):
        est.predict(b"definitely not a photo")
    with pytest.raises(ImageError):
        est.predict(EXAMPLES / "missing.jpg")


def test_models_load_once_and_faces_are_batched(monkeypatch, tiny, tiny_model_dir):
    loads = []
    monkeypatch.setattr(estimator_module, "load_model", lambda name: loads.append(name) or tiny)
    est = Estimator(models=("a", str(tiny_model_dir)), warm_up=False)
    assert loads == ["a", str(tiny_model_dir)] and list(est.models) == ["a", str(tiny_model_dir)]
    batches = []
    real_predict = tiny.predict
    monkeypatch.setattr(tiny, "predict", lambda crops, **kw: batches.append(len(crops)) or real_predict(crops, **kw))
    est.predict(EXAMPLES / "five_faces.jpg")
    est.predict(EXAMPLES / "astronaut.jpg")
    assert batches == [5, 5, 1, 1]  # one call per model per photo, with every face of the photo
    assert len(loads) == 2


def test_crops_are_aligned_utkface_style_before_the_model(monkeypatch, tiny):
    seen = []
    real_predict = tiny.predict
    monkeypatch.setattr(tiny, "predict", lambda crops, **kw: seen.extend(crops) or real_predict(crops, **kw))
    Estimator(models={"tiny": tiny}, warm_up=False).predict(EXAMPLES / "grace_hopper.jpg")
    assert [c.size for c in seen] == [(200, 200)] and seen[0].mode == "RGB"


def test_unavailable_models_are_recorded_with_a_reason(monkeypatch, tiny_model_dir, tmp_path):
    monkeypatch.delenv("AGEGENDER_VGG16_REPO", raising=False)
    est = Estimator(models={"tiny": tiny_model_dir, "vgg16": "vgg16", "gone": tmp_path / "no-model"}, warm_up=False)
    assert list(est.models) == ["tiny"]
    assert set(est.unavailable) == {"vgg16", "gone"}
    assert "train one" in est.unavailable["vgg16"] and "AGEGENDER_VGG16_REPO" in est.unavailable["vgg16"]
    assert "tiny" in est.predict(EXAMPLES / "astronaut.jpg")[0].predictions
    with pytest.raises(ModelLoadError):
        Estimator(models=("vgg16",), strict=True)


def test_without_any_model_faces_are_still_found(monkeypatch):
    monkeypatch.delenv("AGEGENDER_VGG16_REPO", raising=False)
    est = Estimator(models=("vgg16",))
    faces = est.predict(EXAMPLES / "astronaut.jpg")
    assert len(faces) == 1 and faces[0].predictions == {} and est.models == {}


def test_predict_crops_skips_detection(est):
    crop = Image.open(EXAMPLES / "astronaut.jpg").crop((150, 40, 300, 190))
    out = est.predict_crops([crop, np.asarray(crop.convert("L")), crop.convert("RGBA")])
    assert list(out) == ["tiny"] and len(out["tiny"]) == 3
    for p in out["tiny"]:
        check_prediction(p)
    assert out["tiny"][0] == out["tiny"][2]  # an opaque RGBA crop is the same picture
    assert est.predict_crops([]) == {"tiny": []}


def test_model_names_both_and_mappings():
    assert _model_sources("both") == {"custom": "custom", "vgg16": "vgg16"}
    assert _model_sources("custom") == {"custom": "custom"}
    assert _model_sources(["custom", "both"]) == {"custom": "custom", "vgg16": "vgg16"}
    assert _model_sources({"mine": "/models/x"}) == {"mine": "/models/x"}


def test_face_to_dict_is_json_ready():
    face = Face(box=(1, 2, 3, 4), landmarks={"nose": (1.234, 5.678)}, score=0.98765,
                predictions={"m": {"age": 30.0, "gender": "male"}})
    assert json.loads(json.dumps(face.to_dict())) == {"box": [1, 2, 3, 4], "landmarks": {"nose": [1.2, 5.7]},
                                                      "score": 0.9877, "predictions": {"m": {"age": 30.0,
                                                                                            "gender": "male"}}}


def test_exif_rotated_upload_gives_boxes_in_upright_coordinates(est):
    photo = Image.open(EXAMPLES / "astronaut.jpg")
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated; "rotate 90 degrees counter-clockwise to display"
    buf = io.BytesIO()
    photo.transpose(Image.ROTATE_270).save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    upright = est.predict(photo)[0].box
    assert np.allclose(est.predict(buf.getvalue())[0].box, upright, atol=6)


def test_face_cap_keeps_the_largest_and_says_so(tiny):
    est = Estimator(models={"tiny": tiny}, max_faces=3, warm_up=False)
    every = Estimator(models={"tiny": tiny}, warm_up=False).predict(EXAMPLES / "five_faces.jpg")
    faces = est.predict(EXAMPLES / "five_faces.jpg")
    assert len(faces) == 3 and est.last_capped
    def area(f):
        return (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])

    assert sorted(area(f) for f in faces) == sorted(area(f) for f in every)[-3:]
    est.predict(EXAMPLES / "astronaut.jpg")
    assert not est.last_capped


def test_last_timings_belong_to_the_calling_thread(est):
    import threading

    seen = {}

    def run():
        est.predict(Image.new("RGB", (64, 64)))
        seen["thread"] = est.last_timings

    est.predict(EXAMPLES / "five_faces.jpg")
    mine = est.last_timings
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert est.last_timings is mine and seen["thread"] is not mine and "tiny_ms" in seen["thread"]


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / "agegender" / "weights" / "custom" / "model.keras").exists(),
                    reason="the embedded custom model is not installed")
def test_embedded_custom_model_reads_the_example_photos():
    est = Estimator(models=("custom",))
    (astronaut,) = est.predict(EXAMPLES / "astronaut.jpg")
    assert astronaut.predictions["custom"]["gender"] == "female" and 18 <= astronaut.predictions["custom"]["age"] <= 50
    (hopper,) = est.predict(EXAMPLES / "grace_hopper.jpg")
    assert hopper.predictions["custom"]["age"] >= 60
    # The composite holds copies of the same two faces at other sizes and angles: alignment
    # makes each copy read like its original.
    for face in est.predict(EXAMPLES / "five_faces.jpg"):
        age = face.predictions["custom"]["age"]
        assert min(abs(age - astronaut.predictions["custom"]["age"]), abs(age - hopper.predictions["custom"]["age"])) < 6
