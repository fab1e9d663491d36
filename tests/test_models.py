"""The tf.data pipeline, both architectures, save/load round trips and the VGG16 freezing rule."""

from __future__ import annotations

import numpy as np
import pytest

from agegender.model import AgeGenderModel
from agegender.models import CustomCNNConfig, VGG16Config, build_custom_cnn, build_vgg16
from agegender.pipeline import Augment, dataset_to_arrays, make_tf_dataset


def _arrays(n=16, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
            rng.uniform(1, 90, n).astype("float32"), rng.integers(0, 2, n).astype("float32"))


def test_pipeline_shapes_dtypes_and_augmentation_only_in_training():
    x, a, g = _arrays()
    train = make_tf_dataset(x, a, g, batch_size=8, training=True, augment=Augment(rotation=0.1, scale=0.1), seed=1)
    evals = make_tf_dataset(x, a, g, batch_size=8, training=False, augment=Augment(rotation=0.1))
    xb, yb = next(iter(train))
    assert xb.shape == (8, 32, 32, 3) and xb.dtype.name == "float32"
    assert yb["age"].shape == (8, 1) and yb["gender"].shape == (8, 1)
    assert float(np.max(xb)) <= 255.0 and float(np.min(xb)) >= 0.0
    # evaluation batches are exactly the stored pixels, in order; training batches are altered
    xe, ye = next(iter(evals))
    np.testing.assert_array_equal(xe.numpy(), x[:8].astype("float32"))
    np.testing.assert_array_equal(ye["age"].numpy().ravel(), a[:8])
    idx = [int(np.argmin(np.abs(a - v))) for v in yb["age"].numpy().ravel()]
    assert not np.allclose(xb.numpy(), x[idx].astype("float32"))


def test_dataset_to_arrays_resizes_and_caches(utk_folder, tmp_path, monkeypatch):
    from agegender import pipeline
    from agegender.data import load_utkface

    monkeypatch.setattr(pipeline, "CACHE_DIR", tmp_path / "cache")
    ds = load_utkface(utk_folder)["train"]
    x, a, g = dataset_to_arrays(ds, 40)
    assert x.shape == (len(ds), 40, 40, 3) and x.dtype == np.uint8
    assert list((tmp_path / "cache" / "arrays").glob("*.npz"))
    x2, _, _ = dataset_to_arrays(ds, 40)
    np.testing.assert_array_equal(x, x2)


def _fit_few_steps(model, x, a, g, with_dist=False):
    import keras

    from training.losses import AgeDistributionLoss

    losses = {"age": "mae", "gender": "binary_crossentropy"}
    if with_dist:
        losses["age_dist"] = AgeDistributionLoss()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses)
    ds = make_tf_dataset(x, a, g, 8, training=True, augment=Augment(), with_dist=with_dist)
    hist = model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(hist.history["loss"][-1])


@pytest.mark.parametrize("head", ["report", "distribution"])
def test_custom_cnn_trains_and_round_trips(tmp_path, head):
    cfg = CustomCNNConfig() if head == "report" else CustomCNNConfig(
        input_size=32, trunk=((8, 3), (16, 3, 2)), padding="same", head="distribution", l2=0.0)
    x, a, g = _arrays(16, cfg.input_size)
    net = build_custom_cnn(cfg)
    _fit_few_steps(net, x, a, g, with_dist=head == "distribution")
    model = AgeGenderModel(net, {"name": f"test-{head}"})
    before = model.predict(list(x[:4]))
    model.save_pretrained(tmp_path / "m")
    again = AgeGenderModel.from_pretrained(str(tmp_path / "m"))
    assert again.predict(list(x[:4])) == before
    assert all(p["age"] >= 0 and 0 <= p["p_female"] <= 1 for p in before)
    assert again.config["preprocessing"]["channel_order"] == "RGB"


def test_report_custom_cnn_matches_the_report():
    net = build_custom_cnn(CustomCNNConfig())
    convs = [layer for layer in net.layers if layer.__class__.__name__ == "Conv2D"]
    trunk = [(c.filters, c.kernel_size) for c in convs if c.name.startswith("trunk")]
    assert trunk == [(16, (3, 3)), (32, (3, 3)), (64, (2, 2))]
    assert all(not c.use_bias and c.kernel_regularizer is not None and c.padding == "valid" for c in convs)
    assert net.get_layer("gender0_pool").output.shape[1] < 10
    assert [c.filters for c in convs if c.name.startswith("age")] == [128, 256]
    assert net.get_layer("gender_dense0_drop").rate == 0.85
    assert [net.get_layer(f"age_dense{i}").units for i in (0, 1)] == [512, 128]
    assert net.input_shape == (None, 128, 128, 3)


def test_vgg16_freezing_rule_and_local_weights(tmp_path):
    import keras

    cfg = VGG16Config(input_size=32, weights=None)
    net = build_vgg16(cfg)
    base = net.get_layer("vgg16")
    trainable = [layer.name for layer in base.layers if layer.trainable]
    assert trainable == [layer.name for layer in base.layers[-3:]]
    assert [layer.name for layer in base.layers[-3:]] == ["block5_conv2", "block5_conv3", "block5_pool"]
    assert len(net.get_layer("vgg16").trainable_weights) == 4  # two convs: kernel + bias each
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # a local weights file (what a user's machine would download as "imagenet")
    src = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    src.save_weights(path)
    loaded = build_vgg16(VGG16Config(input_size=32, weights=str(path)))
    for w1, w2 in zip(src.get_weights(), loaded.get_layer("vgg16").get_weights()):
        np.testing.assert_array_equal(w1, w2)
    out = loaded(x, training=True)
    assert set(out) == {"age", "gender"}
    # the base is called in inference mode, whatever mode the outer model runs in
    assert loaded.get_layer("vgg16")._inbound_nodes[0].arguments.kwargs["training"] is False


def test_vgg16_trains_and_round_trips(tmp_path):
    cfg = VGG16Config(input_size=32, weights=None, scaling="caffe", head="distribution")
    x, a, g = _arrays(16, 32)
    net = build_vgg16(cfg)
    _fit_few_steps(net, x, a, g, with_dist=True)
    model = AgeGenderModel(net, {"name": "vgg-test"})
    before = model.predict(list(x[:3]))
    model.save_pretrained(tmp_path / "v")
    assert AgeGenderModel.from_pretrained(str(tmp_path / "v")).predict(list(x[:3])) == before
