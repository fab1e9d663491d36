"""Training losses beyond Keras' own."""

from __future__ import annotations

import keras
from keras import ops

from agegender.models import N_AGES


@keras.saving.register_keras_serializable(package="agegender")
class AgeDistributionLoss(keras.losses.Loss):
    """Label-distribution learning (DLDL): cross-entropy to a Gaussian of width `sigma` around the true age.

    Neighbouring ages share credit, which suits a label that is itself noisy by a few years.
    """

    def __init__(self, sigma: float = 2.0, name: str = "age_distribution", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sigma = sigma

    def call(self, y_true, y_pred):
        ages = ops.arange(N_AGES, dtype="float32")
        y = ops.reshape(ops.cast(y_true, "float32"), (-1, 1))
        target = ops.exp(-0.5 * ops.square((ages - y) / self.sigma))
        target = target / ops.sum(target, axis=-1, keepdims=True)
        return -ops.sum(target * ops.log(ops.clip(y_pred, 1e-7, 1.0)), axis=-1)

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}
