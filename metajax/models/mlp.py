"""A ReLU multilayer perceptron: the MAML sinusoid net is MLP(1)."""

from typing import Any, Optional, Sequence

import flax.linen as nn

from metajax import checks

Array = Any


class MLP(nn.Module):
  """Dense layers with ReLU between them and a linear output layer.

  `MLP(1)` with the default `hidden=(40, 40)` is the MAML sinusoid
  regression net 1-40-40-1. Params: dense0..dense{n-1} and head, each
  {kernel [in, out], bias [out]}.

  Inputs with more than one feature axis (images [B, H, W, C]) are
  flattened first. `MLP(None)` has no output layer: an embedding, the last
  hidden layer's ReLU features; `MLP(None, hidden=())` is the flattened
  input itself (MANN's paper fed flattened pixels), with no parameters.

  Attributes:
    num_outputs: size of the output layer; None: no output layer.
    hidden: sizes of the hidden layers.
  """

  num_outputs: Optional[int]
  hidden: Sequence[int] = (40, 40)

  def __post_init__(self):
    checks.integer("num_outputs", self.num_outputs, minimum=1, optional=True)
    if not isinstance(self.hidden, (tuple, list)):
      raise ValueError(
        f"hidden must be a sequence of layer widths, got {self.hidden!r}."
      )
    for width in self.hidden:
      checks.integer("each width of hidden", width, minimum=1)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Applies the net.

    Args:
      x: [B, d_in] or [B, ...] float32 inputs.

    Returns:
      [B, num_outputs] outputs ([B, last hidden width or flattened d_in]
      without an output layer).
    """
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"dense{i}")(x))
    if self.num_outputs is None:
      return x
    return nn.Dense(self.num_outputs, name="head")(x)
