"""Train a model from a UTKFace source and write a complete run directory.

    python -m training.train --model custom --recipe ours --data ../shared/data/UTKFace.tar.gz --out runs/custom-ours

The run directory gets: `model/` (an AgeGenderModel, loadable with `agegender.load_model`),
`recipe.json`, `history.csv`/`history.json`, `curves.png`, `metrics.json` (validation and test)
and evaluation plots. `--resume` continues from the last finished epoch. Several GPUs are used
through `tf.distribute.MirroredStrategy` (`--devices all`); for several machines, set `TF_CONFIG`
on each and pass `--multi-worker` (MultiWorkerMirroredStrategy); no other code changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

log = logging.getLogger("training")


def make_strategy(devices: str | None, multi_worker: bool = False):
    """The tf.distribute strategy: default (one device), MirroredStrategy over devices, or multi-worker."""
    import tensorflow as tf

    if multi_worker:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not devices:
        return tf.distribute.get_strategy()
    if devices == "all":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in gpus]) if gpus else tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(devices.split(","))


def _losses(recipe):
    import keras

    from training.losses import AgeDistributionLoss

    losses = {"age": "mae", "gender": keras.losses.BinaryCrossentropy(label_smoothing=recipe.label_smoothing)}
    if recipe.age_loss == "dldl":
        losses["age_dist"] = AgeDistributionLoss(sigma=recipe.dldl_sigma)
    weights = {k: v for k, v in recipe.loss_weights.items() if k in losses}
    return losses, weights


def _optimizer(recipe, lr: float, steps: int):
    import keras

    rate = lr
    if recipe.schedule == "cosine":
        warm = int(steps * recipe.warmup_fraction)
        rate = keras.optimizers.schedules.CosineDecay(lr / 100, max(steps - warm, 1), alpha=0.01,
                                                      warmup_target=lr, warmup_steps=warm)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=recipe.momentum)
    if recipe.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=recipe.weight_decay)
    return keras.optimizers.Adam(rate)


def _hold_then_decay(hold: int, rate: float):
    """The report's schedule: keep the rate for `hold` epochs, then multiply by exp(-rate) each epoch."""

    def schedule(epoch, lr):
        return float(lr) if epoch < hold else float(lr * math.exp(-rate))

    return schedule


def compile_model(model, recipe, lr: float, steps: int) -> None:
    losses, weights = _losses(recipe)
    model.compile(optimizer=_optimizer(recipe, lr, steps), loss=losses, loss_weights=weights,
                  metrics={"age": ["mae"], "gender": ["accuracy"]})


