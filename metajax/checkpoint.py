"""Checkpoints of the training state with orbax, in `<workdir>/checkpoints`."""

import os
from typing import Any, Optional, Tuple

import jax
import orbax.checkpoint as ocp


def _manager(workdir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  path = os.path.abspath(os.path.join(workdir, "checkpoints"))
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(path, options=options)


class Checkpointer:
  """Saves and restores one pytree (the train state) by step.

  Saves are atomic (orbax writes to a temporary folder and renames it), so a
  crash during a save leaves the previous checkpoint loadable.
  """

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self._mngr = _manager(workdir, max_to_keep)

  def latest_step(self) -> Optional[int]:
    return self._mngr.latest_step()

  def save(self, step: int, state: Any) -> None:
    self._mngr.save(int(step), args=ocp.args.StandardSave(state))

  def restore(self, target: Any, step: Optional[int] = None
              ) -> Tuple[Optional[int], Any]:
    """Restores into the structure of `target`; (None, target) if no checkpoint."""
    step = self._mngr.latest_step() if step is None else step
    if step is None:
      return None, target
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    state = self._mngr.restore(step, args=ocp.args.StandardRestore(abstract))
    return step, state

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()
