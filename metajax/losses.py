"""Losses and metrics for one task's outputs and targets."""

import jax.numpy as jnp
import optax


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits, labels):
  """Fraction of rows whose argmax equals the label."""
  return (jnp.argmax(logits, axis=-1) == labels).mean()


def mse(outputs, targets):
  """Mean squared error."""
  return jnp.mean(jnp.square(outputs - targets))


TASKS = {
  # task name -> (loss, metric, metric name)
  "classification": (cross_entropy, accuracy, "accuracy"),
  "regression": (mse, mse, "mse"),
}


def for_task(task: str):
  """(loss, metric, metric_name) for "classification" or "regression"."""
  if task not in TASKS:
    raise ValueError(f"Unknown task {task!r}; valid: {sorted(TASKS)}.")
  return TASKS[task]
