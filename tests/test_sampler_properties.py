"""Property-based (hypothesis): EpisodeSampler on any valid source and
settings, and its errors on any invalid one.

Each test backs a row of docs/reliability.md.
"""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from metajax.data.episodes import EpisodeSampler
from metajax.data.sources import ClassImages

from tests.helpers import PROPERTY


# ------------------------------------------------ property-based: the sampler


@st.composite
def class_sources(draw):
  """A ClassImages whose every image is filled with 16 * class + example."""
  num_classes = draw(st.integers(2, 7))
  dense = draw(st.booleans())
  if dense:
    counts = [draw(st.integers(2, 8))] * num_classes
  else:
    counts = draw(
      st.lists(st.integers(2, 8), min_size=num_classes, max_size=num_classes)
    )
  shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
  dtype = draw(st.sampled_from([np.uint8, np.float32]))
  images = [
    np.broadcast_to(
      (16 * c + np.arange(n)).reshape((n,) + (1,) * len(shape)), (n,) + shape
    ).astype(dtype)
    for c, n in enumerate(counts)
  ]
  images = np.stack(images) if dense else images
  return ClassImages(images, [f"c{c}" for c in range(num_classes)]), counts


def decode(x):
  flat = np.asarray(x, np.int64).reshape(len(x), -1)
  assert (flat == flat[:, :1]).all()  # every pixel of an image is its id
  return flat[:, 0] // 16, flat[:, 0] % 16


@PROPERTY
@given(data=st.data())
def test_sampler_properties(data):
  classes, counts = data.draw(class_sources())
  ways = data.draw(st.integers(2, len(counts)))
  shots = data.draw(st.integers(1, min(counts) - 1))
  queries = data.draw(st.integers(1, min(counts) - shots))
  seed = data.draw(st.integers(0, 2**32 - 1))
  sampler = EpisodeSampler(classes, ways=ways, shots=shots, queries=queries)
  ep = sampler.sample(np.random.default_rng(seed))
  shape = np.asarray(classes.images[0]).shape[1:]
  assert ep.support_x.shape == (ways * shots,) + shape
  assert ep.query_x.shape == (ways * queries,) + shape
  assert (
    ep.support_x.dtype
    == ep.query_x.dtype
    == np.asarray(classes.images[0]).dtype
  )
  assert ep.support_y.dtype == ep.query_y.dtype == np.int32
  # Labels 0..ways-1, each exactly `shots` (`queries`) times.
  assert np.bincount(ep.support_y, minlength=ways).tolist() == [shots] * ways
  assert np.bincount(ep.query_y, minlength=ways).tolist() == [queries] * ways
  s_class, s_example = decode(ep.support_x)
  q_class, q_example = decode(ep.query_x)
  # One class per label, the same in support and query; labels distinct.
  label_class = {}
  for c, y in zip(
    np.concatenate([s_class, q_class]),
    np.concatenate([ep.support_y, ep.query_y]),
  ):
    assert label_class.setdefault(int(y), int(c)) == c
  assert len(set(label_class.values())) == ways
  # Every image exists in the class its label names.
  for c, e in zip(
    np.concatenate([s_class, q_class]), np.concatenate([s_example, q_example])
  ):
    assert 0 <= c < len(counts) and 0 <= e < counts[c]
  # No image twice: support and query are disjoint.
  ids = np.concatenate([16 * s_class + s_example, 16 * q_class + q_example])
  assert len(set(ids.tolist())) == len(ids)
  batch = sampler.sample_batch(np.random.default_rng(seed), 3)
  assert batch.support_x.shape == (3, ways * shots) + shape
  assert batch.query_y.shape == (3, ways * queries)


@PROPERTY
@given(data=st.data())
def test_sampler_rejects_every_invalid_setting(data):
  classes, counts = data.draw(class_sources())
  problem = data.draw(
    st.sampled_from(
      ["ways_low", "too_many_ways", "shots_low", "queries_low", "too_few"]
    )
  )
  ways, shots, queries = 2, 1, 1
  if problem == "ways_low":
    ways = data.draw(st.integers(-3, 1))
  elif problem == "too_many_ways":
    ways = data.draw(st.integers(len(counts) + 1, len(counts) + 5))
  elif problem == "shots_low":
    shots = data.draw(st.integers(-3, 0))
  elif problem == "queries_low":
    queries = data.draw(st.integers(-3, 0))
  else:
    shots = data.draw(st.integers(1, min(counts)))
    queries = min(counts) - shots + data.draw(st.integers(1, 3))
  with pytest.raises(ValueError, match="ways|shots|queries"):
    EpisodeSampler(classes, ways=ways, shots=shots, queries=queries)
