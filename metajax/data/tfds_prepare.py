"""Preparing a tensorflow-datasets builder once, whoever asks first.

Several processes on one machine that load the same dataset for the first
time (training runs started side by side, pytest-xdist workers) would each
prepare it into the same cache folder, and all but the first would fail when
renaming their finished copy onto the one already there
(`FileExistsError: Cannot rename .../incomplete.XXXX_1.0.0`). `prepare`
serializes them with a lock file beside the builder's folder: the first
prepares, the others wait and then read its copy.
"""

import os
import pathlib
from typing import Callable, Optional

import filelock
import tensorflow_datasets as tfds


def prepare(
  make_builder: Callable[[], tfds.core.DatasetBuilder],
  download_config: Optional[tfds.download.DownloadConfig] = None,
) -> tfds.core.DatasetBuilder:
  """A prepared builder from `make_builder()`, prepared at most once.

  Args:
    make_builder: makes the builder (called again after waiting for the
      lock: a builder made before another process prepared the data does
      not see its splits).
    download_config: passed to `download_and_prepare`.

  Returns:
    A builder whose data is prepared.
  """
  builder = make_builder()
  if builder.is_prepared():
    return builder
  lock_path = pathlib.Path(os.fspath(builder.data_dir) + ".lock")
  lock_path.parent.mkdir(parents=True, exist_ok=True)
  with filelock.FileLock(os.fspath(lock_path)):
    builder = make_builder()
    if not builder.is_prepared():
      builder.download_and_prepare(download_config=download_config)
  return builder
