"""`agegender predict`: a table or one JSON document, annotated images, and one-line errors with exit 2."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

import agegender.loading
from agegender.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "agegender" / "examples"
ASTRONAUT, FIVE = str(EXAMPLES / "astronaut.jpg"), str(EXAMPLES / "five_faces.jpg")
AGEGENDER = Path(sys.executable).parent / "agegender"


def bomb_png() -> bytes:
    """A tiny PNG whose header claims 20000x20000 pixels."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", 20000, 20000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    """One file per kind of bad input."""
    jpeg = (EXAMPLES / "astronaut.jpg").read_bytes()
    files = {"empty": b"", "text": b"hello, not a photo\n", "truncated": jpeg[: len(jpeg) // 3], "bomb": bomb_png()}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.jpg"
        paths[name].write_bytes(data)
    paths["missing"] = tmp_path / "missing.jpg"
    return paths


@pytest.fixture
def builtin_custom(monkeypatch, tmp_path, tiny_model_dir):
    """The tiny model installed as the embedded "custom" model, and no vgg16."""
    weights = tmp_path / "weights"
    shutil.copytree(tiny_model_dir, weights / "custom")
    monkeypatch.setattr(agegender.loading, "WEIGHTS_DIR", weights)
    monkeypatch.delenv("AGEGENDER_CUSTOM_REPO", raising=False)
    monkeypatch.delenv("AGEGENDER_VGG16_REPO", raising=False)


def test_table_by_default(capsys, tiny_model_dir):
    assert main(["predict", ASTRONAUT, FIVE, "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{ASTRONAUT}: 1 face " in out and f"{FIVE}: 5 faces " in out
    assert "detect" in out and "age (80% range) gender" in out
    rows = [line for line in out.splitlines() if line.startswith("  ") and line.split()[0].isdigit()]
    assert len(rows) == 6 and all(("male" in r or "female" in r) for r in rows)


def test_json_is_one_document(capsys, tiny_model_dir):
    assert main(["predict", ASTRONAUT, FIVE, "--model", str(tiny_model_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    label = str(tiny_model_dir)
    assert list(doc["models"]) == [label] and doc["unavailable"] == {} and doc["max_faces"] == 32
    first, second = doc["images"]
    assert first["path"] == ASTRONAUT and first["error"] is None and len(first["faces"]) == 1
    assert len(second["faces"]) == 5 and second["capped"] is False
    face = first["faces"][0]
    assert set(face) == {"box", "landmarks", "score", "predictions"}
    assert set(face["predictions"][label]) == {"age", "gender", "p_female", "confidence", "age_interval"}
    assert {"load_ms", "detect_ms", "align_ms", f"{label}_ms", "total_ms"} <= set(first["timings"])


def test_annotate_one_image_and_a_folder_for_several(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "annotated.png"
    assert main(["predict", ASTRONAUT, "--model", str(tiny_model_dir), "--annotate", str(out)]) == 0
    assert Image.open(out).size == (512, 512)
    folder = tmp_path / "many"
    assert main(["predict", ASTRONAUT, FIVE, "--model", str(tiny_model_dir), "--annotate", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["astronaut-annotated.png", "five_faces-annotated.png"]
    assert "annotated image:" in capsys.readouterr().out
    assert main(["predict", ASTRONAUT, "--model", str(tiny_model_dir), "--annotate", str(tmp_path / "x.nope")]) == 2
    assert "unknown image extension" in capsys.readouterr().err


def test_no_face_is_success(capsys, tmp_path, tiny_model_dir):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (300, 200), (90, 90, 90)).save(blank)
    assert main(["predict", str(blank), "--model", str(tiny_model_dir)]) == 0
    assert f"{blank}: no face found" in capsys.readouterr().out
    assert main(["predict", str(blank), "--model", str(tiny_model_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"][0]["faces"] == []


@pytest.mark.parametrize("kind, reason", [("empty", "empty"), ("text", "not an image"),
                                          ("truncated", "corrupt or truncated"), ("bomb", "megapixels"),
                                          ("missing", "no such file")])
def test_bad_input_is_one_line_and_exit_2(capsys, bad_files, tiny_model_dir, kind, reason):
    assert main(["predict", str(bad_files[kind]), "--model", str(tiny_model_dir)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agegender: error: ") and reason in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def test_good_and_bad_photos_together(capsys, bad_files, tiny_model_dir):
    assert main(["predict", ASTRONAUT, str(bad_files["text"]), "--model", str(tiny_model_dir), "--json"]) == 2
    captured = capsys.readouterr()
    good, bad = json.loads(captured.out)["images"]
    assert len(good["faces"]) == 1 and good["error"] is None
    assert bad["faces"] == [] and "not an image" in bad["error"]
    assert "not an image" in captured.err


def test_both_models_with_one_unavailable_is_not_fatal(capsys, builtin_custom):
    assert main(["predict", ASTRONAUT, "--model", "both", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert list(doc["models"]) == ["custom"] and list(doc["unavailable"]) == ["vgg16"]
    assert list(doc["images"][0]["faces"][0]["predictions"]) == ["custom"]
    assert "model 'vgg16' is unavailable" in captured.err


def test_no_model_at_all_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(agegender.loading, "WEIGHTS_DIR", tmp_path)
    monkeypatch.delenv("AGEGENDER_CUSTOM_REPO", raising=False)
    monkeypatch.delenv("AGEGENDER_VGG16_REPO", raising=False)
    assert main(["predict", ASTRONAUT, "--model", "both"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agegender: error: no model could be loaded")


@pytest.mark.skipif(not AGEGENDER.exists(), reason="the agegender script is not installed (pip install -e .)")
def test_installed_command(tmp_path, tiny_model_dir, bad_files):
    bad = subprocess.run([str(AGEGENDER), "predict", str(bad_files["truncated"])], capture_output=True, text=True,
                         timeout=120, check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    lines = bad.stderr.strip().splitlines()  # bad input is reported before TensorFlow even starts
    assert len(lines) == 1 and lines[0].startswith(f"agegender: error: {bad_files['truncated']} is corrupt or truncated")
    good = subprocess.run([str(AGEGENDER), "predict", FIVE, "--model", str(tiny_model_dir), "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert good.returncode == 0, good.stderr
    assert len(json.loads(good.stdout)["images"][0]["faces"]) == 5
