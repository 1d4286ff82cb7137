"""Tests of hml_vae.families: every registered family on a colour non-square shape, on
Fashion-MNIST's and on the 8x8 digits' (build, shapes, one training step, .keras files
reloaded in a fresh process); the registry's consistency; conv shape adaptation; family
options that do not apply."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from autoencoder_checks import (
    assert_bundle_shapes,
    assert_one_training_step_lowers_loss,
    images_for,
)

from hml_vae import config as config_module
from hml_vae import families, plots
from hml_vae.config import Config, make_config
from hml_vae.families import blocks
from hml_vae.families.conv import build_conv
from hml_vae.families.conv_vae import build_conv_vae

REPO = Path(__file__).resolve().parents[1]
NAMES = families.names()
# A colour non-square shape (no data set of ours has it), Fashion-MNIST's and the digits'.
SHAPES = {"colour_20x24": (20, 24, 3), "fashion_28x28": (28, 28, 1), "digits_8x8": (8, 8, 1)}
CASES = [(name, shape) for name in NAMES for shape in SHAPES]


def tiny_config(name: str, shape_key: str) -> Config:
    return make_config(name, "tiny", image_shape=SHAPES[shape_key])


def build_tiny(name: str, shape_key: str):
    keras.utils.set_random_seed(0)
    config = tiny_config(name, shape_key)
    # In float32, as runs save and export every model (conv trains in bfloat16 on a CPU
    # with native bfloat16, and is turned into float32 after training).
    return config, families.build(config, precision="float32")


@pytest.fixture(scope="module")
def tiny_bundles():
    """Every family's tiny models for every shape, built on first use and shared by the
    tests that only call them (the training test builds its own)."""
    cache = {}

    def get(name: str, shape_key: str):
        if (name, shape_key) not in cache:
            cache[name, shape_key] = build_tiny(name, shape_key)
        return cache[name, shape_key]

    return get


# --- Every family, every shape ------------------------------------------------------------


@pytest.mark.parametrize("name, shape_key", CASES)
def test_tiny_preset_builds_for_the_image_shape(name, shape_key, tiny_bundles):
    config, models = tiny_bundles(name, shape_key)
    images = images_for(SHAPES[shape_key], 6)
    assert_bundle_shapes(models, images, config.latent_dim)
    assert isinstance(models, config.family.bundle_type)
    assert models.variational == config.family.variational
    assert config.family.describe(config)
    metrics = config.family.metrics(config, models, images)
    assert all(np.isfinite(value) for value in metrics.values()), metrics
    if models.variational:
        z_mean, z_log_var = models.encode(images)
        assert z_mean.shape == z_log_var.shape == (6, config.latent_dim)
        assert models.generate(3, seed=1).shape == (3, *SHAPES[shape_key])
        # Colour images default to a Gaussian decoder, grayscale to a Bernoulli one.
        colour = SHAPES[shape_key][-1] == 3
        assert config.likelihood == ("gaussian" if colour else "bernoulli")
        assert config.binarize == ("none" if colour else "dynamic")
        assert models.likelihood == config.likelihood


@pytest.mark.parametrize("name, shape_key", CASES)
def test_one_training_step_lowers_the_loss(name, shape_key):
    config, models = build_tiny(name, shape_key)
    assert_one_training_step_lowers_loss(models.whole, images_for(SHAPES[shape_key], 32),
                                         loss=config.family.loss)


# Run in a fresh interpreter: only ``import hml_vae`` may be needed to load any family's
# files (it registers the custom layers), not the module that built them.
RELOAD_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
import hml_vae
import keras

checked, mismatches = 0, []
for case in sorted(Path(sys.argv[1]).iterdir()):
    arrays = np.load(case / "arrays.npz")
    for path in sorted(case.glob("*.keras")):
        stem = path.stem
        model = keras.saving.load_model(path)
        outputs = model(arrays[f"{stem}_inputs"], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        saved = sum(key.startswith(f"{stem}_output_") for key in arrays.files)
        if len(outputs) != saved:
            mismatches.append(f"{case.name}/{stem}.keras: {len(outputs)} outputs, not {saved}")
        for index, output in enumerate(outputs[:saved]):
            expected = arrays[f"{stem}_output_{index}"]
            if not np.array_equal(np.asarray(output), expected):
                difference = float(np.max(np.abs(np.asarray(output) - expected)))
                mismatches.append(f"{case.name}/{stem}.keras output {index}: {difference}")
        checked += 1
print(json.dumps({"checked": checked, "mismatches": mismatches}))
"""


