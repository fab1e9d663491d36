"""The two networks: the report's custom CNN (and our variant of it) and the VGG16 transfer model.

Every model takes RGB face crops as float32 pixels in [0, 255] at its input size and does its own
scaling inside, so the preprocessing contract travels with the saved file. Outputs are a dict:
`age` (years, >= 0) and `gender` (P(female)); our recipe adds `age_dist`, a distribution over
ages 0..116 whose mean is `age`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import keras
from keras import layers, ops, regularizers

MAX_AGE = 116
N_AGES = MAX_AGE + 1
VGG_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="agegender")
class VGGPreprocess(layers.Layer):
    """VGG16's own `preprocess_input` ('caffe' mode) as a layer: RGB -> BGR, minus the ImageNet mean."""

    def call(self, x):
        x = ops.flip(x, axis=-1)
        return x - ops.convert_to_tensor(VGG_MEAN_BGR, dtype=x.dtype)


@keras.saving.register_keras_serializable(package="agegender")
class ExpectedAge(layers.Layer):
    """The mean of a softmax over ages 0..116: a smooth, bounded age estimate."""

    def call(self, probs):
        ages = ops.arange(N_AGES, dtype=probs.dtype)
        return ops.sum(probs * ages, axis=-1, keepdims=True)


@dataclass
class CustomCNNConfig:
    """The custom CNN family. Defaults are the report's architecture ("report" recipe)."""

    architecture: str = "custom"
    input_size: int = 128
    # report: trunk 16 3x3, 32 3x3, 64 2x2 (conv, no bias, L2; BN; ReLU; max-pool 2x2);
    # an entry (filters, kernel, convs) stacks several convs before the pool
    trunk: tuple = ((16, 3), (32, 3), (64, 2))
    padding: str = "valid"
    # [unstated] gender conv block filters: 128 3x3 takes the 14x14 trunk output to 6x6 (< 10x10)
    gender_conv: tuple = ((128, 3),)
    age_conv: tuple = ((128, 3), (256, 3))
    # [unstated] L2 strength 1e-4, a common CNN default. Keras' own default (0.01) made training
    # unstable with BatchNorm (shrinking weights raise the effective learning rate): training/RESULTS.md
    l2: float = 1e-4
    gender_dense: tuple = (64,)
    gender_dropout: float = 0.85
    age_dense: tuple = (512, 128)
    # [unstated] age head dropout: 0.2, the rate the report uses in its VGG16 age head
    age_dropout: float = 0.2
    # "report" heads flatten; "ours" pools globally and predicts an age distribution
    head: str = "report"  # "report" | "distribution"
    # [unstated] age output bias starts at 30 years so the ReLU output is not dead at init
    age_bias_init: float = 30.0


@dataclass
class VGG16Config:
    """The VGG16 transfer model. Defaults are the report's architecture ("report" recipe)."""

    architecture: str = "vgg16"
    input_size: int = 128
    weights: str | None = "imagenet"  # "imagenet", a local .h5/.weights.h5 file, or None
    trainable_base_layers: int = 3  # exactly the base's last three layers train
    scaling: str = "unit"  # report: /255 ("unit"); ours: VGG's own "caffe" preprocessing
    l2: float = 1e-4  # [unstated] as for the custom CNN (Keras' 0.01 proved unstable there)
    gender_dense: tuple = (128, 256)
    gender_dropout: tuple = (0.3, 0.5)
    age_dense: tuple = (256, 512)
    age_dropout: float = 0.2
    head: str = "report"  # "report" | "distribution"
    age_bias_init: float = 30.0


def config_from_dict(d: dict) -> CustomCNNConfig | VGG16Config:
    """Rebuild a model config saved with `asdict` (lists back to tuples)."""
    cls = VGG16Config if d.get("architecture") == "vgg16" else CustomCNNConfig
    known = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
             for k, v in d.items() if k in cls.__dataclass_fields__}
    return cls(**known)


def _conv_block(x, filters: int, kernel: int, l2: float, name: str, convs: int = 1, padding: str = "valid"):
    """`convs` x (Conv2D without bias -> BatchNorm -> ReLU), then a 2x2 max-pool."""
    for j in range(convs):
        suffix = "" if convs == 1 else str(j)
        x = layers.Conv2D(filters, kernel, use_bias=False, padding=padding,
                          kernel_regularizer=regularizers.l2(l2) if l2 else None, name=f"{name}_conv{suffix}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{suffix}")(x)
        x = layers.ReLU(name=f"{name}_relu{suffix}")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def _distribution_heads(age_feat, gender_feat, dropout: float) -> dict:
    """Our heads: softmax over ages (its mean is the age) and a sigmoid for gender."""
    a = layers.Dropout(dropout, name="age_drop")(age_feat)
    dist = layers.Dense(N_AGES, activation="softmax", name="age_dist")(a)
    age = ExpectedAge(name="age")(dist)
    g = layers.Dropout(dropout, name="gender_drop")(gender_feat)
    gender = layers.Dense(1, activation="sigmoid", name="gender")(g)
    return {"age": age, "gender": gender, "age_dist": dist}


