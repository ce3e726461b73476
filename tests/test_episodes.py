"""The episode sampler, the sinusoid family and the prefetching iterator."""

import numpy as np
import pytest

from metajax.data.episodes import EpisodeSampler, prefetch_to_device, step_rng
from metajax.data.sinusoid import SinusoidSampler
from metajax.data.sources import ClassImages

NUM_CLASSES, PER_CLASS = 12, 7


def make_classes(dense=True):
  # Pixel value encodes (class, example) so every image is identifiable.
  ids = np.arange(NUM_CLASSES * PER_CLASS).reshape(NUM_CLASSES, PER_CLASS)
  images = np.broadcast_to(
    ids[:, :, None, None, None] % 256, (NUM_CLASSES, PER_CLASS, 2, 2, 1)
  ).astype(np.uint8)
  images = images.copy()
  images[..., 1, 1, 0] = ids // 256  # high byte
  names = [f"c{i}" for i in range(NUM_CLASSES)]
  if dense:
    return ClassImages(images, names)
  return ClassImages(
    [images[c, : PER_CLASS - (c % 2)] for c in range(NUM_CLASSES)], names
  )


def decode(x):
  ids = x[..., 0, 0, 0].astype(int) + 256 * x[..., 1, 1, 0].astype(int)
  return ids // PER_CLASS, ids


@pytest.mark.parametrize("dense", [True, False])
def test_episode_invariants(dense):
  sampler = EpisodeSampler(make_classes(dense), ways=4, shots=2, queries=3)
  rng = np.random.default_rng(0)
  for _ in range(20):
    ep = sampler.sample(rng)
    assert ep.support_x.shape == (8, 2, 2, 1) and ep.query_x.shape == (
      12,
      2,
      2,
      1,
    )
    assert ep.support_x.dtype == np.uint8
    np.testing.assert_array_equal(ep.support_y, np.repeat(np.arange(4), 2))
    np.testing.assert_array_equal(ep.query_y, np.repeat(np.arange(4), 3))
    s_cls, s_ids = decode(ep.support_x)
    q_cls, q_ids = decode(ep.query_x)
    assert not set(s_ids) & set(q_ids)  # support and query disjoint
    assert len(set(s_ids)) == 8 and len(set(q_ids)) == 12
    # Each label maps to exactly one class, the same in support and query.
    label_to_class = {}
    for cls, y in list(zip(s_cls, ep.support_y)) + list(zip(q_cls, ep.query_y)):
      assert label_to_class.setdefault(int(y), cls) == cls
    assert len(set(label_to_class.values())) == 4


def test_label_order_is_shuffled():
  sampler = EpisodeSampler(make_classes(), ways=3, shots=1, queries=1)
  rng = np.random.default_rng(1)
  firsts = {int(decode(sampler.sample(rng).support_x)[0][0]) for _ in range(50)}
  assert len(firsts) > 3  # label 0 is not always the same class


def test_seeded_determinism_and_batch():
  sampler = EpisodeSampler(make_classes(), ways=5, shots=1, queries=2)
  a = sampler.sample_batch(step_rng(3, 7), 4)
  b = sampler.sample_batch(step_rng(3, 7), 4)
  c = sampler.sample_batch(step_rng(3, 8), 4)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.support_x, c.support_x)
  assert a.support_x.shape == (4, 5, 2, 2, 1) and a.query_y.shape == (4, 10)


def test_classes_come_from_the_given_split():
  classes = make_classes()
  split = ClassImages(classes.images[3:6], classes.names[3:6])
  ep = EpisodeSampler(split, ways=3, shots=1, queries=1).sample(
    np.random.default_rng(0)
  )
  assert set(decode(ep.support_x)[0]) == {3, 4, 5}


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(ways=13, shots=1, queries=1), "ways=13.*only 12 classes"),
    (dict(ways=2, shots=5, queries=3), "shots \\+ queries = 8.*only 7"),
    (dict(ways=1, shots=1, queries=1), "ways must be an integer >= 2"),
    (dict(ways=2, shots=0, queries=1), "shots must be"),
    (dict(ways=2, shots=1, queries=0), "queries must be"),
  ],
)
def test_bad_sizes(kwargs, match):
  with pytest.raises(ValueError, match=match):
    EpisodeSampler(make_classes(), **kwargs)