def save_with_outputs(models, images: np.ndarray, directory: Path,
                      parts: bool = True) -> int:
    """Writes the bundle's ``model.keras`` (and with ``parts`` its ``encoder.keras`` and
    ``decoder.keras``) and, for each file, its inputs and its outputs right after saving.
    A VAE's ε comes from a noise state saved with the weights, so a reloaded file draws
    what the model drew right after it was saved. Returns the number of files."""
    directory.mkdir()
    codings = np.random.default_rng(1).random((len(images), models.latent_dim), np.float32)
    files = [("model", models.whole, images)]
    if parts:
        files += [("encoder", models.encoder, images), ("decoder", models.decoder, codings)]
    arrays = {}
    for stem, model, inputs in files:
        model.save(directory / f"{stem}.keras")
        outputs = model(inputs, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        arrays[f"{stem}_inputs"] = inputs
        arrays.update({f"{stem}_output_{index}": np.asarray(output)
                       for index, output in enumerate(outputs)})
    np.savez(directory / "arrays.npz", **arrays)
    return len(files)


@pytest.mark.slow
def test_keras_files_reload_identically_in_a_fresh_process(tmp_path, tiny_bundles):
    # Every family's whole model at every shape; its encoder and decoder files (which
    # runs also write, and which reload on their own) at the colour shape, to keep the
    # number of files, and the time this takes, down.
    saved = 0
    for name, shape_key in CASES:
        _, models = tiny_bundles(name, shape_key)
        saved += save_with_outputs(models, images_for(SHAPES[shape_key], 5),
                                   tmp_path / f"{name}-{shape_key}",
                                   parts=shape_key == "colour_20x24")
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(tmp_path)], capture_output=True, text=True,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["mismatches"] == []
    assert report["checked"] == saved == len(CASES) + 2 * len(NAMES)


# --- The registry ---------------------------------------------------------------------------


FIELDS = {field.name: field for field in config_module.fields()}


def test_every_family_is_registered_with_its_name():
    assert NAMES == ("stacked", "tied", "conv", "recurrent", "denoising", "sparse", "greedy",
                     "vae", "conv_vae", "hashing")
    for name in NAMES:
        assert families.get(name).name == name
    with pytest.raises(ValueError, match="unknown model 'gan'.*stacked"):
        families.get("gan")


@pytest.mark.parametrize("name", NAMES)
def test_presets_are_config_fields_and_make_valid_configs(name):
    family = families.get(name)
    assert {"default", "tiny"} <= set(family.presets)
    for preset, values in family.presets.items():
        assert set(values) <= set(FIELDS), (preset, set(values) - set(FIELDS))
        foreign = {key for key in values
                   if FIELDS[key].metadata["family_option"] and key not in family.options}
        assert not foreign, f"{name}/{preset} sets options of other families: {foreign}"
        config = make_config(name, preset, image_shape=(28, 28, 1))
        for key, value in values.items():
            assert getattr(config, key) == value, (preset, key)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        make_config(name, "huge")


@pytest.mark.parametrize("name", NAMES)
def test_options_are_family_option_fields_and_figures_are_known(name):
    family = families.get(name)
    for option in family.options:
        assert option in FIELDS, option
        assert FIELDS[option].metadata["family_option"], option
    assert set(family.figures) <= set(plots.FIGURES), set(family.figures) - set(plots.FIGURES)
    assert len(set(family.figures)) == len(family.figures)
    assert family.bundle_type in (families.AutoencoderModels, families.VAEModels)
    assert (family.bundle_type is families.VAEModels) == family.variational
    # A VAE's loss is added by its layers; an autoencoder's is compiled.
    assert (family.loss is None) == family.variational