def build_custom_cnn(cfg: CustomCNNConfig | None = None) -> keras.Model:
    """The custom multi-task CNN: a shared conv trunk, a gender head and an age head."""
    cfg = cfg or CustomCNNConfig()
    inp = keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    x = layers.Rescaling(1 / 255.0, name="scale")(inp)
    for i, (f, k, *n) in enumerate(cfg.trunk):
        x = _conv_block(x, f, k, cfg.l2, f"trunk{i}", convs=n[0] if n else 1, padding=cfg.padding)
    if cfg.head == "distribution":
        feat = layers.GlobalAveragePooling2D(name="gap")(x)
        outputs = _distribution_heads(feat, feat, cfg.age_dropout)
        return keras.Model(inp, outputs, name="custom_cnn")
    g = x
    for i, (f, k) in enumerate(cfg.gender_conv):
        g = _conv_block(g, f, k, cfg.l2, f"gender{i}")
    g = layers.Flatten(name="gender_flat")(g)
    for i, units in enumerate(cfg.gender_dense):
        g = layers.Dense(units, kernel_regularizer=regularizers.l2(cfg.l2), name=f"gender_dense{i}")(g)
        g = layers.BatchNormalization(name=f"gender_dense{i}_bn")(g)
        g = layers.ReLU(name=f"gender_dense{i}_relu")(g)
        g = layers.Dropout(cfg.gender_dropout, name=f"gender_dense{i}_drop")(g)
    gender = layers.Dense(1, activation="sigmoid", name="gender")(g)
    a = x
    for i, (f, k) in enumerate(cfg.age_conv):
        a = _conv_block(a, f, k, cfg.l2, f"age{i}")
    a = layers.Flatten(name="age_flat")(a)
    for i, units in enumerate(cfg.age_dense):
        a = layers.Dense(units, kernel_regularizer=regularizers.l2(cfg.l2), name=f"age_dense{i}")(a)
        a = layers.Dropout(cfg.age_dropout, name=f"age_dense{i}_drop")(a)
        a = layers.ReLU(name=f"age_dense{i}_relu")(a)
    age = layers.Dense(1, activation="relu", name="age",
                       bias_initializer=keras.initializers.Constant(cfg.age_bias_init))(a)
    return keras.Model(inp, {"age": age, "gender": gender}, name="custom_cnn")


def build_vgg16(cfg: VGG16Config | None = None) -> keras.Model:
    """VGG16 (no top) with only its last `trainable_base_layers` layers trainable, run in inference mode."""
    cfg = cfg or VGG16Config()
    local_file = cfg.weights not in (None, "imagenet")
    base = keras.applications.VGG16(
        weights=None if local_file else cfg.weights,
        include_top=False,
        input_shape=(cfg.input_size, cfg.input_size, 3),
    )
    if local_file:
        base.load_weights(cfg.weights)
    set_trainable_tail(base, cfg.trainable_base_layers)
    inp = keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    x = VGGPreprocess(name="scale")(inp) if cfg.scaling == "caffe" else layers.Rescaling(1 / 255.0, name="scale")(inp)
    x = base(x, training=False)
    if cfg.head == "distribution":
        feat = layers.GlobalAveragePooling2D(name="gap")(x)
        return keras.Model(inp, _distribution_heads(feat, feat, cfg.age_dropout), name="vgg16_agegender")
    x = layers.Flatten(name="flat")(x)
    g = x
    for i, (units, rate) in enumerate(zip(cfg.gender_dense, cfg.gender_dropout)):
        g = layers.Dense(units, activation="relu", kernel_regularizer=regularizers.l2(cfg.l2), name=f"gender_dense{i}")(g)
        g = layers.Dropout(rate, name=f"gender_dense{i}_drop")(g)
    gender = layers.Dense(1, activation="sigmoid", name="gender")(g)
    a = x
    for i, units in enumerate(cfg.age_dense):
        a = layers.Dense(units, name=f"age_dense{i}")(a)
        a = layers.BatchNormalization(name=f"age_dense{i}_bn")(a)
        a = layers.ReLU(name=f"age_dense{i}_relu")(a)
        a = layers.Dropout(cfg.age_dropout, name=f"age_dense{i}_drop")(a)
    age = layers.Dense(1, activation="relu", name="age",
                       bias_initializer=keras.initializers.Constant(cfg.age_bias_init))(a)
    return keras.Model(inp, {"age": age, "gender": gender}, name="vgg16_agegender")


def set_trainable_tail(base: keras.Model, n: int) -> None:
    """Freeze every layer of `base` except its last `n` (used for staged unfreezing too)."""
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= len(base.layers) - n


def build_model(cfg: CustomCNNConfig | VGG16Config) -> keras.Model:
    """Build the network a config describes."""
    return build_vgg16(cfg) if cfg.architecture == "vgg16" else build_custom_cnn(cfg)


def config_dict(cfg) -> dict:
    return asdict(cfg)
