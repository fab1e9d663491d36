"""The Space's handlers, called directly (no server): model sources, /predict's JSON, the page's outputs."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # app.py lives at the repository root, outside the package

import gradio as gr  # noqa: E402

import app  # noqa: E402

EXAMPLES = ROOT / "examples"  # the Space's own examples; the face photos come with the package
PACKAGE_EXAMPLES = ROOT / "agegender" / "examples"
FIVE_FACES = str(PACKAGE_EXAMPLES / "five_faces.jpg")
PREDICTION_KEYS = {"age", "gender", "p_female", "confidence", "age_interval"}


@pytest.fixture(scope="module")
def decorated_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with what a published one carries: metrics, a card with front matter, a plot."""
    path = tmp_path_factory.mktemp("decorated") / "model"
    shutil.copytree(tiny_model_dir, path)
    config = json.loads((path / "config.json").read_text())
    config["metrics"] = {"test": {"n": 100, "age_mae": 6.54321, "gender_accuracy": 0.9}}
    (path / "config.json").write_text(json.dumps(config))
    (path / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# Tiny card\n\nText.\n"
                                    "![Training curves](plots/curves.png)\n![remote](https://example.org/a.png)\n")
    (path / "plots").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path / "plots" / "age_error.png")
    Image.new("RGB", (40, 30), (10, 200, 10)).save(path / "plots" / "curves.png")
    return path


@pytest.fixture(scope="module")
def space(tiny_model_dir):
    """Both columns filled, each from a local directory named by its environment variable."""
    env = {"AGEGENDER_CUSTOM_REPO": str(tiny_model_dir), "AGEGENDER_VGG16_REPO": str(tiny_model_dir)}
    return app.Space({slot.key: app.load_slot(slot, env) for slot in app.SPACE_MODELS})


@pytest.fixture(scope="module")
def space_without_vgg16(decorated_model_dir, tmp_path_factory):
    """The custom column filled, and VGG16 pointed at a directory that does not exist."""
    missing = tmp_path_factory.mktemp("nothing") / "no" / "model"
    env = {"AGEGENDER_CUSTOM_REPO": str(decorated_model_dir), "AGEGENDER_VGG16_REPO": str(missing)}
    return app.Space({slot.key: app.load_slot(slot, env) for slot in app.SPACE_MODELS})


# ----- where the models come from --------------------------------------------------------------
def test_config_names_the_repos_in_the_readme_front_matter():
    front = (ROOT / "README.md").read_text().split("---")[1]
    listed = re.findall(r"^\s+- (\S+)$", front.split("models:")[1].split("datasets:")[0], flags=re.M)
    assert sorted(listed) == sorted(slot.repo for slot in app.SPACE_MODELS)


def test_env_override_loads_a_local_directory_and_says_so(tiny_model_dir):
    loaded = app.load_slot(app.SPACE_MODELS[0], {"AGEGENDER_CUSTOM_REPO": str(tiny_model_dir)})
    assert loaded.model is not None and loaded.problem is None
    assert loaded.directory == tiny_model_dir
    assert str(tiny_model_dir) in loaded.source and "AGEGENDER_CUSTOM_REPO" in loaded.source


def test_unreachable_hub_falls_back_to_the_embedded_model(tiny_model_dir):
    # HF_HUB_OFFLINE=1 (conftest) makes the Hub unreachable, as on a machine without network.
    slot = dataclasses.replace(app.SPACE_MODELS[0], repo="agegender/no-such-repo-for-tests", fallback=tiny_model_dir)
    loaded = app.load_slot(slot, environ={})
    assert loaded.model is not None and loaded.directory == tiny_model_dir
    assert loaded.source == "embedded default `tiny`, standing in for Hub repo `agegender/no-such-repo-for-tests`"
    assert "could not be loaded" in loaded.detail and loaded.problem is None


def test_a_hub_model_shows_the_card_and_plots_fetched_beside_it(monkeypatch, tiny_model_dir, decorated_model_dir):
    # Stand-ins for the Hub: the model's files in one snapshot, its card and plots fetched apart.
    monkeypatch.setattr(app, "resolve_model_dir", lambda repo: tiny_model_dir)
    fetched = []
    monkeypatch.setattr(app, "fetch_snapshot", lambda repo, allow_patterns: fetched.append((repo, allow_patterns))
                        or decorated_model_dir)
    loaded = app.load_slot(app.SPACE_MODELS[0], environ={})
    assert loaded.model is not None and loaded.source == "Hub repo `agegender/custom-cnn-utkface` (the Space's default)"
    assert loaded.directory == decorated_model_dir
    assert fetched == [("agegender/custom-cnn-utkface", ["README.md", "*.png"])]


def test_vgg16_without_a_repo_is_unavailable_and_says_what_to_do():
    loaded = app.load_slot(app.SPACE_MODELS[1], environ={})
    assert loaded.model is None and loaded.directory is None
    assert "agegender/vgg16-utkface" in loaded.problem
    assert "AGEGENDER_VGG16_REPO" in loaded.problem and "training.train --model vgg16" in loaded.problem


