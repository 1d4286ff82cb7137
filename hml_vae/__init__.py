"""hml_vae: the autoencoders of Hands-On Machine Learning ch. 17 and variational autoencoders
in Keras 3. Modules, in the order data flows: data -> layers/losses -> models -> training ->
evaluation -> plots/export."""

__version__ = "0.1.0"
