"""N-way K-shot episode sampling on the host (numpy), and device prefetching.

Sampling is driven by an explicit `numpy.random.Generator`. The trainer derives
one generator per step (`step_rng(seed, step)`), so a resumed run samples
exactly the episodes an uninterrupted run would have.
"""

import threading
import queue
from typing import (
  Any,
  Callable,
  Dict,
  Iterable,
  Iterator,
  List,
  Optional,
  Protocol,
  Sequence,
  Tuple,
)

import jax
import numpy as np

from metajax import checks
from metajax.data.sources import ClassImages
from metajax.types import Episode


class TaskSource(Protocol):
  """Anything that samples meta-batches: `sample_batch(rng, size) -> Episode`."""

  def sample_batch(
    self, rng: np.random.Generator, meta_batch_size: int
  ) -> Episode:
    """`meta_batch_size` tasks stacked on a leading task axis."""
    ...


def step_rng(seed: int, step: int) -> np.random.Generator:
  """The host generator for one step: a pure function of (seed, step)."""
  return np.random.default_rng([int(seed), int(step)])


def check_classes(classes: ClassImages) -> None:
  """Raises ValueError unless `classes` is a well-formed source.

  Every class must hold an array `[n_i, *shape]` with one example shape and
  one dtype (uint8, or float without NaN or infinite values) across classes.
  """
  images = classes.images
  names = list(classes.names) if classes.names is not None else []
  name = lambda i: f"class {i}" + (f" ({names[i]!r})" if i < len(names) else "")
  shape: Tuple[int, ...]  # of one example (a list's: set by class 0)
  dtype: np.dtype
  if isinstance(images, np.ndarray):
    if images.ndim < 3:
      raise ValueError(
        f"Dense class images must be [num_classes, n, *shape]; "
        f"got shape {images.shape}."
      )
    arrays = [images]
    shape, dtype = images.shape[2:], images.dtype
  else:
    arrays = []
    for i, x in enumerate(images):
      if not isinstance(x, np.ndarray) or x.ndim < 2:
        raise ValueError(
          f"{name(i)} must be an array [n, *shape] of "
          f"examples; got {type(x).__name__} of shape "
          f"{np.shape(x)}."
        )
      if i and (x.shape[1:] != shape or x.dtype != dtype):
        raise ValueError(
          f"{name(i)} has examples of shape {x.shape[1:]} and dtype "
          f"{x.dtype}, but {name(0)} has {shape} and {dtype}; every class "
          "needs the same."
        )
      shape, dtype = x.shape[1:], x.dtype
      arrays.append(x)
  if not arrays:
    raise ValueError("The source has no classes.")
  if not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
    raise ValueError(
      f"Class images have dtype {dtype}; use uint8 (scaled by "
      "1/255 by the models) or float."
    )
  if np.issubdtype(dtype, np.floating):
    for i, x in enumerate(arrays):
      if not np.isfinite(x).all():
        where = name(i) if len(arrays) > 1 else "the dense array"
        raise ValueError(f"Class images hold NaN or infinite values ({where}).")


def _eligible_groups(
  groups: Sequence[Any], num_classes: int, ways: int
) -> List[np.ndarray]:
  """The class indices of each group with at least `ways` classes."""
  groups = list(groups)
  if len(groups) != num_classes:
    raise ValueError(
      f"groups has {len(groups)} labels but the source has "
      f"{num_classes} classes; give one label per class."
    )
  members: Dict[Any, List[int]] = {}
  for i, g in enumerate(groups):
    members.setdefault(g, []).append(i)
  eligible = [np.asarray(m) for m in members.values() if len(m) >= ways]
  if not eligible:
    raise ValueError(
      f"ways={ways} but the largest group has only "
      f"{max(len(m) for m in members.values())} classes; use ways <= that."
    )
  return eligible


class EpisodeSampler:
  """Samples N-way K-shot Q-query classification episodes.

  Each episode draws `ways` distinct classes, shuffles their order (so label
  `i` means a different class in every episode), and draws `shots + queries`
  distinct examples of each class: the first `shots` form the support set, the
  rest the query set. Support and query are disjoint. Rows are ordered class by
  class (labels `[0]*shots + [1]*shots + ...`).

  With `groups` (one label per class, e.g. each Omniglot character's
  alphabet: `classes.name_groups()`), every episode draws its classes from one
  group: a group chosen uniformly among those with at least `ways` classes,
  then `ways` of its classes (the Omniglot challenge's within-alphabet
  episodes, where classes differ in small strokes).

  Example:
    A meta-batch of 32 episodes::

      sampler = EpisodeSampler(splits["train"], ways=5, shots=1, queries=15)
      batch = sampler.sample_batch(np.random.default_rng(0),
                                   meta_batch_size=32)
      batch.support_x.shape  # (32, 5, 28, 28, 1)
  """

  def __init__(
    self,
    classes: ClassImages,
    *,
    ways: int,
    shots: int,
    queries: int,
    groups: Optional[Sequence[Any]] = None,
  ):
    checks.integer("ways", ways, minimum=2)
    checks.integer("shots", shots, minimum=1)
    checks.integer("queries", queries, minimum=1)
    check_classes(classes)
    if classes.num_classes < ways:
      raise ValueError(
        f"ways={ways} but this split has only {classes.num_classes} classes; "
        f"use ways <= {classes.num_classes}."
      )
    if classes.min_examples() < shots + queries:
      raise ValueError(
        f"shots + queries = {shots + queries} but the smallest class of this "
        f"split has only {classes.min_examples()} examples; use shots + "
        f"queries <= {classes.min_examples()}."
      )
    self.classes = classes
    self.ways, self.shots, self.queries = ways, shots, queries
    images = classes.images
    self._dense = images if isinstance(images, np.ndarray) else None
    self._groups = (
      None
      if groups is None
      else _eligible_groups(groups, classes.num_classes, ways)
    )

  def sample(self, rng: np.random.Generator) -> Episode:
    """One episode as numpy arrays."""
    ways, shots, queries = self.ways, self.shots, self.queries
    if self._groups is None:
      chosen = rng.choice(self.classes.num_classes, size=ways, replace=False)
    else:
      members = self._groups[rng.integers(len(self._groups))]
      chosen = members[rng.choice(len(members), size=ways, replace=False)]
    per_class = shots + queries
    if self._dense is not None:
      n = self._dense.shape[1]
      # Independent permutation per class; argsort of uniforms is vectorized.
      idx = np.argsort(rng.random((ways, n)), axis=1)[:, :per_class]
      x = self._dense[chosen[:, None], idx]  # [ways, per_class, H, W, C]
    else:
      x = np.stack(
        [
          self.classes.images[c][
            rng.choice(
              len(self.classes.images[c]), size=per_class, replace=False
            )
          ]
          for c in chosen
        ]
      )
    labels = np.arange(ways, dtype=np.int32)
    support_x = x[:, :shots].reshape((ways * shots,) + x.shape[2:])
    query_x = x[:, shots:].reshape((ways * queries,) + x.shape[2:])
    return Episode(
      support_x=support_x,
      support_y=np.repeat(labels, shots),
      query_x=query_x,
      query_y=np.repeat(labels, queries),
    )

  def sample_batch(
    self, rng: np.random.Generator, meta_batch_size: int
  ) -> Episode:
    """`meta_batch_size` episodes stacked on a leading task axis."""
    checks.integer("meta_batch_size", meta_batch_size, minimum=1)
    return stack([self.sample(rng) for _ in range(meta_batch_size)])