def test_every_family_option_field_belongs_to_some_family():
    for field in config_module.fields():
        if field.metadata["family_option"]:
            assert families.families_with_option(field.name), field.name


# A value other than the default for every family option (each valid for its families).
NON_DEFAULTS = {
    "noise": "gaussian", "noise_stddev": 0.3, "dropout_rate": 0.3, "sparsity": "l1",
    "sparsity_target": 0.2, "sparsity_weight": 0.01, "fine_tune_epochs": 2,
    "level_learning_rates": (1e-3, 2e-3),
    "likelihood": "gaussian", "gaussian_sigma": 0.5, "learned_sigma": "global", "beta": 2.0,
    "warmup_epochs": 3, "free_bits": 0.1, "iwae_samples": 7,
}
FOREIGN_OPTIONS = [(name, option) for name in NAMES for option in NON_DEFAULTS
                   if option not in families.get(name).options]


def test_the_non_default_table_covers_every_family_option():
    options = {field.name for field in config_module.fields() if field.metadata["family_option"]}
    assert set(NON_DEFAULTS) == options


def test_a_flag_of_another_family_names_the_flag_and_its_families():
    with pytest.raises(ValueError) as error:
        make_config("stacked", beta=2.0)
    assert "--beta" in str(error.value) and "vae, conv_vae" in str(error.value)


@pytest.mark.parametrize("name, option", FOREIGN_OPTIONS)
def test_every_option_of_another_family_is_rejected(name, option):
    owners = families.families_with_option(option)
    flag = config_module.flag_name(FIELDS[option])
    with pytest.raises(ValueError, match=f"{flag} does not apply to --model {name}") as error:
        make_config(name, "tiny", **{option: NON_DEFAULTS[option]})
    assert ", ".join(owners) in str(error.value)
    # The same value is fine for the families it belongs to.
    for owner in owners:
        make_config(owner, "tiny", **{option: NON_DEFAULTS[option]})


# --- Nothing outside hml_vae/families branches on a family's name ---------------------------


def family_name_branches(source: str, names=NAMES) -> list[int]:
    """Lines of ``source`` that compare with a family's name (``== "vae"``, ``in ("conv",
    ...)``, ``"vae" in model``) or ``match`` on one: the branches the registry replaces."""

    def is_name(node) -> bool:
        return isinstance(node, ast.Constant) and node.value in names

    def mentions_name(node) -> bool:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(is_name(element) for element in node.elts)
        return is_name(node)

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(
                mentions_name(operand) for operand in (node.left, *node.comparators)):
            lines.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and is_name(node.value):
            lines.append(node.lineno)
    return sorted(set(lines))


def test_the_branch_finder_finds_branches_on_family_names():
    source = "\n".join([
        'if config.model == "vae": pass',
        'likelihood = x if model in ("vae", "conv_vae") else None',
        'if "conv" != name: pass',
        'match config.model:\n    case "greedy": pass',
        'if config.family.variational: pass',  # the registry's way: not a branch on a name
        'FIGURES = {"denoising": 1}',  # a figure that shares a family's name
    ])
    assert family_name_branches(source) == [1, 2, 3, 5]


def test_no_module_outside_the_families_branches_on_a_family_name():
    found = {
        path.name: lines for path in sorted((REPO / "hml_vae").glob("*.py"))
        if (lines := family_name_branches(path.read_text()))
    }
    assert found == {}, f"modules that branch on family names (file: lines): {found}"


# --- Convolutional families adapt to the image shape ----------------------------------------


@pytest.mark.parametrize("shape", [(20, 24, 3), (8, 8, 1), (27, 13, 1), (28, 28, 1)])
@pytest.mark.parametrize("name", ["conv", "conv_vae"])
def test_conv_families_adapt_to_odd_and_non_square_images(name, shape):
    keras.utils.set_random_seed(0)
    config = make_config(name, "tiny", image_shape=shape)
    models = families.build(config)
    assert_bundle_shapes(models, images_for(shape, 3), config.latent_dim)
    module = families.conv if name == "conv" else families.conv_vae
    heights, widths = module.map_sizes(shape, len(config.hidden))
    # The innermost feature map is the one the family describes.
    innermost = (f"encoder_pool_{len(config.hidden) - 1}" if name == "conv"
                 else f"encoder_conv_{len(config.hidden) - 1}")
    assert models.encoder.get_layer(innermost).output.shape[1:3] == (heights[-1], widths[-1])
    assert f"{heights[-1]}×{widths[-1]}" in config.family.describe(config)


