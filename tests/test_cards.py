"""Model cards: generated from a run's own files, YAML that `huggingface_hub.ModelCard` parses, code that runs."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from huggingface_hub import ModelCard

from conftest import synthetic_face
from test_hub import OWNER_TOKEN, fake_hub, tiny_run  # noqa: F401  the shared Hub stand-in and run

SECTIONS = ("## How to use", "## Training data and procedure", "## Evaluation", "### Test split by age band",
            "## Limitations and bias", "## Intended uses", "## Out-of-scope uses", "## Compute")


def _card(run_dir, repo_id="me/tiny-cnn") -> ModelCard:
    from hub.cards import model_card, read_run

    run = read_run(run_dir)
    return ModelCard(str(model_card(run.config, run, repo_id=repo_id)))  # re-parsed from its text


def test_card_yaml_parses_and_holds_the_runs_metrics(tiny_run):
    card = _card(tiny_run)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    data = card.data
    assert data.library_name == "agegender" and data.license == "cc-by-nc-4.0"
    assert data.pipeline_tag == "image-classification" and data.datasets == ["agegender/utkface"]
    assert {"age-estimation", "gender-classification", "custom"} <= set(data.tags)
    found = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    for split in ("validation", "test"):
        assert found[(split, "mae")] == metrics[split]["age_mae"]
        assert found[(split, "accuracy")] == metrics[split]["gender_accuracy"]
        assert found[(split, "ece")] == metrics[split]["gender_ece"]


def test_card_has_every_section_and_the_run_figures(tiny_run):
    text = _card(tiny_run).text
    positions = [text.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for band, row in metrics["test"]["per_age_band"].items():
        if row["n"]:
            assert f"| {band} | {row['n']} | {row['age_mae']:.2f} |" in text
    for plot in sorted(p.name for p in tiny_run.glob("*.png")):
        assert f"(plots/{plot})" in text
    assert "Binary gender labels" in text and "No identification" in text and "No decisions about people" in text
    assert '"optimizer": "adamw"' in text  # the recipe, from recipe.json
    assert metrics["machine"] in text


def test_card_numbers_follow_the_run_files(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test"]["age_mae"] = 12.3456
    metrics["train_seconds"] = 7384.0
    (run / "metrics.json").write_text(json.dumps(metrics))
    card = _card(run)
    assert {r.metric_value for r in card.data.eval_results if r.dataset_split == "test" and r.metric_type == "mae"} \
        == {12.3456}
    assert "| Age MAE (years) |" in card.text and "| 12.35 |" in card.text and "2 h 3 min" in card.text


def test_card_from_a_config_alone_reports_only_what_it_knows(tiny_model_dir, tiny_run):
    bare = ModelCard((tiny_model_dir / "README.md").read_text())  # written by save_pretrained, no metrics
    assert bare.data.eval_results is None and "No evaluation results travel with this model." in bare.text
    saved = ModelCard((tiny_run / "model" / "README.md").read_text())  # training's save_pretrained
    config = json.loads((tiny_run / "model" / "config.json").read_text())
    assert {(r.dataset_split, r.metric_type, r.metric_value) for r in saved.data.eval_results} >= {
        ("test", "mae", config["metrics"]["test"]["age_mae"])}
    assert "python -m hub.push run" in saved.text


def test_card_usage_code_runs_against_the_pushed_repo(fake_hub, tiny_run, tmp_path, monkeypatch, capsys):
    from hub.push import push_run

    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    push_run(tiny_run, "me/tiny-cnn")
    text = ModelCard(fake_hub.files("me/tiny-cnn")["README.md"].decode()).text
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    (tmp_path / "face.jpg").write_bytes(synthetic_face(7, size=90))
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "card-usage", "exec"), {})  # agegender: from_pretrained + predict
    printed = capsys.readouterr().out
    assert "'age':" in printed and "'p_female':" in printed
    scope: dict = {}
    exec(compile(blocks[1], "card-keras", "exec"), scope)  # plain Keras
    assert scope["out"]["age"].shape == (1, 1)


def test_read_run_names_what_is_missing(tmp_path):
    from hub.cards import RunError, read_run

    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(RunError, match="lacks model/config.json, model/model.keras, recipe.json"):
        read_run(tmp_path)
