"""Task sources and datasets.

The sinusoid task family; class-indexed image datasets (Omniglot, CIFAR-FS,
FC100, miniImageNet, tieredImageNet), their tensorflow-datasets builders and
loaders; the episode samplers over them; and augmentation of training
episodes.
"""
