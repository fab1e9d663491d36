"""Model and dataset cards generated from files: a training run's directory, a model's config, a loaded dataset.

No number in a card is typed by hand: each comes from the run's `metrics.json`, `recipe.json` and
`model/config.json`, or from the dataset itself. The prose around the numbers lives in
`hub/templates/*.md` (Jinja); the YAML metadata is built with huggingface_hub's card classes, so a
card always parses with `ModelCard` / `DatasetCard`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_DATASET_REPO = "agegender/utkface"
PLOTS_DIR = "plots"  # where a published run keeps its PNGs
DATASET_PLOT = "distribution.png"
UTKFACE_URL = "https://susanqq.github.io/UTKFace/"
UTKFACE_BIBTEX = """@inproceedings{zhang2017age,
  title     = {Age Progression/Regression by Conditional Adversarial Autoencoder},
  author    = {Zhang, Zhifei and Song, Yang and Qi, Hairong},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2017}
}"""
# Titles of the plots `training.train` writes; any other PNG in a run gets a title from its name.
PLOT_TITLES = {
    "curves.png": "Training curves (train vs validation)",
    "test_age_scatter.png": "Predicted vs true age (test split)",
    "test_mae_by_age_band.png": "Age MAE by age band (test split)",
    "test_gender_confusion.png": "Gender confusion matrix (test split)",
    "test_per_race.png": "Age MAE and gender accuracy by race (test split)",
}
CHILD_BANDS = ("0-4", "5-12")
ELDER_BANDS = ("70-79", "80+")


class RunError(ValueError):
    """A directory that is not a finished training run; the message names what is missing."""


@dataclass
class Run:
    """The files of a finished training run, read once."""

    directory: Path
    metrics: dict
    recipe: dict
    config: dict
    plots: list[str]  # PNG file names in the run directory


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON: {exc}") from exc


def read_run(run_dir: str | Path) -> Run:
    """Read a run directory written by `training.train`; raise `RunError` if it is not finished."""
    directory = Path(run_dir)
    required = ("model/config.json", "model/model.keras", "metrics.json", "recipe.json")
    missing = [name for name in required if not (directory / name).is_file()]
    if missing:
        raise RunError(f"{directory} is not a finished training run: it lacks {', '.join(missing)} "
                       f"(`python -m training.train ... --out {directory}` writes them when it ends)")
    return Run(directory=directory, metrics=_read_json(directory / "metrics.json"),
               recipe=_read_json(directory / "recipe.json"), config=_read_json(directory / "model/config.json"),
               plots=sorted(p.name for p in directory.glob("*.png")))


def _render(template: str, **context: Any) -> str:
    """Render a template of hub/templates; an undefined name is an error, never a silent blank."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(mae=_mae, pct=_pct, num=_num)
    return env.get_template(template).render(**context)


def _mae(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.1%" if 0 < value < 0.0005 else f"{100 * value:.1f}%"


def _num(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}g}"


# ----- model card -------------------------------------------------------------------------------------

def _eval_results(evaluations: dict[str, dict], dataset_repo: str) -> list[EvalResult]:
    """The model-index entries: age MAE/RMSE and gender accuracy/ECE on each evaluated split."""
    specs = (  # (metrics key, task type, task name, metric type, metric name)
        ("age_mae", "age-estimation", "Age estimation", "mae", "Age MAE (years)"),
        ("age_rmse", "age-estimation", "Age estimation", "rmse", "Age RMSE (years)"),
        ("gender_accuracy", "image-classification", "Gender classification", "accuracy", "Gender accuracy"),
        ("gender_ece", "image-classification", "Gender classification", "ece", "Gender expected calibration error"),
    )
    results = []
    for split, m in evaluations.items():
        for key, task_type, task_name, metric_type, metric_name in specs:
            if m.get(key) is not None:
                results.append(EvalResult(task_type=task_type, task_name=task_name, dataset_type=dataset_repo,
                                          dataset_name="UTKFace", dataset_split=split, metric_type=metric_type,
                                          metric_name=metric_name, metric_value=m[key]))
    return results


