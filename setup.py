"""tf_discrete: gradient estimators for discrete latent variables (TF/Keras 3)."""

import setuptools

setuptools.setup(
    name="tf_discrete",
    version="0.1.0",
    description=("Keras 3 layers and estimators (REINFORCE, RLOO, ARM, DisARM, "
                 "VIMCO, ARSM, coupled categorical DisARM) for discrete "
                 "latent variables, with VAE experiment binaries."),
    # The library only: the experiment binaries (experiments/) run from a
    # checkout, so nothing but the tf_discrete namespace is installed.
    packages=setuptools.find_packages(include=["tf_discrete", "tf_discrete.*"]),
    python_requires=">=3.10",
    install_requires=[
        # Keras 3 ships with TensorFlow >= 2.16; tf_keras is deliberately not
        # a dependency. tensorflow-probability is not one either: its import
        # requires tf_keras under Keras 3 (see README, "Dependencies").
        "tensorflow>=2.16,<2.22",
        "keras>=3.0",
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
