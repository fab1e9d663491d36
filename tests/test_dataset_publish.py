"""Publishing UTKFace as a Parquet dataset repo with its card, and loading it back, on the Hub stand-in."""

from __future__ import annotations

import io
import json
import logging

import datasets
import pytest
from huggingface_hub import DatasetCard

from conftest import synthetic_face, synthetic_names
from test_hub import OWNER_TOKEN, fake_hub  # noqa: F401  the shared Hub stand-in


@pytest.fixture
def published(fake_hub, utk_folder, monkeypatch, tmp_path):
    """UTKFace (synthetic) pushed to the stand-in as me/utkface, with the datasets cache in a temp dir."""
    from hub.push import push_dataset

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    commit = push_dataset(utk_folder, "me/utkface", tag="v1")
    return fake_hub, commit


def _rows(ds: datasets.Dataset) -> list[tuple]:
    return sorted((r["file_name"], r["age"], r["gender"], r["race"], r["image"].tobytes()) for r in ds)


def test_round_trip_keeps_splits_labels_and_images(published, utk_folder):
    from agegender.data import FEATURES, load_utkface

    hub, commit = published
    files = hub.files("me/utkface", repo_type="dataset")
    assert {"README.md", "distribution.png", "load_report.json", "data/train-00000-of-00001.parquet",
            "data/validation-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"} <= set(files)
    original = load_utkface(utk_folder)
    pulled = load_utkface("me/utkface", revision=commit.oid)
    assert list(pulled) == ["train", "validation", "test"]
    for split in original:
        assert pulled[split].features == FEATURES
        assert _rows(pulled[split]) == _rows(original[split])
    assert len(load_utkface("me/utkface", revision="v1")["train"]) == len(original["train"])


def test_dataset_card_covers_source_licence_schema_counts_and_distribution(published, utk_folder):
    from agegender.data import load_utkface, summarize

    hub, _ = published
    card = DatasetCard(hub.files("me/utkface", repo_type="dataset")["README.md"].decode())
    assert card.data.license == "other" and card.data.license_name == "utkface-non-commercial-research"
    assert [c["split"] for c in card.data.configs[0]["data_files"]] == ["train", "validation", "test"]
    text = card.text
    for needle in ("Zhang, Zhifei and Song, Yang and Qi, Hairong", "Conditional Adversarial Autoencoder",
                   "CVPR", "non-commercial research purposes only", "| `race` | class label |",
                   "-1 where the file name has no race", "## Known label problems", "(distribution.png)"):
        assert needle in text
    dd, report = load_utkface(utk_folder, return_report=True)
    summary = summarize(dd, report)
    splits = summary["splits"]
    for split, s in splits.items():
        assert f"| {split} | {s['n']} | {s['mean_age']} |" in text
    for band in splits["train"]["age_band"]:
        counts = " | ".join(str(splits[s]["age_band"].get(band, 0)) for s in splits)
        assert f"| {band} | {counts} |" in text
    for race in ("White", "Black", "Asian", "Indian", "Others"):
        counts = " | ".join(str(splits[s]["race"].get(race, 0)) for s in splits)
        assert f"| {race} | {counts} |" in text
    published_report = json.loads(hub.files("me/utkface", repo_type="dataset")["load_report.json"])
    assert published_report["kept"] == report.kept and published_report["source"] == "UTKFace"


def test_dataset_card_reports_the_label_problems_it_found(fake_hub, tmp_path, monkeypatch):
    from hub.push import stage_dataset

    folder = tmp_path / "UTKFace"
    folder.mkdir()
    for i, name in enumerate(synthetic_names(60)):
        (folder / name).write_bytes(synthetic_face(i))
    (folder / "39_1_20170116174525125.jpg.chip.jpg").write_bytes(synthetic_face(61))  # no race field
    (folder / "x_1_0_20170116174525125.jpg.chip.jpg").write_bytes(synthetic_face(62))  # no age: left out
    stage = stage_dataset(folder, tmp_path / "stage", "me/utkface")
    text = (stage / "README.md").read_text()
    assert "Left out 1 of 62 files: bad label (1)." in text
    assert "because their age and gender are certain: missing race (1)." in text


def test_loading_offline_uses_the_cache_and_says_so(published, monkeypatch, caplog):
    from agegender.data import load_utkface

    online = load_utkface("me/utkface")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING):
        offline = load_utkface("me/utkface")
    assert "HF_HUB_OFFLINE is set: using the cached copy of dataset repo 'me/utkface'" in caplog.text
    assert _rows(offline["test"]) == _rows(online["test"])


def test_missing_dataset_repo_is_a_clear_error(fake_hub):
    from agegender.data import DataSourceError, load_utkface

    with pytest.raises(DataSourceError, match="dataset repo 'me/absent' was not found .*hf auth login"):
        load_utkface("me/absent")


def test_dataset_repo_that_is_not_ours_is_a_clear_error(fake_hub, tmp_path, monkeypatch):
    from agegender.data import DataSourceError, load_utkface

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    fake_hub.seed("them/text", {"README.md": b"# a text dataset\n"}, repo_type="dataset")
    with pytest.raises(DataSourceError, match="them/text is not an agegender UTKFace dataset"):
        load_utkface("them/text")


def test_too_small_a_dataset_is_not_published(fake_hub, tmp_path):
    from hub.push import PushError, stage_dataset

    folder = tmp_path / "few"
    folder.mkdir()
    for i, name in enumerate(synthetic_names(4)):
        (folder / name).write_bytes(synthetic_face(i))
    with pytest.raises(PushError, match="empty .*split"):
        stage_dataset(folder, tmp_path / "stage", "me/few")


def test_distribution_plot_is_a_png(published):
    from PIL import Image

    hub, _ = published
    with Image.open(io.BytesIO(hub.files("me/utkface", repo_type="dataset")["distribution.png"])) as image:
        assert image.format == "PNG" and image.width > image.height