EVAL_ROWS = (  # (metrics key, row label, formatter) of the overall evaluation table
    ("n", "Images", _num),
    ("age_mae", "Age MAE (years)", _mae),
    ("age_rmse", "Age RMSE (years)", _mae),
    ("gender_accuracy", "Gender accuracy", _pct),
    ("gender_ece", "Gender calibration error (ECE)", _num),
    ("age_interval_coverage", "Age interval coverage (aim: 80%)", _pct),
    ("images_per_second", "Throughput (images/s, training machine)", _num),
)


def _eval_rows(evaluations: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """The overall table: one row per metric that at least one split has, one cell per split."""
    return [(label, [fmt(m.get(key)) for m in evaluations.values()])
            for key, label, fmt in EVAL_ROWS if any(m.get(key) is not None for m in evaluations.values())]


def _groups(m: dict, key: str) -> list[dict]:
    """Rows of a per-group table, skipping groups with no images."""
    return [{"group": g, **v} for g, v in (m.get(key) or {}).items() if v.get("n")]


def _pooled(m: dict, bands: tuple[str, ...]) -> dict | None:
    """Age MAE and gender accuracy over several age bands, weighted by their image counts."""
    rows = [m.get("per_age_band", {}).get(b) for b in bands]
    rows = [r for r in rows if r and r.get("n")]
    n = sum(r["n"] for r in rows)
    if not n:
        return None
    return {"n": n, "bands": ", ".join(b for b in bands if (m.get("per_age_band", {}).get(b) or {}).get("n")),
            "age_mae": sum(r["age_mae"] * r["n"] for r in rows) / n,
            "gender_accuracy": sum(r["gender_accuracy"] * r["n"] for r in rows) / n}


def _shares(rows: list[dict]) -> str:
    """Each group's share of the images in a per-group table, as text: 'White 42.0%, Black 19.1%, ...'."""
    total = sum(r["n"] for r in rows) or 1
    return ", ".join(f"{r['group']} {_pct(r['n'] / total)}" for r in rows)


def _compact_json(data: dict) -> str:
    """JSON with one line per key (two levels deep), so a recipe reads at a glance."""
    def block(d: dict, indent: str) -> str:
        lines = [f"{indent}  {json.dumps(k)}: " + (block(v, indent + "  ") if isinstance(v, dict) and indent == ""
                                                    else json.dumps(v)) for k, v in d.items()]
        return "{\n" + ",\n".join(lines) + f"\n{indent}}}"
    return block(data, "")


def _spread(rows: list[dict], key: str, worst_is_high: bool) -> dict | None:
    """The best and worst group on one metric, for the bias section."""
    rows = [r for r in rows if r.get(key) is not None]
    if len(rows) < 2:
        return None
    ordered = sorted(rows, key=lambda r: r[key], reverse=worst_is_high)
    return {"worst": ordered[0], "best": ordered[-1]}


def _recipe_rows(recipe: dict) -> list[tuple[str, str]]:
    """The recipe as (setting, value) rows, in the order a reader needs them."""
    model = recipe.get("model", {})
    stages = recipe.get("stages", [])
    rows = [("Recipe", recipe.get("name")), ("Architecture", model.get("architecture")),
            ("Input size", f"{model.get('input_size')} x {model.get('input_size')} RGB"),
            ("Head", model.get("head"))]
    if model.get("architecture") == "vgg16":
        rows.append(("Base weights", model.get("weights") or "none (trained from scratch)"))
    optimizer = recipe.get("optimizer")
    if optimizer == "adamw":
        optimizer = f"AdamW, weight decay {recipe.get('weight_decay')}"
    elif optimizer == "sgd":
        optimizer = f"SGD, momentum {recipe.get('momentum')}"
    rows.append(("Optimizer", optimizer))
    stage_text = "; ".join(
        f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''} at lr {s['lr']}"
        + ("" if s.get("trainable_base_layers") is None else f", {s['trainable_base_layers']} base layers trainable")
        for s in stages)
    rows.append(("Stages", stage_text))
    schedule = recipe.get("schedule")
    if schedule == "cosine":
        schedule = f"cosine decay, {100 * recipe.get('warmup_fraction', 0):.0f}% warm-up"
    elif schedule == "hold_then_decay":
        schedule = f"constant for {recipe.get('hold_epochs')} epochs, then x exp(-{recipe.get('decay_rate')}) per epoch"
    rows += [("Learning-rate schedule", schedule), ("Batch size", recipe.get("batch_size"))]
    age_loss = recipe.get("age_loss")
    if age_loss == "dldl":
        age_loss = f"label distribution (KL to a Gaussian, sigma {recipe.get('dldl_sigma')}) plus MAE on its mean"
    rows += [("Age loss", age_loss),
             ("Gender loss", f"binary cross-entropy, label smoothing {recipe.get('label_smoothing')}"),
             ("Loss weights", ", ".join(f"{k} {v}" for k, v in (recipe.get("loss_weights") or {}).items()))]
    augment = recipe.get("augment") or {}
    rows.append(("Augmentation", ", ".join("horizontal flip" if k == "flip" else f"{k} {v}"
                                           for k, v in augment.items() if v) or "none"))
    rows += [("Early stopping", f"patience {recipe.get('patience')} epochs on validation loss, best weights kept"),
             ("Test-time augmentation", "horizontal flip, averaged" if recipe.get("tta_flip") else "none")]
    if "seed" in recipe:
        rows.append(("Seed", recipe["seed"]))
    return [(k, str(v)) for k, v in rows if v is not None]


