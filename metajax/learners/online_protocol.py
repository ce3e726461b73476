"""MANN's online protocol (Santoro et al. 2016): accuracy by instance.

A sequence of shuffled drawings of `ways` new classes is labelled online
(`mann.online_logits_fn`: step t sees every earlier label), and each
prediction is scored by how many times its class was seen before.
"""

from typing import Any, Dict, List, Sequence

import jax
import numpy as np

__all__ = ("accuracy_by_instance", "by_instance")

Array = Any


def accuracy_by_instance(
  predictions: Array, labels: Array, instances: Sequence[int] = (1, 2, 3, 5, 10)
) -> Dict[int, float]:
  """Accuracy at the k-th presentation of a class, over online sequences.

  Step t of a sequence is the k-th instance of its class when y_t occurs k
  times in y_0..y_t. Accuracy at instance k is the fraction of correct
  predictions among all such steps of all sequences (NaN if none).

  Args:
    predictions: [T] or [B, T] predicted labels, or [..., T, ways] logits.
    labels: [T] or [B, T] true labels, same leading shape.
    instances: the instance numbers k (>= 1) to report.

  Returns:
    {k: accuracy} for each k of `instances`.
  """
  labels = np.asarray(labels)
  predictions = np.asarray(predictions)
  if predictions.ndim == labels.ndim + 1:
    predictions = predictions.argmax(axis=-1)
  if predictions.shape != labels.shape:
    raise ValueError(
      f"predictions of shape {predictions.shape} do not match "
      f"labels of shape {labels.shape}."
    )
  labels2 = labels.reshape(-1, labels.shape[-1])
  correct = predictions.reshape(labels2.shape) == labels2
  # count[b, t] = occurrences of labels[b, t] in labels[b, :t+1].
  same = labels2[:, :, None] == labels2[:, None, :]  # [B, T, T]
  causal = np.tril(np.ones(same.shape[1:], bool))
  count = (same & causal).sum(axis=-1)
  out = {}
  for k in instances:
    hit = count == k
    out[k] = float(correct[hit].mean()) if hit.any() else float("nan")
  return out


def by_instance(
  online,
  meta_params,
  classes,
  *,
  ways: int,
  episodes: int,
  instances: int,
  rng: np.random.Generator,
  batch: int = 50,
) -> Dict[int, np.ndarray]:
  """The paper's protocol: per-sequence accuracy at each instance number.

  Each of `episodes` sequences shows `ways` classes drawn from `classes`,
  `instances` drawings of each, in a random order; `online` labels every
  step (`online_logits_fn`), and `accuracy_by_instance` scores it.

  Args:
    online: `online_logits_fn(...)` of the run's MANN.
    meta_params: its meta-parameters.
    classes: `ClassImages` of new classes (a test split).
    ways: classes per sequence.
    episodes: sequences.
    instances: drawings of each class in a sequence.
    rng: numpy Generator for the classes, drawings and orders.
    batch: sequences labelled at once.

  Returns:
    {k: float [episodes] accuracies at the k-th instance}, k = 1..instances.
  """
  from metajax.data.episodes import EpisodeSampler  # pylint: disable=g-import-not-at-top

  sampler = EpisodeSampler(classes, ways=ways, shots=instances, queries=1)
  label_all = jax.jit(jax.vmap(online, in_axes=(None, 0, 0)))
  values: Dict[int, List[float]] = {k: [] for k in range(1, instances + 1)}
  for start in range(0, episodes, batch):
    size = min(batch, episodes - start)
    ep = sampler.sample_batch(rng, size)
    order = np.stack(
      [rng.permutation(ep.support_y.shape[1]) for _ in range(size)]
    )
    x = np.take_along_axis(
      ep.support_x,
      order.reshape(order.shape + (1,) * (ep.support_x.ndim - 2)),
      axis=1,
    )
    y = np.take_along_axis(ep.support_y, order, axis=1)
    predictions = np.asarray(label_all(meta_params, x, y)).argmax(-1)
    for p, labels in zip(predictions, y):
      for k, acc in accuracy_by_instance(
        p, labels, instances=range(1, instances + 1)
      ).items():
        values[k].append(acc)
  return {k: np.asarray(v) for k, v in values.items()}
