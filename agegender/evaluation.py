"""Scoring a model on labelled face crops: overall, per age band, gender and race, and calibration."""

from __future__ import annotations

import time

import numpy as np

from .data import GENDERS, RACES, age_band
from .model import AgeGenderModel
from .pipeline import dataset_to_arrays


def _group(mask: np.ndarray, err: np.ndarray, correct: np.ndarray) -> dict:
    n = int(mask.sum())
    if n == 0:
        return {"n": 0, "age_mae": None, "gender_accuracy": None}
    return {"n": n, "age_mae": round(float(err[mask].mean()), 3), "gender_accuracy": round(float(correct[mask].mean()), 4)}


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE of the confidence in the predicted gender (equal-width bins over 0.5..1)."""
    conf = np.where(p >= 0.5, p, 1 - p)
    correct = (p >= 0.5) == (y == 1)
    edges = np.linspace(0.5, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf >= lo) & ((conf < hi) | (hi == 1.0))
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def metrics(true_age, pred_age, true_gender, p_female, race=None, intervals=None) -> dict:
    """All the figures we report, from arrays of labels and predictions."""
    true_age, pred_age = np.asarray(true_age, float), np.asarray(pred_age, float)
    true_gender, p_female = np.asarray(true_gender, int), np.asarray(p_female, float)
    err = np.abs(pred_age - true_age)
    correct = (p_female >= 0.5) == (true_gender == 1)
    bands = np.array([age_band(int(a)) for a in true_age])
    out = {
        "n": int(len(true_age)),
        "age_mae": round(float(err.mean()), 4) if len(err) else None,
        "gender_accuracy": round(float(correct.mean()), 4) if len(err) else None,
        "age_rmse": round(float(np.sqrt((err**2).mean())), 4) if len(err) else None,
        "gender_ece": round(expected_calibration_error(p_female, true_gender), 4) if len(err) else None,
        "per_age_band": {b: _group(bands == b, err, correct) for b in dict.fromkeys(age_band(a) for a in range(117))},
        "per_gender": {g: _group(true_gender == i, err, correct) for i, g in enumerate(GENDERS)},
        "confusion_matrix": {"labels": list(GENDERS), "matrix": [
            [int(((true_gender == t) & ((p_female >= 0.5) == bool(p))).sum()) for p in (0, 1)] for t in (0, 1)]},
    }
    if race is not None:
        race = np.asarray(race, int)
        out["per_race"] = {r: _group(race == i, err, correct) for i, r in enumerate(RACES)}
        if (race < 0).any():
            out["per_race"]["unknown"] = _group(race < 0, err, correct)
    if intervals is not None:
        lo, hi = np.asarray(intervals, float).T
        out["age_interval_coverage"] = round(float(((true_age >= lo) & (true_age <= hi)).mean()), 4)
    return out


def predict_dataset(model: AgeGenderModel, ds, batch_size: int = 64) -> dict:
    """Predictions for every image of a `datasets.Dataset`, with the throughput of the model itself."""
    images, ages, genders = dataset_to_arrays(ds, model.input_size)
    model.predict_batch(images[:1])  # warm-up: the first call traces the graph
    start = time.perf_counter()
    raw = model.predict_batch(images, batch_size=batch_size)
    seconds = time.perf_counter() - start
    intervals = [model.age_interval(a, s) for a, s in zip(raw["age"], raw["age_std"])]
    return {**raw, "true_age": ages, "true_gender": genders, "race": np.asarray(ds["race"]),
            "intervals": intervals, "seconds": seconds}


def evaluate(model: AgeGenderModel, ds, batch_size: int = 64) -> tuple[dict, dict]:
    """(metrics, predictions) for a model on a dataset of face crops."""
    pred = predict_dataset(model, ds, batch_size)
    m = metrics(pred["true_age"], pred["age"], pred["true_gender"], pred["p_female"], pred["race"], pred["intervals"])
    m["images_per_second"] = round(m["n"] / max(pred["seconds"], 1e-9), 1)
    m["model"] = model.name
    return m, pred
