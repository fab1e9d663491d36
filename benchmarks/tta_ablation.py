"""Validation effect of test-time flip averaging and of the gender calibration, for a trained model.

    .venv/bin/python benchmarks/tta_ablation.py --model custom [--data ../shared/data/UTKFace.tar.gz]

Uses the validation split only (never the test split), so it can inform the recipe.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    from agegender.data import load_utkface
    from agegender.evaluation import evaluate
    from agegender.loading import load_model

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="custom")
    p.add_argument("--data", default="../shared/data/UTKFace.tar.gz")
    args = p.parse_args()
    val = load_utkface(args.data)["validation"]
    model = load_model(args.model)
    calibration = dict(model.config.get("calibration", {}))
    rows = {}
    for tta in (False, True):
        for calibrated in (False, True):
            model.config["tta_flip"] = tta
            model.config["calibration"] = calibration if calibrated else {}
            m, _ = evaluate(model, val)
            rows[f"tta={tta}, calibrated={calibrated}"] = {k: m[k] for k in ("n", "age_mae", "gender_accuracy", "gender_ece")}
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