def test_conv_map_sizes_round_down_and_conv_vae_sizes_round_up():
    assert families.conv.map_sizes((27, 13, 1), 3) == ([27, 13, 6, 3], [13, 6, 3, 1])
    assert families.conv_vae.map_sizes((27, 13, 1), 2) == ([27, 14, 7], [13, 7, 4])


@pytest.mark.parametrize("rounding", ["floor", "ceil"])
def test_upsample_reaches_every_target_size_from_its_halved_size(rounding):
    import math

    halve = (lambda side: side // 2) if rounding == "floor" else (lambda side: math.ceil(side / 2))
    for height in range(2, 14):
        for width in range(2, 14):
            size = (halve(height), halve(width))
            x = blocks.upsample(keras.Input((*size, 2)), 1, size, (height, width), name="up")
            assert tuple(x.shape[1:3]) == (height, width), (size, height, width)


@pytest.mark.parametrize("build, shape, blocks_count, most", [
    (lambda shape: build_conv(shape, filters=(4, 8, 8), latent_dim=4), (7, 9, 1), 3, 2),
    (lambda shape: build_conv(shape, filters=(4, 4, 4, 4), latent_dim=4), (40, 9, 3), 4, 3),
    (lambda shape: build_conv_vae(shape, filters=(4,) * 4, latent_dim=2), (8, 11, 1), 4, 3),
    (lambda shape: build_conv_vae(shape, filters=(4,) * 5, latent_dim=2), (16, 30, 3), 5, 4),
])
def test_conv_builders_reject_images_too_small_for_their_depth(build, shape, blocks_count,
                                                                most):
    message = (f"images of {shape[0]}×{shape[1]} pixels are too small for {blocks_count} "
               f"stride-2 blocks.*at most {most}")
    with pytest.raises(ValueError, match=message):
        build(shape)


@pytest.mark.parametrize("name", ["conv", "conv_vae"])
def test_conv_configs_too_deep_for_the_images_fail_before_building(name):
    with pytest.raises(ValueError, match=f"{name}: images of 8×8 pixels.*at most 3"):
        make_config(name, "tiny", hidden=(4, 4, 4, 4), image_shape=(8, 8, 1))
    make_config(name, "tiny", hidden=(4, 4, 4, 4), image_shape=(16, 16, 1))
    # Bound to the images later (training does this): the same check.
    with pytest.raises(ValueError, match="at most 3"):
        make_config(name, "tiny", hidden=(4, 4, 4, 4)).for_images((8, 12, 3))


# --- Greedy: the stack holds the levels' weights ----------------------------------------------


def test_greedy_stack_computes_what_its_levels_compute():
    from hml_vae.families import greedy

    keras.utils.set_random_seed(0)
    image_shape = (8, 8, 1)
    levels = [greedy.build_level(64, 16, 0), greedy.build_level(16, 4, 1,
                                                                output_activation="relu")]
    models = greedy.stack_levels(image_shape, levels)
    images = images_for(image_shape, 5)
    flat = images.reshape(5, -1)
    level_0_coding = np.asarray(greedy.level_encoder(levels[0])(flat))
    coding = np.asarray(greedy.level_encoder(levels[1])(level_0_coding))
    np.testing.assert_allclose(models.coding(images), coding, rtol=1e-5, atol=1e-6)
    # Decoding runs level 1's decoder, then level 0's.
    _, _, decoder_1 = levels[1].layers
    _, _, decoder_0 = levels[0].layers
    expected = np.asarray(decoder_0(decoder_1(coding))).reshape(images.shape)
    np.testing.assert_allclose(models.decode(coding), expected, rtol=1e-5, atol=1e-6)
