"""The training command end to end on synthetic data, resume, MirroredStrategy, and `agegender evaluate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training.recipes import RECIPES, get_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished (tiny) run of our custom recipe on synthetic data."""
    from conftest import synthetic_face, synthetic_names
    from training.train import parse_args, train

    base = tmp_path_factory.mktemp("train")
    data = base / "UTKFace"
    data.mkdir()
    for i, name in enumerate(synthetic_names(80)):
        (data / name).write_bytes(synthetic_face(i, 64))
    out = base / "run"
    train(parse_args(["--model", "custom", "--recipe", "ours", "--data", str(data), "--out", str(out),
                      "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "8"]))
    return out, data


def test_run_directory_is_complete(run_dir):
    out, _ = run_dir
    for name in ("recipe.json", "history.csv", "history.json", "curves.png", "metrics.json",
                 "test_age_scatter.png", "test_mae_by_age_band.png", "test_gender_confusion.png", "test_per_race.png",
                 "model/model.keras", "model/config.json"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    assert {"age_mae", "gender_accuracy", "per_age_band", "per_race"} <= set(metrics["test"])
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert "gender_temperature" in cfg["calibration"] and cfg["preprocessing"]["input_size"] == 64


def test_resume_skips_finished_stages(run_dir, capsys):
    from training.train import parse_args, train

    out, data = run_dir
    summary = train(parse_args(["--model", "custom", "--recipe", "ours", "--data", str(data), "--out", str(out),
                                "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "8", "--resume"]))
    assert summary["epochs_run"] == 2  # history restored, nothing retrained


def test_evaluate_cli_reproduces_run_metrics(run_dir, capsys):
    from agegender.cli import main

    out, data = run_dir
    assert main(["evaluate", str(data), "--model", str(out / "model"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = json.loads((out / "metrics.json").read_text())["test"]
    assert got["n"] == want["n"]
    assert got["age_mae"] == pytest.approx(want["age_mae"], abs=1e-3)
    assert got["gender_accuracy"] == want["gender_accuracy"]
    assert {"per_age_band", "per_gender", "per_race", "images_per_second"} <= set(got)
    assert main(["evaluate", str(data), "--model", str(out / "model"), "--split", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 80


def test_evaluate_cli_errors_are_one_line(tmp_path, utk_folder, capsys):
    from agegender.cli import main

    assert main(["evaluate", str(tmp_path / "missing"), "--model", "custom"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("agegender: error:") and err.count("\n") == 1
    assert main(["evaluate", str(utk_folder), "--model", str(tmp_path)]) == 2
    assert "not an agegender model" in capsys.readouterr().err


def test_summary_cli(utk_folder, capsys):
    from agegender.cli import main

    (utk_folder / "bad_name.jpg").write_bytes(b"x")
    assert main(["summary", str(utk_folder), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["total"] == 60 and s["report"]["skipped"] == 1
    assert main(["summary", str(utk_folder)]) == 0
    text = capsys.readouterr().out
    assert "skipped:" in text and "bad_name.jpg" in text


def test_every_recipe_states_its_choices():
    for model, recipe in RECIPES:
        r = get_recipe(model, recipe)
        assert r.epochs > 0 and r.batch_size > 0
    report = get_recipe("custom", "report")
    assert report.optimizer == "sgd" and report.schedule == "hold_then_decay" and report.patience == 5
    assert get_recipe("vgg16", "report").optimizer == "adam" and get_recipe("vgg16", "report").stages[0].lr == 1e-4
    with pytest.raises(ValueError):
        get_recipe("custom", "nope")


def test_report_schedule_holds_then_decays():
    from training.train import _hold_then_decay

    f = _hold_then_decay(10, 0.1)
    assert f(9, 0.01) == 0.01 and f(10, 0.01) == pytest.approx(0.01 * 0.904837, rel=1e-5)


def test_vgg16_ours_staged_unfreezing_trains(tmp_path, utk_folder):
    from training.train import parse_args, train

    summary = train(parse_args(["--model", "vgg16", "--recipe", "ours", "--weights", "none", "--input-size", "32",
                                "--data", str(utk_folder), "--out", str(tmp_path / "vgg"), "--epochs", "3",
                                "--steps-per-epoch", "1", "--batch-size", "4", "--limit", "8"]))
    assert summary["epochs_run"] == 3
    from agegender.loading import load_model

    assert load_model(str(tmp_path / "vgg" / "model")).config["recipe"]["model"]["scaling"] == "caffe"


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, utk_folder):
    """The same training code runs under MirroredStrategy with two replicas."""
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from training.train import parse_args, train, make_strategy
        assert make_strategy("/cpu:0,/cpu:1").num_replicas_in_sync == 2
        s = train(parse_args(["--model", "custom", "--recipe", "ours", "--data", {str(utk_folder)!r},
                              "--out", {str(tmp_path / 'mirrored')!r}, "--epochs", "1", "--steps-per-epoch", "2",
                              "--batch-size", "4", "--devices", "/cpu:0,/cpu:1"]))
        print("REPLICAS_OK", s["epochs_run"])
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REPLICAS_OK 1" in proc.stdout
