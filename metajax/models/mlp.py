"""A ReLU multilayer perceptron: the MAML sinusoid net is MLP(1)."""

from typing import Any, Sequence

import flax.linen as nn

Array = Any


class MLP(nn.Module):
  """Dense layers with ReLU between them and a linear output layer.

  `MLP(1)` with the default `hidden=(40, 40)` is the MAML sinusoid
  regression net 1-40-40-1. Params: dense0..dense{n-1} and head, each
  {kernel [in, out], bias [out]}.

  Attributes:
    num_outputs: size of the output layer.
    hidden: sizes of the hidden layers.
  """
  num_outputs: int
  hidden: Sequence[int] = (40, 40)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Applies the net.

    Args:
      x: [B, d_in] float32 inputs.

    Returns:
      [B, num_outputs] outputs.
    """
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"dense{i}")(x))
    return nn.Dense(self.num_outputs, name="head")(x)
