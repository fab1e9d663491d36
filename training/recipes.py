"""Training recipes: the report's two, faithfully, and ours. One small dataclass each.

Every choice the report leaves [unstated] is made here (or in the model config) with its reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from agegender.models import CustomCNNConfig, VGG16Config
from agegender.pipeline import Augment


@dataclass
class Stage:
    """A span of epochs with a learning rate and (VGG16 only) how many base layers train."""

    epochs: int
    lr: float
    trainable_base_layers: int | None = None


@dataclass
class Recipe:
    name: str
    model: CustomCNNConfig | VGG16Config
    stages: list[Stage]
    optimizer: str = "adam"  # "sgd" | "adam" | "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" | "hold_then_decay" (report) | "cosine"
    hold_epochs: int = 10
    decay_rate: float = 0.1  # lr *= exp(-decay_rate) per epoch after hold_epochs
    warmup_fraction: float = 0.0
    batch_size: int = 32
    age_loss: str = "mae"  # "mae" | "dldl" (label-distribution KL plus MAE on the mean)
    dldl_sigma: float = 2.0
    loss_weights: dict = field(default_factory=lambda: {"age": 1.0, "gender": 1.0})
    label_smoothing: float = 0.0
    augment: Augment = field(default_factory=Augment)
    patience: int = 5  # early stopping on validation loss, best weights restored
    tta_flip: bool = False

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def to_dict(self) -> dict:
        return asdict(self)


def custom_report() -> Recipe:
    """The report's custom CNN recipe."""
    return Recipe(
        name="report",
        model=CustomCNNConfig(),  # L2 1e-4: with 0.01 the run stopped at epoch 8, test MAE 12.1 (RESULTS.md)
        stages=[Stage(epochs=30, lr=0.01)],  # [unstated] lr 0.01: the SGD default scale for this kind of net
        # [unstated] optimizer: the report's schedule "beat Adam", so SGD with momentum 0.9
        optimizer="sgd",
        # the Keras LearningRateScheduler example the report describes: hold 10 epochs, then exp(-0.1) per epoch
        schedule="hold_then_decay",
        batch_size=32,  # [unstated] Keras' default batch size
        loss_weights={"age": 1.0, "gender": 1.0},  # [unstated] Keras' default: equal weights
        augment=Augment(flip=True, rotation=0.1),  # the report's RandomFlip + RandomRotation(0.1), run in tf.data
    )


def custom_ours() -> Recipe:
    """Our custom CNN recipe: a VGG-style trunk at 64x64, an age distribution head, AdamW with cosine decay."""
    return Recipe(
        name="ours",
        model=CustomCNNConfig(
            input_size=64,
            trunk=((32, 3), (64, 3), (128, 3, 2), (256, 3, 2)),
            padding="same",
            l2=0.0,  # AdamW's decoupled weight decay instead
            head="distribution",
            age_dropout=0.3,
        ),
        stages=[Stage(epochs=24, lr=2e-3)],  # 24 beat 16 on validation (RESULTS.md)
        optimizer="adamw",
        weight_decay=1e-4,
        schedule="cosine",
        warmup_fraction=0.05,
        batch_size=64,
        age_loss="dldl",
        dldl_sigma=2.0,
        loss_weights={"age": 0.1, "age_dist": 0.5, "gender": 1.0},
        label_smoothing=0.05,
        augment=Augment(flip=True, rotation=0.03, scale=0.08, shift=0.06, brightness=0.1, contrast=0.2),
        patience=100,  # a cosine schedule runs to its end; the best validation epoch is kept
        tta_flip=True,
    )


def vgg16_report() -> Recipe:
    """The report's VGG16 recipe: ImageNet base with its last three layers trainable, Adam 1e-4."""
    return Recipe(
        name="report",
        model=VGG16Config(),
        stages=[Stage(epochs=30, lr=1e-4)],
        optimizer="adam",
        batch_size=32,  # [unstated] Keras' default batch size
        augment=Augment(flip=True, rotation=0.1),
    )


def vgg16_ours() -> Recipe:
    """Our VGG16 recipe: VGG's own preprocessing, a distribution head, staged unfreezing."""
    return Recipe(
        name="ours",
        model=VGG16Config(scaling="caffe", head="distribution", age_dropout=0.3, trainable_base_layers=0),
        stages=[
            Stage(epochs=3, lr=1e-3, trainable_base_layers=0),  # heads only
            Stage(epochs=5, lr=1e-4, trainable_base_layers=4),  # + block5 (3 convs and the pool)
            Stage(epochs=5, lr=3e-5, trainable_base_layers=8),  # + block4
        ],
        optimizer="adamw",
        weight_decay=1e-4,
        batch_size=32,
        age_loss="dldl",
        loss_weights={"age": 0.1, "age_dist": 0.5, "gender": 1.0},
        label_smoothing=0.05,
        augment=Augment(flip=True, rotation=0.03, scale=0.08, shift=0.06, brightness=0.1, contrast=0.2),
        patience=5,
        tta_flip=True,
    )


RECIPES = {
    ("custom", "report"): custom_report,
    ("custom", "ours"): custom_ours,
    ("vgg16", "report"): vgg16_report,
    ("vgg16", "ours"): vgg16_ours,
}


def get_recipe(model: str, recipe: str) -> Recipe:
    try:
        return RECIPES[(model, recipe)]()
    except KeyError:
        raise ValueError(f"no recipe {recipe!r} for model {model!r}; choose from {sorted(RECIPES)}") from None