def test_sinusoid_family():
  sampler = SinusoidSampler(shots=5, queries=7)
  batch = sampler.sample_batch(np.random.default_rng(0), 1000)
  assert batch.support_x.shape == (1000, 5, 1) and batch.query_y.shape == (
    1000,
    7,
    1,
  )
  x = np.concatenate([batch.support_x, batch.query_x], 1)[..., 0]
  y = np.concatenate([batch.support_y, batch.query_y], 1)[..., 0]
  assert x.min() >= -5 and x.max() <= 5
  # Recover each task's amplitude: A = max |y| over a dense grid of the same
  # task is at most 5 and at least 0.1; here |y| <= A <= 5.
  assert np.abs(y).max() <= 5.0
  # Same amplitude and phase for support and query: a fit of a sin(x) + b cos(x)
  # on all points is exact.
  for i in range(5):
    design = np.stack([np.sin(x[i]), np.cos(x[i])], 1)
    coef, *_ = np.linalg.lstsq(design, y[i], rcond=None)
    amp, phase = np.hypot(*coef), np.arctan2(coef[1], coef[0])
    assert 0.1 <= amp <= 5.0 and -1e-4 <= phase <= np.pi + 1e-4
    np.testing.assert_allclose(design @ coef, y[i], atol=1e-4)


def test_prefetch_keeps_order_and_raises():
  items = [{"a": np.full((2,), i)} for i in range(5)]
  out = [int(x["a"][0]) for x in prefetch_to_device(iter(items), size=2)]
  assert out == list(range(5))

  def broken():
    yield {"a": np.zeros(1)}
    raise RuntimeError("sampler broke")

  it = prefetch_to_device(broken())
  next(it)
  with pytest.raises(RuntimeError, match="sampler broke"):
    next(it)


def test_within_group_episodes():
  """groups: every episode's classes come from one group with >= ways classes;
  every such group is drawn; a group too small never is."""
  classes = make_classes()
  # Groups of 5, 4 and 3 classes, named as Omniglot's "<alphabet>/<char>".
  sizes = {"A": 5, "B": 4, "C": 3}
  groups = [g for g, n in sizes.items() for _ in range(n)]
  classes = ClassImages(
    classes.images, [f"{g}/c{i}" for i, g in enumerate(groups)]
  )
  assert classes.name_groups() == groups
  sampler = EpisodeSampler(
    classes, ways=4, shots=1, queries=1, groups=classes.name_groups()
  )
  seen = set()
  for step in range(60):
    ep = sampler.sample(step_rng(0, step))
    drawn = {groups[c] for c in decode(ep.support_x)[0]}
    assert len(drawn) == 1  # one group per episode
    assert len(set(decode(ep.support_x)[0])) == 4  # distinct classes
    seen |= drawn
  assert seen == {"A", "B"}  # "C" has 3 < 4 classes
  # Without groups, the classes are the generator's first draw, as they
  # always were (runs sample the same episodes as before the option).
  plain = EpisodeSampler(classes, ways=4, shots=1, queries=1)
  np.testing.assert_array_equal(
    decode(plain.sample(step_rng(0, 1)).support_x)[0],
    step_rng(0, 1).choice(NUM_CLASSES, size=4, replace=False),
  )
  with pytest.raises(ValueError, match="largest group has only 5 classes"):
    EpisodeSampler(classes, ways=6, shots=1, queries=1, groups=groups)
  with pytest.raises(
    ValueError, match="groups has 3 labels but the source has 12 classes"
  ):
    EpisodeSampler(classes, ways=2, shots=1, queries=1, groups=["A"] * 3)
