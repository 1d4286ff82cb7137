"""--precision: 16-bit compute for training, float32 where numbers are reported."""

import numpy as np
import pytest

from hml_vae import config as config_module
from hml_vae import families
from hml_vae.config import make_config
from hml_vae.training import build_and_compile


def tiny_images(count=64, shape=(12, 12, 1)):
    rng = np.random.default_rng(0)
    return rng.random((count, *shape), dtype=np.float32)


def layer_dtypes(model):
    """compute dtype of every layer, nested models included, by name."""
    dtypes = {}
    for layer in model.layers:
        if hasattr(layer, "layers"):
            dtypes.update(layer_dtypes(layer))
        dtypes[layer.name] = layer.compute_dtype
    return dtypes


@pytest.mark.parametrize("model", ["vae", "sparse"])
def test_mixed_bfloat16_trains_in_bfloat16_and_reports_in_float32(model):
    config = make_config(model, "tiny", precision="mixed_bfloat16").for_images((12, 12, 1))
    models = build_and_compile(config)
    dtypes = layer_dtypes(models.whole)
    assert dtypes["encoder_dense_0"] == "bfloat16"
    if model == "vae":
        # The loss terms are float32: their sums over pixels and latent units would lose
        # about 3 significant digits in bfloat16.
        assert dtypes["sampling"] == dtypes["reconstruction_loss"] == "float32"
    images = tiny_images()
    history = models.whole.fit(images, None if model == "vae" else images, epochs=2,
                               batch_size=32, verbose=0).history
    assert all(np.isfinite(history["loss"]))

    in_float32 = families.in_float32(config, models)
    assert set(layer_dtypes(in_float32.whole).values()) == {"float32"}
    mixed_codings = np.asarray(models.coding(images[:8]), dtype=np.float32)
    float32_codings = np.asarray(in_float32.coding(images[:8]))
    assert float32_codings.dtype == np.float32
    # The same weights: the codings agree to bfloat16's precision (8 significant bits),
    # far closer than two different models would.
    scale = np.abs(float32_codings).max()
    assert np.abs(mixed_codings - float32_codings).max() <= 0.05 * scale + 1e-3


def test_float32_is_the_default_and_leaves_models_as_they_are():
    config = make_config("stacked", "tiny").for_images((12, 12, 1))
    assert config.precision == "float32"
    models = families.build(config)
    assert families.in_float32(config, models) is models
    assert set(layer_dtypes(models.whole).values()) == {"float32"}


def test_conv_defaults_to_bfloat16_only_on_a_cpu_with_native_bfloat16(monkeypatch):
    """The families measured faster in bfloat16 (conv) train in it by default where the
    CPU computes it natively; others, and every family elsewhere, in float32. A resumed
    run on another machine compares the precision it resolves with the saved one."""
    for native, conv_precision in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(config_module, "native_bfloat16_cpu", lambda native=native: native)
        assert make_config("conv", "tiny").precision == conv_precision
        assert make_config("stacked", "tiny").precision == "float32"
        assert make_config("conv", "tiny", precision="float32").precision == "float32"
    assert [family for family in families.names() if families.get(family).bfloat16] == ["conv"]


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        make_config("stacked", "tiny", precision="bfloat16")
