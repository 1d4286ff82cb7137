"""Custom Keras layers and regularizers, each registered so a saved ``.keras`` file reloads
with identical outputs (every constructor argument is returned by ``get_config()``).

Sections:

- HOML ch. 17 autoencoders: :class:`DenseTranspose` (tied weights) and
  :class:`KLDivergenceRegularizer` (sparsity).
- A stochastic layer's own random state, saved with its weights: :func:`add_random_state`
  and :func:`draw_random` (``Sampling``'s ε, the denoising family's input noise).
- Variational autoencoders: :class:`Sampling` (reparameterization + β·KL with
  ``add_loss``) and :class:`ReconstructionLoss`.

Every layer runs on each Keras backend hml_vae supports (:mod:`hml_vae.backends`): the
math is ``keras.ops``; only random draws have a TensorFlow fast path (:func:`draw_random`),
and other backends draw with ``keras.random``.
"""

from __future__ import annotations

import math
import random

import keras
from keras import ops

from hml_vae import losses

# --- HOML ch. 17 autoencoders: tied weights and sparsity ----------------------------------


def on_tensorflow() -> bool:
    """Keras runs on TensorFlow (the only backend with ``tf.distribute`` and ``tf.random``)."""
    return keras.backend.backend() == "tensorflow"


def replicas_in_sync() -> int:
    """Replicas that each compute a share of the batch (1 outside ``tf.distribute``)."""
    if not on_tensorflow():
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()  # None in cross-replica context
    return context.num_replicas_in_sync if context is not None else 1


