"""Turning face images into model inputs: one resize for training and inference, and a tf.data pipeline.

Training decodes and resizes every image once into a uint8 array (about 1 GB at 128x128 for the
whole pool, cached on disk), then augments whole batches on the fly with a single projective
transform per image (flip, rotation, scale and shift) plus brightness and contrast jitter. That
is several times cheaper than Keras' in-model `RandomRotation`, and it runs ahead of the
training step thanks to `prefetch`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("AGEGENDER_CACHE", Path.home() / ".cache" / "agegender"))


def resize_face(image: Image.Image, size: int) -> np.ndarray:
    """An RGB face crop as a (size, size, 3) uint8 array. The one resize used everywhere."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _decode(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):  # a datasets.Image value with decode=False
        return Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    raise TypeError(f"cannot decode {type(image).__name__}")


def dataset_to_arrays(ds, size: int, cache: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, size, size, 3) uint8, ages (N,) float32 and genders (N,) float32 of a `datasets.Dataset`.

    Cached on disk by the dataset's file names and contents, so a second run starts at once.
    """
    names = ds["file_name"]
    key = hashlib.sha256(("\n".join(names) + f"|{size}|{ds._fingerprint}").encode()).hexdigest()[:20]
    path = CACHE_DIR / "arrays" / f"{key}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            return z["images"], z["ages"], z["genders"]
    raw = ds.cast_column("image", ds.features["image"].__class__(decode=False))
    images = np.empty((len(ds), size, size, 3), dtype=np.uint8)
    for i, item in enumerate(raw["image"]):
        with _decode(item) as im:
            images[i] = resize_face(im, size)
    ages = np.asarray(ds["age"], dtype=np.float32)
    genders = np.asarray(ds["gender"], dtype=np.float32)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, ages=ages, genders=genders)
        os.replace(tmp, path)
    return images, ages, genders


@dataclass
class Augment:
    """Training-time augmentation, applied per image on whole batches.

    The report's is a horizontal flip and `RandomRotation(0.1)` (up to 10% of a full turn).
    """

    flip: bool = True
    rotation: float = 0.1  # fraction of a full turn, as in keras.layers.RandomRotation
    scale: float = 0.0  # zoom in or out by up to this fraction
    shift: float = 0.0  # shift by up to this fraction of the side
    brightness: float = 0.0  # add up to this fraction of 255
    contrast: float = 0.0  # scale contrast by up to this fraction


def augment_batch(images, aug: Augment, seed=None):
    """Augment a float32 batch (N, H, W, 3) in [0, 255] with one bilinear projective warp per image."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    rand = lambda lo, hi: tf.random.uniform([n], lo, hi)  # noqa: E731
    theta = rand(-aug.rotation, aug.rotation) * 2 * math.pi if aug.rotation else tf.zeros([n])
    s = rand(1 - aug.scale, 1 + aug.scale) if aug.scale else tf.ones([n])
    f = tf.where(rand(0, 1) < 0.5, -1.0, 1.0) if aug.flip else tf.ones([n])
    tx = rand(-aug.shift, aug.shift) * w if aug.shift else tf.zeros([n])
    ty = rand(-aug.shift, aug.shift) * h if aug.shift else tf.zeros([n])
    cx, cy = (w - 1) / 2, (h - 1) / 2
    cos, sin = tf.cos(theta) / s, tf.sin(theta) / s
    a0, a1, b0, b1 = f * cos, -sin, f * sin, cos
    a2 = cx + tx - (a0 * cx + a1 * cy)
    b2 = cy + ty - (b0 * cx + b1 * cy)
    zeros = tf.zeros([n])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        interpolation="BILINEAR", fill_mode="REFLECT", fill_value=0.0,
    )
    if aug.contrast:
        mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
        c = tf.reshape(rand(1 - aug.contrast, 1 + aug.contrast), [-1, 1, 1, 1])
        out = (out - mean) * c + mean
    if aug.brightness:
        out = out + tf.reshape(rand(-aug.brightness, aug.brightness) * 255.0, [-1, 1, 1, 1])
    if aug.contrast or aug.brightness:
        out = tf.clip_by_value(out, 0.0, 255.0)
    return out


def make_tf_dataset(images: np.ndarray, ages: np.ndarray, genders: np.ndarray, batch_size: int,
                    training: bool, augment: Augment | None = None, seed: int = 0, with_dist: bool = False,
                    drop_remainder: bool | None = None):
    """A batched, prefetched `tf.data.Dataset` of (float32 images in [0, 255], {"age", "gender"}).

    Augmentation (when given) is applied to training batches only; evaluation batches are the
    plain resized images. `with_dist` adds the age target for a distribution head.
    """
    import tensorflow as tf

    images_t = tf.constant(images)
    targets = {"age": tf.constant(ages.reshape(-1, 1)), "gender": tf.constant(genders.reshape(-1, 1))}
    if with_dist:
        targets["age_dist"] = targets["age"]
    ds = tf.data.Dataset.range(len(images))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    # Training drops a last partial batch (when there is a full one) so no replica of a
    # MirroredStrategy ever receives an empty batch; evaluation keeps every image.
    if drop_remainder is None:
        drop_remainder = training and len(images) >= batch_size
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def load(idx):
        x = tf.cast(tf.gather(images_t, idx), tf.float32)
        if training and augment is not None:
            x = augment_batch(x, augment)
        return x, {k: tf.gather(v, idx) for k, v in targets.items()}

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
