"""A user's own drawings prepared like the training data."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from metajax.data import omniglot


def test_prepare_images_matches_the_loader(tmp_path, omniglot_data_dir):
  splits = omniglot.load(
    data_dir=omniglot_data_dir,
    split="seeded",
    rotations=False,
    cache_dir=tmp_path,
  )
  by_name = {
    name: images
    for split in splits.values()
    for name, images in zip(split.names, split.images)
  }
  loaded = by_name["Greek/character01"]  # 20 drawings, ordered by drawer
  with zipfile.ZipFile(
    f"{omniglot_data_dir}/images_background_small1.zip"
  ) as z:
    files = sorted(
      n
      for n in z.namelist()
      if "/Greek/character01/" in n and n.endswith(".png")
    )
    pngs = [Image.open(io.BytesIO(z.read(n))) for n in files]
  assert len(pngs) == 20
  ours = omniglot.prepare_images(pngs, image_size=28)
  assert ours.shape == (20, 28, 28, 1) and ours.dtype == np.uint8
  # Same drawings in some order: match each loaded image to its nearest.
  dist = np.abs(ours[:, None].astype(int) - loaded[None].astype(int)).max(
    axis=(2, 3, 4)
  )
  assert np.all(dist.min(axis=1) <= 1)  # equal up to float rounding
  # Arrays in [0, 1] with dark ink give the same result as the PNGs.
  floats = [np.asarray(p.convert("L"), np.float32) / 255.0 for p in pngs[:2]]
  np.testing.assert_allclose(
    omniglot.prepare_images(floats, 28), ours[:2], atol=1
  )


def test_prepare_images_rejects_bad_input():
  with pytest.raises(ValueError, match="2-D drawing"):
    omniglot.prepare_images([np.zeros((3, 4, 5))])
  with pytest.raises(ValueError, match="at least one"):
    omniglot.prepare_images([])
  with pytest.raises(ValueError, match="image_size"):
    omniglot.prepare_images([np.zeros((5, 5))], image_size=0)