def test_a_corrupt_model_is_unavailable_not_a_crash(tiny_model_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.keras").write_bytes(b"garbage")
    loaded = app.load_slot(app.SPACE_MODELS[1], {"AGEGENDER_VGG16_REPO": str(broken)})
    assert loaded.model is None and "model.keras is not a readable Keras archive" in loaded.problem


# ----- /predict ------------------------------------------------------------------------------------
def test_predict_returns_every_models_answer_per_face(space):
    payload = space.predict(FIVE_FACES)
    assert json.loads(json.dumps(payload)) == payload  # plain JSON, nothing Python-only
    assert set(payload) == {"image", "faces", "capped", "models", "comparison", "timings_ms"}
    assert payload["image"] == {"width": 640, "height": 480} and not payload["capped"]
    assert len(payload["faces"]) == 5
    for face in payload["faces"]:
        x0, y0, x1, y1 = face["box"]
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480 and 0 < face["score"] <= 1
        assert set(face["predictions"]) == {"custom", "vgg16"}
        for p in face["predictions"].values():
            assert set(p) == PREDICTION_KEYS and p["gender"] in ("male", "female")
            assert 0.5 <= p["confidence"] <= 1 and p["age_interval"][0] <= p["age"] <= p["age_interval"][1]
    for info in payload["models"].values():
        assert info["available"] and info["name"] == "tiny-test" and info["time_ms"] > 0 and info["problem"] is None
    # The same model in both columns: the comparison must find no difference.
    assert payload["comparison"] == [{"face": i, "age_difference": 0.0, "gender_agrees": True} for i in range(1, 6)]
    assert payload["timings_ms"]["detect_ms"] > 0


def test_predict_on_a_photo_without_faces(space):
    payload = space.predict(str(EXAMPLES / "coffee.jpg"))
    assert payload["faces"] == [] and payload["comparison"] == []
    assert space.render(str(EXAMPLES / "coffee.jpg"), payload)[-1].startswith("No face found")


def test_predict_rejects_a_broken_file_with_a_readable_message(space, tmp_path):
    broken = tmp_path / "photo.jpg"
    broken.write_bytes((PACKAGE_EXAMPLES / "astronaut.jpg").read_bytes()[:3000])  # a truncated JPEG
    with pytest.raises(gr.Error, match="cannot be used as a photo.*truncated"):
        space.predict(str(broken))
    with pytest.raises(gr.Error, match="Choose a photo first"):
        space.predict(None)


def test_predict_with_an_unavailable_model(space_without_vgg16):
    payload = space_without_vgg16.predict(str(PACKAGE_EXAMPLES / "astronaut.jpg"))
    assert len(payload["faces"]) == 1 and set(payload["faces"][0]["predictions"]) == {"custom"}
    vgg = payload["models"]["vgg16"]
    assert not vgg["available"] and vgg["time_ms"] is None and "AGEGENDER_VGG16_REPO" in vgg["problem"]
    assert payload["comparison"] == []


# ----- the page's outputs ----------------------------------------------------------------------------
def test_render_draws_each_models_boxes_and_fills_its_table(space):
    path = FIVE_FACES
    payload = space.predict(path)
    custom_image, custom_rows, vgg_image, vgg_rows, line = space.render(path, payload)
    original = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    for image, rows, key in ((custom_image, custom_rows, "custom"), (vgg_image, vgg_rows, "vgg16")):
        assert image.size == (640, 480)
        changed = np.abs(np.asarray(image, dtype=np.int16) - original).sum(axis=2) > 60
        for face in payload["faces"]:
            x0, y0, x1, y1 = face["box"]
            assert changed[y0:y1 + 1, x0:x1 + 1].any()  # each box is drawn...
        assert not changed[420:, 100:250].any()  # ...and nothing where there is no face
        assert len(rows) == 5 and len(rows[0]) == len(app.TABLE_HEADERS)
        assert [r[3] for r in rows] == [f["predictions"][key]["gender"] for f in payload["faces"]]
        assert rows[0][5] == round(payload["models"][key]["time_ms"], 1)
    assert line.startswith("**custom vs vgg16:** they agree on gender for every face; they give the same ages")
    assert "Face detection took" in line


def test_render_leaves_an_unavailable_models_column_empty(space_without_vgg16):
    path = str(PACKAGE_EXAMPLES / "astronaut.jpg")
    out = space_without_vgg16.render(path, space_without_vgg16.predict(path))
    assert isinstance(out[0], Image.Image) and len(out[1]) == 1
    assert out[2] is None and out[3] == []
    assert out[4].startswith("No comparison: vgg16 is unavailable")
    assert space_without_vgg16.render(None, None) == [None, [], None, [], ""]


def test_comparison_says_where_the_models_disagree_and_by_how_much():
    def face(age_a, gender_a, age_b, gender_b):
        return {"predictions": {"custom": {"age": age_a, "gender": gender_a},
                                "vgg16": {"age": age_b, "gender": gender_b}}}

    faces = [face(30.0, "male", 42.0, "female"), face(50.0, "female", 48.0, "female"), {"predictions": {"custom": {}}}]
    rows = app.compare(faces, "custom", "vgg16")
    assert rows == [{"face": 1, "age_difference": 12.0, "gender_agrees": False},
                    {"face": 2, "age_difference": -2.0, "gender_agrees": True}]
    payload = {"faces": faces, "comparison": rows, "models": {}}
    assert app.comparison_text(payload, "custom", "vgg16") == (
        "**custom vs vgg16:** they disagree on gender for face 1; ages differ by 7.0 years on average, "
        "most for face 1, where vgg16 says 12.0 years more.")


# ----- model tabs and the page -----------------------------------------------------------------------
def test_model_card_drops_front_matter_and_local_images(decorated_model_dir, tmp_path):
    card = app.model_card(decorated_model_dir)
    assert card.startswith("# Tiny card") and "license:" not in card and "curves.png" not in card
    assert "*(plot above: Training curves)*" in card
    assert "![remote](https://example.org/a.png)" in card
    assert "No model card" in app.model_card(tmp_path)


def test_plots_come_in_the_cards_order_with_its_captions(decorated_model_dir):
    plots = app.model_plots(decorated_model_dir)
    assert [(path.relative_to(decorated_model_dir).as_posix(), caption) for path, caption in plots] == [
        ("plots/curves.png", "Training curves"), ("plots/age_error.png", "age error")]


def test_metric_rows_flatten_splits():
    assert app.metric_rows({"test": {"age_mae": 6.54321, "n": 100}, "val": {"n": 5}}) == [
        ["test", "age_mae", 6.5432], ["test", "n", 100], ["val", "n", 5]]
    assert app.metric_rows(None) == []


def test_page_shows_sources_unavailable_reason_metrics_and_plots(space_without_vgg16, decorated_model_dir):
    demo = app.build_demo(space_without_vgg16)
    blocks = list(demo.blocks.values())
    texts = " ".join(str(b.value) for b in blocks if isinstance(b, gr.Markdown))
    assert str(decorated_model_dir) in texts  # where the custom model came from
    assert "**Unavailable.**" in texts and "AGEGENDER_VGG16_REPO" in texts
    assert "# Tiny card" in texts
    galleries = [b for b in blocks if isinstance(b, gr.Gallery)]
    assert len(galleries) == 1 and [plot["caption"] for plot in galleries[0].value] == ["Training curves", "age error"]
    # Served from copies Gradio made, not from the model's directory.
    assert not any(plot["image"]["path"].startswith(str(decorated_model_dir)) for plot in galleries[0].value)
    metrics = [b for b in blocks if isinstance(b, gr.Dataframe) and b.value["headers"] == ["split", "metric", "value"]]
    assert metrics and metrics[0].value["data"][1] == ["test", "age_mae", 6.5432]
    shown = {b.elem_id: b.visible for b in blocks if isinstance(b, (gr.Image, gr.Dataframe)) and b.elem_id}
    assert shown == {"photo": True, "annotated-custom": True, "table-custom": True,
                     "annotated-vgg16": False, "table-vgg16": False}  # an unavailable column holds only why
    image = next(b for b in blocks if isinstance(b, gr.Image) and b.label == "Photo")
    assert image.sources == ["upload", "webcam", "clipboard"]
    examples = next(b for b in blocks if isinstance(b, gr.Dataset))
    names = [sample[0]["orig_name"] for sample in examples.samples]
    assert names == [p.name for p in app.example_photos()] and {"coffee.jpg", "five_faces.jpg"} <= set(names)
    assert not any(sample[0]["path"].startswith(str(ROOT)) for sample in examples.samples)  # served from copies


def test_serving_settings(space_without_vgg16):
    demo = app.build_demo(space_without_vgg16)
    endpoints = {fn.api_name: fn for fn in demo.fns.values()}
    assert endpoints["predict"].api_visibility == "public" and endpoints["render"].api_visibility == "private"
    assert demo._queue.default_concurrency_limit == app.CONCURRENCY and demo._queue.max_size == app.QUEUE_SIZE
    options = app.launch_options()
    assert options["max_file_size"] == app.MAX_FILE_SIZE and options["allowed_paths"] == []


def test_share_by_flag_or_environment():
    assert app.parse_args(["--share"], environ={}).share
    assert app.parse_args([], environ={"GRADIO_SHARE": "True"}).share
    assert not app.parse_args([], environ={}).share
    assert app.launch_options(share=True)["share"] is True


def test_every_example_photo_has_its_licence_recorded():
    readme = (EXAMPLES / "README.md").read_text()
    photos = sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    assert photos and all(name in readme for name in photos)
    assert all(p.stat().st_size < 200_000 for p in EXAMPLES.glob("*.jpg"))
