"""Meta-Curvature: the inner gradient times learned Kronecker-factored matrices.

Park & Oliva (2019) precondition each layer's gradient with a curvature
matrix that is a Kronecker product of small matrices, one per axis of the
weight, meta-learned with the initialization. For a convolution kernel
[kh, kw, C_in, C_out] (flax's layout, `metajax.models.layers.Conv`) the
gradient G is read as a tensor [kh * kw, C_in, C_out] and transformed by a
mode product on each axis,

  MC(G) = G x_1 M_f x_2 M_i x_3 M_o,  MC(G)[f, i, o] =
      sum_{g, j, p} M_f[f, g] M_i[i, j] M_o[o, p] G[g, j, p],

which is the paper's G x_1 M_o x_2 M_i x_3 M_f on G as [C_out, C_in, kh *
kw]; vec(MC(G)) = (M_f kron M_i kron M_o) vec(G) with vec in row-major order
here (column-major there); the matrix M_f kron M_i kron M_o, of (kh kw
C_in C_out)^2 entries, is never formed. A dense kernel [in, out] has M_i
and M_o (MC(G) = M_i G M_o^T); a vector (bias, batch-norm scale) a learned
diagonal (elementwise factor) or a full matrix. Every factor starts at the
identity, so at initialization the transform is the identity and the
learner is MAML.
"""

import math
from typing import Any, Dict

import jax
import jax.numpy as jnp
import optax

from metajax import checks

Params = Any
VECTORS = ("diagonal", "full")


def init_meta_curvature(params: Params, *, vectors: str = "diagonal") -> Any:
  """Identity factors for every leaf of `params`: the initial meta-curvature.

  Each leaf gets a dict of factors: a kernel with 3 or more axes [..., C_in,
  C_out] gets "filter" (the product of its leading axes, e.g. kh * kw),
  "in" and "out"; a matrix [in, out] gets "in" and "out"; a vector or scalar
  of n entries gets "diagonal" (ones [n]) or, with `vectors="full"`, "full"
  (the identity [n, n]).

  Args:
    params: a pytree of arrays (the weights the inner loop adapts).
    vectors: "diagonal" (the authors' code and learn2learn) or "full".

  Returns:
    A pytree with `params`' structure as a prefix: each leaf is replaced by
    its dict of factors, in the leaf's dtype.

  Example:
    Factors of a Conv4's weights::

      factors = init_meta_curvature(weights)
      factors["conv0"]["kernel"]["filter"].shape   # (9, 9)
  """
  checks.one_of("vectors", vectors, VECTORS)

  def identity_factors(leaf) -> Dict[str, jax.Array]:
    shape, dtype = jnp.shape(leaf), jnp.result_type(leaf)
    eye = lambda n: jnp.eye(n, dtype=dtype)
    if len(shape) >= 3:
      return {
        "filter": eye(math.prod(shape[:-2])),
        "in": eye(shape[-2]),
        "out": eye(shape[-1]),
      }
    if len(shape) == 2:
      return {"in": eye(shape[0]), "out": eye(shape[1])}
    if vectors == "full":
      return {"full": eye(math.prod(shape))}
    return {"diagonal": jnp.ones(shape, dtype)}

  return jax.tree.map(identity_factors, params)


def apply_meta_curvature(grad: jax.Array, factors: Dict[str, Any]) -> jax.Array:
  """MC(grad): the mode products of one leaf's gradient with its factors.

  Args:
    grad: the gradient of one leaf (any shape `init_meta_curvature` takes).
    factors: that leaf's dict of factors.

  Returns:
    The transformed gradient, shaped like `grad`.
  """
  if "filter" in factors:
    g = grad.reshape((-1,) + grad.shape[-2:])  # [kh * kw, C_in, C_out]
    out = jnp.einsum(
      "fg,ij,op,gjp->fio", factors["filter"], factors["in"], factors["out"], g
    )
    return out.reshape(grad.shape)
  if "in" in factors:
    return jnp.einsum("ij,op,jp->io", factors["in"], factors["out"], grad)
  if "full" in factors:
    return (factors["full"] @ grad.reshape(-1)).reshape(grad.shape)
  return factors["diagonal"] * grad


def meta_curvature(
  factors: Any, learning_rate: float
) -> optax.GradientTransformation:
  """updates = -learning_rate * MC(grads), MC with the (meta-learned) factors.

  The factors are ordinary arrays, so the outer gradient flows into them
  when they are part of the meta-parameters (`metajax.learners.
  meta_curvature`). Leaves masked out by `optax.masked` (the inner loop's
  `trainable`) stay masked.

  Args:
    factors: as `init_meta_curvature` returns, for the same parameters.
    learning_rate: the inner step size alpha.

  Returns:
    A stateless `optax.GradientTransformation`.
  """

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params

    def step(g, f):
      if isinstance(g, optax.MaskedNode):
        return g
      return -learning_rate * apply_meta_curvature(g, f)

    updates = jax.tree.map(
      step, updates, factors, is_leaf=lambda x: isinstance(x, optax.MaskedNode)
    )
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)