def _hours(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s"


def model_card(config: dict, run: Run | str | Path | None = None, repo_id: str | None = None,
               dataset_repo: str = DEFAULT_DATASET_REPO, plots_dir: str = PLOTS_DIR) -> ModelCard:
    """The model card: metadata with a model-index, then what, how, data, evaluation, limits, uses and compute.

    With only a model's `config` (what `save_pretrained` knows) the card reports the overall metrics the
    config carries; with the `run` it came from it adds per-group results, the recipe and the plots.
    """
    from agegender.model import AgeGenderModel

    if run is not None and not isinstance(run, Run):
        run = read_run(run)
    name = config.get("name", "agegender")
    if run is not None:
        evaluations = {s: run.metrics[s] for s in ("validation", "test") if isinstance(run.metrics.get(s), dict)}
        recipe = run.recipe
    else:
        stored = config.get("metrics") or {}
        evaluations = {s: stored[s] for s in ("validation", "test") if isinstance(stored.get(s), dict)}
        recipe = config.get("recipe") or {}
    test = evaluations.get("test", {})
    architecture = config.get("architecture") or recipe.get("model", {}).get("architecture", "custom")

    base = AgeGenderModel._hub_mixin_info.model_card_data  # library_name, license, tags, pipeline_tag
    data = ModelCardData(**base.to_dict())
    data.datasets = [dataset_repo]
    data.metrics = ["mae", "accuracy"]
    data.model_name = f"agegender-{name}"
    data.tags = sorted(set(data.tags or []) | {architecture, "face"})
    data.eval_results = _eval_results(evaluations, dataset_repo) or None
    race_rows = _groups(test, "per_race")
    band_rows = _groups(test, "per_age_band")
    metrics = run.metrics if run else {}
    context = {
        "card_data": data.to_yaml(),
        "name": name,
        "architecture": architecture,
        "repo_id": repo_id or "<repo-id-or-model-directory>",
        "repo_url": AgeGenderModel._hub_mixin_info.repo_url,
        "dataset_repo": dataset_repo,
        "config": config,
        "preprocessing": config.get("preprocessing", {}),
        "labels": config.get("labels", {}),
        "calibration": config.get("calibration", {}),
        "tta_flip": bool(config.get("tta_flip")),
        "recipe_rows": _recipe_rows(recipe) if recipe else [],
        "recipe_json": _compact_json(recipe),
        "run": run,
        "metrics": metrics,
        "load_report": metrics.get("load_report") or {},
        "data_source": Path(str(metrics.get("data", ""))).name or None,
        "evaluations": evaluations,
        "eval_rows": _eval_rows(evaluations),
        "test": test,
        "band_rows": band_rows,
        "gender_rows": _groups(test, "per_gender"),
        "race_rows": race_rows,
        "confusion": test.get("confusion_matrix"),
        "plots": [(PLOT_TITLES.get(p, p.removesuffix(".png").replace("_", " ")), f"{plots_dir}/{p}")
                  for p in (run.plots if run else [])],
        "race_shares": _shares(race_rows),
        "band_shares": _shares(band_rows),
        "children": _pooled(test, CHILD_BANDS),
        "elderly": _pooled(test, ELDER_BANDS),
        "band_spread": _spread(band_rows, "age_mae", worst_is_high=True),
        "race_mae_spread": _spread(race_rows, "age_mae", worst_is_high=True),
        "race_acc_spread": _spread(race_rows, "gender_accuracy", worst_is_high=False),
        "train_time": _hours(metrics.get("train_seconds") or (config.get("training") or {}).get("train_seconds")),
        "training": config.get("training") or {},
        "citation": UTKFACE_BIBTEX,
        "utkface_url": UTKFACE_URL,
    }
    return ModelCard(_render("model_card.md", **context))


# ----- dataset card -----------------------------------------------------------------------------------

def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def dataset_card(summary: dict, repo_id: str, splits: list[str] | None = None,
                 plot: str | None = DATASET_PLOT) -> DatasetCard:
    """The dataset card for UTKFace as we publish it, from `agegender.data.summarize(dd, report)`."""
    from agegender.data import GENDERS, RACES

    splits = splits or list(summary["splits"])
    data = DatasetCardData(
        license="other", license_name="utkface-non-commercial-research", license_link=UTKFACE_URL,
        pretty_name="UTKFace (agegender splits)", task_categories=["image-classification"],
        tags=["age-estimation", "gender-classification", "faces", "utkface"],
        size_categories=[_size_category(summary["total"])],
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits]}],
    )
    tables = {}
    for key, groups in _group_orders().items():
        rows = []
        for g in groups:
            counts = [summary["splits"][s][key].get(g, 0) for s in splits]
            if any(counts):
                rows.append({"group": g, "counts": counts, "share": sum(counts) / max(summary["total"], 1)})
        tables[key] = rows
    report = summary.get("report") or {}
    return DatasetCard(_render(
        "dataset_card.md", card_data=data.to_yaml(), repo_id=repo_id, splits=splits, summary=summary,
        tables=tables, skew=_skew(tables), report=report, plot=plot, citation=UTKFACE_BIBTEX,
        utkface_url=UTKFACE_URL, races=RACES, genders=GENDERS,
    ))


