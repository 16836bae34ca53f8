"""tf_discrete: gradient estimators for discrete latent variables (TF/Keras 3)."""

import setuptools

setuptools.setup(
    name="tf_discrete",
    version="0.1.0",
    description=("Keras 3 layers and gradient estimators for discrete latent "
                 "variables (Bernoulli and categorical)."),
    # The library only: the experiment binaries (experiments/) run from a
    # checkout, so nothing but the tf_discrete namespace is installed.
    packages=setuptools.find_packages(include=["tf_discrete", "tf_discrete.*"]),
    python_requires=">=3.10",
    install_requires=[
        # Keras 3 ships with TensorFlow >= 2.16; every layer and model of
        # ours is Keras 3.
        "tensorflow>=2.18,<2.22",
        "keras>=3.0",
        # The distributions layer (tf_discrete.estimate on tfd
        # distributions). TFP 0.25 refuses to import under Keras 3 unless
        # the tf-keras package is present: it uses it for its own Keras-2
        # layers, which we never use. tf-keras follows TensorFlow's version.
        "tensorflow-probability>=0.25,<0.26",
        "tf-keras>=2.18,<2.22",
        "tensorflow-datasets>=4.9,<4.10",
        "importlib_resources",  # Needed by tensorflow-datasets 4.9.x.
        "absl-py",
        "numpy",
        "scipy",  # Reading .mat files (Omniglot, static MNIST).
        "matplotlib",  # Curves written by the experiment binaries.
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout"],
    },
)