def fit_gender_temperature(p: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the validation log-loss of sigmoid(logit(p) / T)."""
    logit = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))
    best, best_t = np.inf, 1.0
    for t in np.exp(np.linspace(np.log(0.3), np.log(5), 200)):
        q = np.clip(1 / (1 + np.exp(-logit / t)), 1e-7, 1 - 1e-7)
        nll = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


def calibrate(agm, val_pred: dict) -> dict:
    """Fit the gender temperature and the age interval on validation predictions (never on test)."""
    from agegender.evaluation import expected_calibration_error

    y = val_pred["true_gender"]
    raw_p = val_pred["raw_p_female"]
    t = fit_gender_temperature(raw_p, y)
    err = np.abs(val_pred["age"] - val_pred["true_age"])
    cal = {"gender_temperature": round(t, 4), "age_abs_error_q80": round(float(np.quantile(err, 0.8)), 3),
           "gender_ece_before": round(expected_calibration_error(raw_p, y), 4)}
    std = val_pred["age_std"]
    if not np.isnan(std).all():
        cal["age_std_scale"] = round(float(np.quantile(err / np.maximum(std, 1e-3), 0.8) / 1.2816), 4)
    agm.config["calibration"] = cal
    return cal


def _arrays(dd, size: int, limit: int | None):
    from agegender.pipeline import dataset_to_arrays

    out = {}
    for split in ("train", "validation", "test"):
        ds = dd[split]
        if limit:
            ds = ds.select(range(min(limit, len(ds))))
        out[split] = (ds, *dataset_to_arrays(ds, size))
    return out


def train(args) -> dict:
    import keras
    import tensorflow as tf

    from agegender.data import load_utkface
    from agegender.evaluation import evaluate, metrics, predict_dataset
    from agegender.model import AgeGenderModel
    from agegender.models import build_model
    from agegender.pipeline import make_tf_dataset
    from training import plots
    from training.recipes import get_recipe

    recipe = get_recipe(args.model, args.recipe)
    if args.batch_size:
        recipe.batch_size = args.batch_size
    if args.epochs:  # scale the stages to the requested total
        total = recipe.epochs
        recipe.stages = [replace(s, epochs=max(1, round(s.epochs * args.epochs / total))) for s in recipe.stages]
    if args.model == "vgg16":
        recipe.model.weights = None if args.weights == "none" else args.weights
    if args.input_size:
        recipe.model.input_size = args.input_size
    if args.l2 is not None:
        recipe.model.l2 = args.l2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps({**recipe.to_dict(), "seed": args.seed, "data": str(args.data)},
                                                indent=2, default=str))
    keras.utils.set_random_seed(args.seed)

    t0 = time.time()
    dd, report = load_utkface(args.data, seed=args.split_seed, return_report=True)
    arrays = _arrays(dd, recipe.model.input_size, args.limit)
    log.info("data ready in %.1fs: %s", time.time() - t0, {k: len(v[1]) for k, v in arrays.items()})
    with_dist = recipe.age_loss == "dldl"
    _, xtr, atr, gtr = arrays["train"]
    _, xva, ava, gva = arrays["validation"]
    strategy = make_strategy(args.devices, args.multi_worker)
    batch = recipe.batch_size * strategy.num_replicas_in_sync
    train_ds = make_tf_dataset(xtr, atr, gtr, batch, training=True, augment=recipe.augment, seed=args.seed,
                               with_dist=with_dist)
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:  # every replica needs a non-empty validation batch: use whole batches only
        val_batch = min(batch, len(xva) - len(xva) % replicas)
        val_ds = make_tf_dataset(xva, ava, gva, val_batch, training=False, with_dist=with_dist, drop_remainder=True)
    else:
        val_ds = make_tf_dataset(xva, ava, gva, batch, training=False, with_dist=with_dist)
    steps_per_epoch = max(len(xtr) // batch, 1)
    if args.steps_per_epoch:
        steps_per_epoch = args.steps_per_epoch
        train_ds = train_ds.repeat()

    with strategy.scope():
        model = build_model(recipe.model)
    history: list[dict] = []
    epoch0 = 0
    train_start = time.time()
    for i, stage in enumerate(recipe.stages):
        done_file = out / "checkpoints" / f"stage{i}.weights.h5"
        if args.resume and done_file.exists():
            model.load_weights(done_file)
            history += json.loads((out / "checkpoints" / f"stage{i}.history.json").read_text())
            epoch0 += stage.epochs
            log.info("stage %d already finished; loaded %s", i, done_file)
            continue
        with strategy.scope():
            if stage.trainable_base_layers is not None:
                from agegender.models import set_trainable_tail

                set_trainable_tail(model.get_layer("vgg16"), stage.trainable_base_layers)
            compile_model(model, recipe, stage.lr, stage.epochs * steps_per_epoch)
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=recipe.patience, restore_best_weights=True,
                                          verbose=1),
            keras.callbacks.CSVLogger(str(out / f"history_stage{i}.csv"), append=args.resume),
            keras.callbacks.BackupAndRestore(str(out / "checkpoints" / f"backup{i}")),
        ]
        if recipe.schedule == "hold_then_decay":
            callbacks.append(keras.callbacks.LearningRateScheduler(_hold_then_decay(recipe.hold_epochs, recipe.decay_rate)))
        h = model.fit(train_ds, validation_data=val_ds, epochs=stage.epochs, steps_per_epoch=steps_per_epoch,
                      callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
        stage_hist = [{"epoch": epoch0 + e + 1, "stage": i, **{k: float(v[e]) for k, v in h.history.items()}}
                      for e in range(len(h.history.get("loss", [])))]
        done_file.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(done_file)
        (out / "checkpoints" / f"stage{i}.history.json").write_text(json.dumps(stage_hist))
        history += stage_hist
        epoch0 += stage.epochs
    train_seconds = time.time() - train_start

    (out / "history.json").write_text(json.dumps(history, indent=2))
    keys = sorted({k for row in history for k in row})
    (out / "history.csv").write_text("\n".join([",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys)
                                                                      for r in history]) + "\n")
    if history:
        plots.training_curves(history, out / "curves.png")

    # Evaluate and save a plain, uncompiled single-device copy: no optimizer state in the
    # saved file (a third of the size) and no tie to the distribution strategy.
    trained = model
    model = build_model(replace(recipe.model, weights=None) if args.model == "vgg16" else recipe.model)
    model.set_weights(trained.get_weights())
    name = f"{args.model}-{args.recipe}" if args.recipe != "ours" or args.model != "custom" else "custom"
    agm = AgeGenderModel(model, {"name": name, "architecture": args.model, "recipe": recipe.to_dict(),
                                 "tta_flip": recipe.tta_flip})
    ds_val, ds_test = arrays["validation"][0], arrays["test"][0]
    val_pred = predict_dataset(agm, ds_val)
    val_pred["raw_p_female"] = val_pred["p_female"]
    cal = calibrate(agm, val_pred)
    val_metrics, _ = evaluate(agm, ds_val)
    test_metrics, test_pred = evaluate(agm, ds_test)
    total_params = int(model.count_params())
    summary = {
        "model": name, "recipe": args.recipe, "architecture": args.model,
        "validation": val_metrics, "test": test_metrics, "calibration": cal,
        "train_images": int(len(xtr)), "epochs_run": len(history), "train_seconds": round(train_seconds, 1),
        "train_images_per_second": round(len(history) * steps_per_epoch * batch / max(train_seconds, 1e-9), 1),
        "parameters": total_params, "weights_mb": round(total_params * 4 / 2**20, 2),
        "machine": _machine(), "split_seed": args.split_seed, "seed": args.seed,
        "data": str(args.data), "load_report": {k: v for k, v in report.as_dict().items() if not k.endswith("files")},
    }
    agm.config["metrics"] = {"test": {k: test_metrics[k] for k in ("n", "age_mae", "gender_accuracy", "gender_ece")},
                             "validation": {k: val_metrics[k] for k in ("n", "age_mae", "gender_accuracy")}}
    agm.config["training"] = {k: summary[k] for k in ("train_images", "epochs_run", "train_seconds", "machine",
                                                      "split_seed", "seed")}
    agm.save_pretrained(out / "model")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    plots.evaluation_plots(test_metrics, test_pred, out)
    log.info("test: age MAE %.3f, gender accuracy %.4f", test_metrics["age_mae"], test_metrics["gender_accuracy"])
    return summary


def _machine() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["custom", "vgg16"], default="custom")
    p.add_argument("--recipe", choices=["report", "ours"], default="ours")
    p.add_argument("--data", required=True, help="UTKFace archive, folder or Hub dataset id")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--epochs", type=int, help="total epochs (stages scaled to fit); default: the recipe's")
    p.add_argument("--batch-size", type=int, help="per-device batch size; default: the recipe's")
    p.add_argument("--input-size", type=int, help="override the recipe's input size")
    p.add_argument("--l2", type=float, help="override the model's L2 kernel regularisation")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation/test split")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoints")
    p.add_argument("--weights", default="imagenet", help="VGG16 base weights: imagenet, none, or a local file")
    p.add_argument("--devices", help="MirroredStrategy devices, e.g. 'all' or '/cpu:0,/cpu:1'")
    p.add_argument("--multi-worker", action="store_true", help="MultiWorkerMirroredStrategy (set TF_CONFIG)")
    p.add_argument("--limit", type=int, help="use at most this many images per split (smoke tests)")
    p.add_argument("--steps-per-epoch", type=int, help="cap the steps per epoch (smoke tests)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    from agegender.data import DataSourceError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        summary = train(parse_args(argv))
    except (DataSourceError, ValueError, OSError) as exc:
        sys.exit(f"training: error: {exc}")
    print(json.dumps({k: summary[k] for k in ("model", "train_seconds", "epochs_run")} |
                     {"test_age_mae": summary["test"]["age_mae"],
                      "test_gender_accuracy": summary["test"]["gender_accuracy"]}))


if __name__ == "__main__":
    main()