class ClassBatchSampler:
  """Non-episodic mini-batches over all classes of a split, for pre-training.

  Each "task" is one mini-batch of `batch_size` examples drawn uniformly
  (with replacement) from every example of every class, with GLOBAL labels
  0..num_classes-1, in the query field; the support field is empty. The
  Baseline learners' `task_loss` trains on it through the same trainer.

  Example:
    One mini-batch of 128 images, with a leading axis of 1::

      sampler = ClassBatchSampler(splits["train"], batch_size=128)
      batch = sampler.sample_batch(np.random.default_rng(0), 1)
      batch.query_x.shape  # (1, 128, 28, 28, 1)
  """

  def __init__(self, classes: ClassImages, *, batch_size: int):
    checks.integer("batch_size", batch_size, minimum=1)
    check_classes(classes)
    if classes.num_classes < 2:
      raise ValueError(
        f"Pre-training needs at least 2 classes, got {classes.num_classes}."
      )
    self.classes = classes
    self.batch_size = batch_size
    self.num_classes = classes.num_classes
    sizes = np.array([len(c) for c in classes.images])
    self._offsets = np.concatenate([[0], np.cumsum(sizes)])
    images = classes.images
    self._dense = images if isinstance(images, np.ndarray) else None

  def sample(self, rng: np.random.Generator) -> Episode:
    """One mini-batch as an Episode with an empty support set."""
    flat = rng.integers(0, self._offsets[-1], size=self.batch_size)
    labels = np.searchsorted(self._offsets, flat, side="right") - 1
    index = flat - self._offsets[labels]
    if self._dense is not None:
      x = self._dense[labels, index]
    else:
      x = np.stack([self.classes.images[c][i] for c, i in zip(labels, index)])
    labels = labels.astype(np.int32)
    return Episode(
      support_x=x[:0], support_y=labels[:0], query_x=x, query_y=labels
    )

  def sample_batch(
    self, rng: np.random.Generator, meta_batch_size: int
  ) -> Episode:
    """`meta_batch_size` mini-batches stacked on a leading axis."""
    checks.integer("meta_batch_size", meta_batch_size, minimum=1)
    return stack([self.sample(rng) for _ in range(meta_batch_size)])


def stack(episodes: Iterable[Episode]) -> Episode:
  """Stacks episodes of equal shapes on a new leading task axis."""
  return jax.tree.map(lambda *xs: np.stack(xs), *episodes)


def prefetch_to_device(
  iterator: Iterator,
  size: int = 2,
  device: Optional[jax.Device] = None,
  put: Optional[Callable[[Any], Any]] = None,
) -> Iterator:
  """Puts the next `size` items of `iterator` on the device ahead of use.

  A background thread pulls from `iterator` (host sampling) and starts the
  asynchronous host-to-device copy, so both overlap with the current step.
  Exceptions in the producer are re-raised in the consumer.

  Args:
    iterator: yields pytrees of numpy arrays.
    size: how many items to keep in flight.
    device: target device (default: the first local device).
    put: how to move an item to the device(s) instead of `device_put` to
      `device` (e.g. `parallel.put_batch` for a meta-batch sharded over a
      mesh).

  Yields:
    The same pytrees, as device arrays, in the same order.
  """
  if put is None:
    device = device or jax.local_devices()[0]
    put = lambda item: jax.device_put(item, device)
  q: queue.Queue = queue.Queue(maxsize=size)
  done = object()
  stop = threading.Event()

  def producer():
    try:
      for item in iterator:
        if stop.is_set():
          return
        q.put(put(item))
      q.put(done)
    except BaseException as e:  # pylint: disable=broad-except
      q.put(e)

  thread = threading.Thread(target=producer, daemon=True)
  thread.start()
  try:
    while True:
      item = q.get()
      if item is done:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
    # Drain so a producer blocked on put() can see `stop` and exit.
    while thread.is_alive():
      try:
        q.get(timeout=0.05)
      except queue.Empty:
        pass
