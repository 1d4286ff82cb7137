"""Custom Keras layers and regularizers, each registered so a saved ``.keras`` file reloads
with identical outputs (every constructor argument is returned by ``get_config()``).

Sections:

- HOML ch. 17 autoencoders: :class:`DenseTranspose` (tied weights) and
  :class:`KLDivergenceRegularizer` (sparsity).
"""

from __future__ import annotations

import keras
from keras import ops

# --- HOML ch. 17 autoencoders: tied weights and sparsity ----------------------------------


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
        mean_activations = ops.clip(ops.mean(activations, axis=0), epsilon, 1.0 - epsilon)
        return self.weight * ops.sum(
            kl_divergence_bernoulli(self.target, mean_activations)
        )

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
