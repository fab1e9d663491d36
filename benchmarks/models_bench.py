"""Benchmark the data side and the models: loading, the tf.data pipeline, training and inference speed.

    .venv/bin/python benchmarks/models_bench.py [--data ../shared/data/UTKFace.tar.gz] > benchmarks/models.json

Writes a JSON document; benchmarks/models.md summarises it. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _time(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def pipeline_throughput(images, ages, genders, batch: int, augment, batches: int = 60) -> float:
    """Images/s the tf.data pipeline delivers (decode done, augmentation included) with no model attached."""
    from agegender.pipeline import make_tf_dataset

    ds = make_tf_dataset(images, ages, genders, batch, training=True, augment=augment).repeat()
    it = iter(ds)
    for _ in range(5):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def in_model_rotation_throughput(images, batch: int, batches: int = 30) -> float:
    """Images/s of Keras' own RandomFlip + RandomRotation(0.1) run as layers, the report's way."""
    import keras
    import tensorflow as tf

    aug = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)])
    fn = tf.function(lambda x: aug(x, training=True))
    x = tf.constant(images[:batch].astype("float32"))
    fn(x)
    return batches * batch / _time(lambda: [fn(x) for _ in range(batches)])


def training_throughput(cfg, recipe, batch: int, steps: int = 15) -> float:
    """Images/s of full training steps (forward, backward, update) on in-memory batches."""
    import keras

    from agegender.models import build_model
    from agegender.pipeline import make_tf_dataset
    from training.train import compile_model

    net = build_model(cfg)
    compile_model(net, recipe, 1e-3, 100)
    n = batch * 4
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (n, cfg.input_size, cfg.input_size, 3), dtype=np.uint8)
    a, g = rng.uniform(1, 90, n).astype("float32"), rng.integers(0, 2, n).astype("float32")
    ds = make_tf_dataset(x, a, g, batch, training=True, augment=recipe.augment,
                         with_dist=recipe.age_loss == "dldl").repeat()
    net.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    start = time.perf_counter()
    net.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    keras.backend.clear_session()
    return steps * batch / (time.perf_counter() - start)


def inference_throughput(model, batch: int, repeat: int = 20) -> float:
    """Images/s of `AgeGenderModel.predict_batch` (flip averaging included when the model uses it)."""
    x = np.random.default_rng(0).uniform(0, 255, (batch, model.input_size, model.input_size, 3)).astype("float32")
    model.predict_batch(x, batch_size=batch)
    return batch / _time(lambda: model.predict_batch(x, batch_size=batch), repeat)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/data/UTKFace.tar.gz")
    args = p.parse_args()
    from agegender.data import load_utkface
    from agegender.loading import load_model
    from agegender.model import AgeGenderModel
    from agegender.models import VGG16Config, build_model
    from agegender.pipeline import dataset_to_arrays
    from training.recipes import custom_ours, custom_report, vgg16_ours, vgg16_report

    out: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                            f"Python {platform.python_version()}", "date": time.strftime("%Y-%m-%d")}
    t = time.perf_counter()
    dd, report = load_utkface(args.data, return_report=True)
    out["load"] = {"seconds": round(time.perf_counter() - t, 2), "kept": report.kept,
                   "skipped": len(report.skipped), "kept_with_issues": len(report.kept_with_issues),
                   "duplicate_groups": report.duplicate_groups, "splits": {k: len(v) for k, v in dd.items()}}
    train = dd["train"]
    for size in (64, 128):
        t = time.perf_counter()
        dataset_to_arrays(train, size, cache=False)
        out[f"decode_resize_{size}px_images_per_second"] = round(len(train) / (time.perf_counter() - t), 1)
    x64, a64, g64 = dataset_to_arrays(train.select(range(2048)), 64, cache=False)
    x128, a128, g128 = dataset_to_arrays(train.select(range(2048)), 128, cache=False)
    out["pipeline_images_per_second"] = {
        "report_128px_flip_rot10_batch32": round(pipeline_throughput(x128, a128, g128, 32, custom_report().augment), 1),
        "ours_64px_full_aug_batch64": round(pipeline_throughput(x64, a64, g64, 64, custom_ours().augment), 1),
        "keras_in_model_RandomRotation_128px_batch32": round(in_model_rotation_throughput(x128, 32), 1),
    }
    vgg_report, vgg_ours = vgg16_report(), vgg16_ours()
    vgg_report.model = VGG16Config(weights=None)
    vgg_ours.model.weights = None
    vgg_ours.model.trainable_base_layers = 4
    out["training_images_per_second"] = {
        "custom_report_128px_batch32": round(training_throughput(custom_report().model, custom_report(), 32), 1),
        "custom_ours_64px_batch64": round(training_throughput(custom_ours().model, custom_ours(), 64), 1),
        "vgg16_report_128px_batch32": round(training_throughput(vgg_report.model, vgg_report, 32, steps=6), 1),
        "vgg16_ours_128px_batch32_block5": round(training_throughput(vgg_ours.model, vgg_ours, 32, steps=6), 1),
    }
    infer = {}
    models = {}
    for name in ("custom", "custom-report"):
        try:
            models[name] = load_model(name)
        except Exception as exc:  # not trained yet: record it rather than fail
            infer[name] = f"unavailable: {exc}"
    models["vgg16 (untrained weights, same compute)"] = AgeGenderModel(build_model(VGG16Config(weights=None)),
                                                                       {"name": "vgg16"})
    for name, model in models.items():
        infer[name] = {f"batch{b}": round(inference_throughput(model, b, 30 if b == 1 else 5), 1) for b in (1, 64)}
        infer[name]["tta_flip"] = bool(model.config.get("tta_flip"))
    out["inference_images_per_second"] = infer
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