def _group_orders() -> dict[str, list[str]]:
    """The groups of each distribution, in reading order (summaries list races with 'unknown' first)."""
    from agegender.data import AGE_BANDS, GENDERS, RACES, age_band

    return {"age_band": [age_band(lo) for lo, _ in AGE_BANDS], "gender": list(GENDERS),
            "race": [*RACES, "unknown"]}


def _skew(tables: dict[str, list[dict]]) -> str:
    """A sentence on how unbalanced the data is: the largest and smallest age bands and race labels."""
    parts = []
    bands = sorted(tables["age_band"], key=lambda r: r["share"], reverse=True)
    if len(bands) >= 3:
        top = bands[:2]
        parts.append(f"The two largest age bands, {top[0]['group']} and {top[1]['group']}, hold "
                     f"{_pct(top[0]['share'] + top[1]['share'])} of the images; the smallest, {bands[-1]['group']}, "
                     f"holds {_pct(bands[-1]['share'])}.")
    races = sorted((r for r in tables["race"] if r["group"] != "unknown"), key=lambda r: r["share"], reverse=True)
    if len(races) >= 2:
        parts.append(f"The most common race label, {races[0]['group']}, covers {_pct(races[0]['share'])}; "
                     f"the least common, {races[-1]['group']}, {_pct(races[-1]['share'])}.")
    return " ".join(parts)


def distribution_plot(summary: dict, path: str | Path) -> Path:
    """Bar charts of the images per age band, gender and race, one bar per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    splits = list(summary["splits"])
    orders = _group_orders()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"width_ratios": [3, 1, 2]})
    for ax, key, title in zip(axes, ("age_band", "gender", "race"), ("age band", "gender", "race"), strict=True):
        present = {g for s in splits for g in summary["splits"][s][key]}
        groups = [g for g in orders[key] if g in present]
        x = np.arange(len(groups))
        width = 0.8 / len(splits)
        for i, s in enumerate(splits):
            ax.bar(x + i * width, [summary["splits"][s][key].get(g, 0) for g in groups], width, label=s)
        ax.set_xticks(x + 0.4 - width / 2, groups, rotation=30 if key == "age_band" else 0)
        ax.set_title(f"images per {title}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
