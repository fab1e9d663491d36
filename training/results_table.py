"""Print the ablation table of training/RESULTS.md from the committed runs/*/metrics.json files.

    python -m training.results_table
"""

from __future__ import annotations

import json
from pathlib import Path

from training.recipes import get_recipe

RUNS = Path(__file__).resolve().parents[1] / "runs"


def command(run: Path, recipe: dict, metrics: dict) -> str:
    """The training command that reproduces a run (flags only where it departs from its recipe)."""
    default = get_recipe(metrics["architecture"], metrics["recipe"])
    flags = [f"--model {metrics['architecture']}", f"--recipe {metrics['recipe']}"]
    if metrics["epochs_run"] and sum(s["epochs"] for s in recipe["stages"]) != default.epochs:
        flags.append(f"--epochs {sum(s['epochs'] for s in recipe['stages'])}")
    if recipe["model"].get("l2") != default.model.l2:
        flags.append(f"--l2 {recipe['model']['l2']}")
    return f"`python -m training.train {' '.join(flags)} --data UTKFace.tar.gz --out runs/{run.name}`"


def main() -> None:
    print("| run | val MAE | val gender acc. | test MAE | test gender acc. | epochs run | train time | command |")
    print("|---|---|---|---|---|---|---|---|")
    for path in sorted(RUNS.glob("*/metrics.json")):
        m = json.loads(path.read_text())
        r = json.loads((path.parent / "recipe.json").read_text())
        v, t = m["validation"], m["test"]
        print(f"| {path.parent.name} | {v['age_mae']:.2f} | {v['gender_accuracy']:.1%} | {t['age_mae']:.2f} | "
              f"{t['gender_accuracy']:.1%} | {m['epochs_run']} | {m['train_seconds'] / 60:.0f} min | "
              f"{command(path.parent, r, m)} |")


if __name__ == "__main__":
    main()
