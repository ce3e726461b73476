"""metajax: functional meta-learning and few-shot learning in JAX."""

import setuptools

setuptools.setup(
    name="metajax",
    version="0.1.0",
    description="Functional meta-learning and few-shot learning in JAX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["metajax", "metajax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax>=0.2.5",  # optax.tree_utils.tree_norm
        "chex>=0.1.86",
        "tensorflow-datasets>=4.9.6",
        "array_record>=0.5",
        "absl-py",
        "ml_collections",
        "orbax-checkpoint>=0.6",
        "numpy",
        "pillow",
        "tqdm",
        "importlib_resources",
        "tensorboardX",
        "filelock",  # JAX's compilation cache: locked, size-bounded
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-xdist",
            "hypothesis",
            "nbclient",
            "nbformat",
            "ipykernel",
            "matplotlib",
            "psutil",
        ],
        # The API reference and guides: see docs/index.md.
        "docs": ["sphinx", "myst-parser"],
        # The formatter and linter (ruff, pinned: its layout may change between
        # releases) and the type checker, configured in pyproject.toml.
        "lint": ["ruff==0.17.6", "mypy>=2.0"],
    },
)