@keras.saving.register_keras_serializable(package="hml_vae")
class DenseTranspose(keras.layers.Layer):
    """A dense layer whose kernel is the transpose of another ``Dense`` layer's kernel.

    It owns only its bias: the kernel is read from ``dense`` at every call, so training
    either layer updates both (HOML's tied-weights autoencoder). HOML's version reads
    ``dense.input_shape``, which Keras 3 removed; here the output size comes from the
    tied kernel, whose shape is (inputs of ``dense``, units of ``dense``).

    When a model holding both ``dense`` and this layer is saved, Keras serializes ``dense``
    once and marks it as shared, so the reloaded model is still tied. A model holding only
    this layer (a decoder saved alone) reloads with its own copy of ``dense``.

    Args:
        dense: the built ``keras.layers.Dense`` layer to tie to.
        activation: activation of this layer's output (default: linear).
        **kwargs: ``name``, ``dtype`` and the other base ``Layer`` arguments.

    Example:
        >>> coding = keras.layers.Dense(30, activation="relu")
        >>> codings = coding(keras.Input((100,)))
        >>> DenseTranspose(coding)(codings).shape  # (None, 30) -> (None, 100)
        (None, 100)
    """

    def __init__(self, dense: keras.layers.Dense, activation=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(dense, keras.layers.Dense):
            raise ValueError(
                f"DenseTranspose ties to a keras.layers.Dense layer, got "
                f"{type(dense).__name__}. Pass the Dense layer whose kernel to transpose."
            )
        self.dense = dense
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        if not self.dense.built:
            raise ValueError(
                f"DenseTranspose: the tied layer {self.dense.name!r} is not built yet, so its "
                f"kernel has no shape. Call it on its inputs before building this layer."
            )
        inputs, units = self.dense.kernel.shape
        if input_shape[-1] is not None and input_shape[-1] != units:
            raise ValueError(
                f"DenseTranspose tied to {self.dense.name!r} ({units} units) expects inputs "
                f"with {units} features, got shape {tuple(input_shape)}."
            )
        self.bias = self.add_weight(name="bias", shape=(inputs,), initializer="zeros")

    def call(self, inputs):
        # (B, units) @ (units, inputs) -> (B, inputs): the tied kernel, transposed.
        outputs = ops.matmul(inputs, ops.transpose(self.dense.kernel)) + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dense.kernel.shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            dense=keras.saving.serialize_keras_object(self.dense),
            activation=keras.activations.serialize(self.activation),
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Inside a model's load, a Dense already deserialized elsewhere in the model comes
        # back as that same object (Keras' shared-object scope), which keeps the tie.
        config["dense"] = keras.saving.deserialize_keras_object(config["dense"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="hml_vae")
class KLDivergenceRegularizer(keras.regularizers.Regularizer):
    """Sparsity penalty on a sigmoid layer's activations (HOML ch. 17, sparse autoencoder).

    For each unit, the mean activation q over the batch is compared with the target p by
    the KL divergence of Bernoulli(p) from Bernoulli(q):

        KL(p || q) = p log(p / q) + (1 - p) log((1 - p) / (1 - q))

    and the penalty is ``weight * sum over units of KL``. As an ``activity_regularizer``
    Keras 3 (like tf.keras 2, for which HOML chose its weights) divides it by the batch size.

    Args:
        weight: multiplies the summed divergence (> 0).
        target: the wanted mean activation p of each unit, in (0, 1).

    Example:
        >>> layer = keras.layers.Dense(300, activation="sigmoid",
        ...     activity_regularizer=KLDivergenceRegularizer(weight=0.05, target=0.1))
    """

    def __init__(self, weight: float = 0.05, target: float = 0.1):
        if not weight > 0:
            raise ValueError(f"sparsity weight must be positive, got {weight!r}.")
        if not 0 < target < 1:
            raise ValueError(
                f"sparsity target is a mean activation of a sigmoid unit and must lie in "
                f"(0, 1), got {target!r}; HOML uses 0.1."
            )
        self.weight = float(weight)
        self.target = float(target)

    def __call__(self, activations):
        # (B, units) -> (units,): each unit's mean activation, kept away from 0 and 1
        # where the logarithms diverge.
        epsilon = keras.config.epsilon()
        # float32 under a mixed precision: 1 - 1e-7 is 1 in bfloat16.
        activations = ops.cast(activations, "float32")
        mean_activations = ops.clip(ops.mean(activations, axis=0), epsilon, 1.0 - epsilon)
        penalty = self.weight * ops.sum(kl_divergence_bernoulli(self.target, mean_activations))
        # Keras divides activity penalties by the batch each replica sees, B/R, and sums
        # the replicas' losses scaled by 1/R. Right for a sum over images; this penalty is
        # one number per batch, so that would make it R times stronger under R replicas.
        return penalty / replicas_in_sync()

    def get_config(self):
        return {"weight": self.weight, "target": self.target}


def kl_divergence_bernoulli(target, mean_activations):
    """KL(Bernoulli(target) || Bernoulli(mean_activations)), elementwise, in nats.

    Args:
        target: p in (0, 1), a float or tensor.
        mean_activations: q in (0, 1), a tensor.

    Returns:
        A tensor shaped like ``mean_activations``.
    """
    return target * ops.log(target / mean_activations) + (1.0 - target) * ops.log(
        (1.0 - target) / (1.0 - mean_activations)
    )


# --- A layer's own random state, saved with its weights ------------------------------------

PHILOX = 1  # tf.random.Algorithm.PHILOX, the id the stateful random ops take


def add_random_state(layer: keras.layers.Layer, seed: int | None):
    """Adds the Philox state (128-bit counter, 64-bit key) that :func:`draw_random` draws
    from on TensorFlow as a non-trainable weight ``rng_state`` of ``layer``, so that it is
    checkpointed and saved with the model and a resumed run continues the same stream.

    Seeded by ``seed`` or, without one, by Python's ``random`` (which
    keras.utils.set_random_seed seeds). Other backends do not read it but keep it, so a
    .keras file has the same weights whichever backend saved it; JAX has no int64 unless
    x64 is enabled.
    """
    key = seed if seed is not None else random.randrange(1, 2**31)
    return layer.add_weight(
        shape=(3,), dtype="int64" if on_tensorflow() else "int32",
        initializer=keras.initializers.Constant([0, 0, key]),
        trainable=False, name="rng_state",
    )


def draw_random(distribution: str, shape, dtype, state, seed_generator):
    """Uniform [0, 1) or standard normal values of ``shape``, drawn from a layer's state.

    On TensorFlow and one replica: a stateful Philox draw that advances ``state`` (from
    :func:`add_random_state`). A stateless draw (``keras.random``) is as random but,
    inside an XLA-compiled training step on CPU, costs about 1 ms a step for 128×20
    normal values and more for a batch of dropout masks (benchmarks/throughput.py,
    benchmarks/denoising_noise.py); this op costs next to nothing there.

    Under several ``tf.distribute`` replicas each replica gets its own draw: the state
    is the same on every replica, so without folding in the replica id the i-th image
    of every replica's share would get the same values.

    On other backends: ``keras.random`` with ``seed_generator`` (a
    ``keras.random.SeedGenerator``), whose state the backend's trainer carries through
    its compiled steps.

    Args:
        distribution: ``uniform`` or ``normal``.
    """
    if distribution not in ("uniform", "normal"):
        raise ValueError(f"unknown distribution {distribution!r}; expected uniform or normal.")
    normal = distribution == "normal"
    if not on_tensorflow():
        draw = keras.random.normal if normal else keras.random.uniform
        return draw(shape, dtype=dtype, seed=seed_generator)
    import tensorflow as tf

    if replicas_in_sync() == 1:
        draw = tf.raw_ops.StatefulStandardNormalV2 if normal else tf.raw_ops.StatefulUniform
        return draw(resource=state.value.handle, algorithm=PHILOX, shape=shape, dtype=dtype)
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    seed = tf.random.experimental.stateless_fold_in(
        tf.cast(seed_generator.next(), tf.int32), replica
    )
    draw = tf.random.stateless_normal if normal else tf.random.stateless_uniform
    return draw(shape, seed=seed, dtype=dtype)


# =========================================================================================
# Variational autoencoder: reparameterized sampling with the KL term, and the decoder's
# reconstruction negative log-likelihood. Both add their loss with ``self.add_loss``
# (Keras 3 dropped ``model.add_loss`` on symbolic tensors) and report it as a metric so
# the training history shows the two parts of −ELBO separately.
# =========================================================================================

def term_tracker(name: str) -> keras.metrics.Mean | None:
    """The metric a layer updates in ``call`` so that ``fit``'s history shows its loss term;
    None on JAX, whose compiled training step cannot update a metric a layer owns
    (keras-team/keras#21639): there the history shows the total loss only."""
    if keras.backend.backend() == "jax":
        return None
    return keras.metrics.Mean(name=name)


def track(tracker: keras.metrics.Mean | None, value) -> None:
    """Adds ``value`` to a :func:`term_tracker` metric (nothing when there is none)."""
    if tracker is not None:
        tracker.update_state(value)


LIKELIHOODS = ("bernoulli", "gaussian")
LEARNED_SIGMA = ("none", "global", "pixel")


@keras.saving.register_keras_serializable(package="hml_vae")
class Sampling(keras.layers.Layer):
    """Draws ``z = μ + exp(½ log σ²)·ε``, ε ~ N(0, I), and adds ``β·KL(q(z|x) || N(0, I))``.

    The reparameterization trick: the randomness is in ε only, so gradients of the loss
    reach μ and log σ² (and the encoder). The KL term (docs/vae.md, eq. 10) is averaged over the
    batch, in nats per image, multiplied by β and added with ``self.add_loss``. β lives in
    a non-trainable variable (``layer.beta``) so :class:`hml_vae.families.vae.BetaWarmup`
    can anneal it during ``fit``. The unweighted KL is tracked as the metric ``kl`` (not on
    JAX: :func:`term_tracker`).

    Args:
        beta: weight of the KL term (1 is the ELBO; β > 1 is a β-VAE).
        free_bits: λ ≥ 0 nats per latent dimension. When positive the penalty is
            ``Σ_l max(λ, mean_batch KL_l)`` (Kingma et al. 2016): dimensions below λ are
            not pushed further towards the prior, which fights posterior collapse.
        seed: seed of the layer's own ``SeedGenerator``.
        deterministic: return μ instead of a sample (evaluation, export, plots). The KL
            term is still added.

    ``get_config`` stores the β the layer was built with; the current (possibly annealed)
    β is a weight, saved and restored with the model's weights.

    Example:
        >>> z = Sampling(seed=1)([z_mean, z_log_var])  # (B, latent_dim)
    """

    def __init__(self, beta=1.0, free_bits=0.0, seed=None, deterministic=False, **kwargs):
        kwargs.setdefault("dtype", "float32")  # the KL in float32 under a mixed precision
        super().__init__(**kwargs)
        if beta is None or not beta >= 0:
            raise ValueError(
                f"beta must be a number >= 0 (1 for the ELBO), got {beta!r}."
            )
        if free_bits is None or not free_bits >= 0:
            raise ValueError(
                f"free_bits must be >= 0 nats per latent dimension (0 turns it off), got "
                f"{free_bits!r}."
            )
        self.initial_beta = float(beta)
        self.free_bits = float(free_bits)
        self.seed = seed
        self.deterministic = bool(deterministic)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.rng_state = add_random_state(self, seed)
        self.beta = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_beta),
            trainable=False, name="beta",
        )
        self.kl_tracker = term_tracker("kl")

    def call(self, inputs):
        z_mean, z_log_var = inputs
        kl_per_dimension = losses.kl_divergence_per_dimension(z_mean, z_log_var)  # (B, L)
        kl = ops.mean(ops.sum(kl_per_dimension, axis=-1))
        if self.free_bits > 0:
            # Batch average per dimension first: the free-bits budget is per dimension of
            # the code, not per image.
            penalty = ops.sum(ops.maximum(ops.mean(kl_per_dimension, axis=0), self.free_bits))
        else:
            penalty = kl
        self.add_loss(ops.cast(self.beta, penalty.dtype) * penalty)
        track(self.kl_tracker, kl)
        if self.deterministic:
            return z_mean
        return z_mean + ops.exp(0.5 * z_log_var) * self._standard_normal(ops.shape(z_mean))

    def _standard_normal(self, shape):
        """ε ~ N(0, I), from the layer's own random state (:func:`draw_random`)."""
        return draw_random("normal", shape, self.compute_dtype, self.rng_state,
                           self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(
            beta=self.initial_beta,
            free_bits=self.free_bits,
            seed=self.seed,
            deterministic=self.deterministic,
        )
        return config


@keras.saving.register_keras_serializable(package="hml_vae")
class ReconstructionLoss(keras.layers.Layer):
    """Adds the decoder's −log p(x|z), averaged over the batch, with ``self.add_loss``.

    Sits at the end of the ``vae`` model: takes ``(images, decoder_outputs)`` and returns
    the decoder outputs unchanged. Holding the likelihood here (not in a compiled loss)
    keeps a learned σ with the model and lets a saved ``.keras`` file reload without any
    custom loss function. The value is tracked as the metric ``reconstruction_nll`` (not on
    JAX: :func:`term_tracker`).

    Args:
        likelihood: ``bernoulli`` (decoder outputs logits) or ``gaussian`` (decoder outputs
            means; the NLL includes the ``D/2 log(2πσ²)`` constant, D = H·W·C).
        gaussian_sigma: the fixed σ of a Gaussian decoder, or the initial value of a
            learned σ (docs/vae.md, eq. 12).
        learned_sigma: ``none``, ``global`` (one learned log σ) or ``pixel`` (one per
            pixel).
        image_shape: shape of one image, for the per-pixel log σ.
    """

    def __init__(self, likelihood="bernoulli", gaussian_sigma=1.0, learned_sigma="none",
                 image_shape=(28, 28, 1), **kwargs):
        kwargs.setdefault("dtype", "float32")  # −log p(x|z) in float32 under a mixed precision
        super().__init__(**kwargs)
        check_likelihood(likelihood, gaussian_sigma, learned_sigma)
        self.likelihood = likelihood
        self.gaussian_sigma = float(gaussian_sigma)
        self.learned_sigma = learned_sigma
        self.image_shape = tuple(image_shape)
        self.log_sigma = None
        if likelihood == "gaussian" and learned_sigma != "none":
            shape = () if learned_sigma == "global" else self.image_shape
            self.log_sigma = self.add_weight(
                shape=shape,
                initializer=keras.initializers.Constant(math.log(self.gaussian_sigma)),
                trainable=True, name="log_sigma",
            )
        self.nll_tracker = term_tracker("reconstruction_nll")

    def negative_log_likelihood(self, images, outputs):
        """(B,) −log p(x|z) in nats per image for decoder ``outputs`` (logits or means)."""
        if self.likelihood == "bernoulli":
            return losses.bernoulli_nll(images, outputs)
        log_sigma = (
            math.log(self.gaussian_sigma) if self.log_sigma is None
            else ops.convert_to_tensor(self.log_sigma)
        )
        return losses.gaussian_nll(images, outputs, log_sigma)

    def call(self, inputs):
        images, outputs = inputs
        nll = ops.mean(self.negative_log_likelihood(images, outputs))
        self.add_loss(nll)
        track(self.nll_tracker, nll)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        config = super().get_config()
        config.update(
            likelihood=self.likelihood,
            gaussian_sigma=self.gaussian_sigma,
            learned_sigma=self.learned_sigma,
            image_shape=self.image_shape,
        )
        return config


def check_likelihood(likelihood, gaussian_sigma=1.0, learned_sigma="none") -> None:
    """Raises ValueError for a likelihood no decoder can have."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(
            f"unknown likelihood {likelihood!r}; expected one of {', '.join(LIKELIHOODS)} "
            f"(bernoulli for images in [0, 1], gaussian for real-valued pixels)."
        )
    if learned_sigma not in LEARNED_SIGMA:
        raise ValueError(
            f"unknown learned_sigma {learned_sigma!r}; expected one of "
            f"{', '.join(LEARNED_SIGMA)}."
        )
    if gaussian_sigma is None or not gaussian_sigma > 0:
        raise ValueError(
            f"the Gaussian decoder's sigma must be > 0, got {gaussian_sigma!r}; 1.0 is the "
            f"default (docs/vae.md, eq. 12)."
        )
