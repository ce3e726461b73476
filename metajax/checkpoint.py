"""Checkpoints of the training state with orbax, in `<workdir>/checkpoints`."""

import os
import sys
from typing import Any, List, Optional, Tuple

import jax
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
  """A checkpoint that cannot be restored: unreadable, or of another structure.

  The message names the checkpoint folder and step, says what is wrong and,
  for an unreadable checkpoint, which earlier step still restores.

  Attributes:
    step: the step that failed.
    last_good: the latest earlier step that restores, or None.
    cause: the underlying orbax / tensorstore exception, if any.
  """

  def __init__(
    self,
    message: str,
    *,
    step: Optional[int] = None,
    last_good: Optional[int] = None,
    cause: Optional[BaseException] = None,
  ):
    super().__init__(message)
    self.step = step
    self.last_good = last_good
    self.cause = cause


def _manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(
    directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
  )


def _drop_closed_loop_reports() -> None:
  """Silences tensorstore's reports of reads that finish after orbax gave up.

  When one read of a broken checkpoint fails, orbax closes its event loop
  while other reads are in flight; each then reports "RuntimeError: Event
  loop is closed" through `sys.unraisablehook`, a screen of tracebacks above
  our one-line `CheckpointError`. This hook drops exactly those reports and
  passes everything else to the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, "drops_closed_loop_reports", False):
    return

  def hook(unraisable):
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
      return
    previous(unraisable)

  # A function attribute marks our hook (mypy allows none on functions).
  hook.drops_closed_loop_reports = True  # type: ignore[attr-defined]
  sys.unraisablehook = hook


def _first_line(e: BaseException, limit: int = 200) -> str:
  lines = str(e).strip().splitlines()
  text = lines[0] if lines else type(e).__name__
  return text if len(text) <= limit else text[:limit] + "..."


def _leaves(tree) -> dict:
  """{"a/b/c": "shape dtype"} for every array leaf of `tree`."""
  return {
    "/".join(map(str, k)): f"{tuple(v.shape)} {v.dtype}"
    for k, v in ocp.tree.to_flat_dict(tree).items()
  }


def _some(names: List[str], limit: int = 3, sep: str = ", ") -> str:
  more = len(names) - limit
  return sep.join(names[:limit]) + (f" (and {more} more)" if more > 0 else "")


def _abstract(x):
  """The restore target of one leaf: its shape, dtype and sharding.

  A leaf without a sharding (e.g. from `jax.eval_shape`) is restored to this
  process's first device, whatever devices wrote it: a run saved by several
  processes or devices loads in one.
  """
  struct = ocp.utils.to_shape_dtype_struct(x)
  if getattr(struct, "sharding", None) is None:
    struct = jax.ShapeDtypeStruct(
      struct.shape,
      struct.dtype,
      sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]),
    )
  return struct


class Checkpointer:
  """Saves and restores one pytree (the train state) by step.

  In `<workdir>/<folder>`: "checkpoints" for the training state's latest
  steps, "best" for the state of the best validation (`train.meta_train`'s
  `keep_best`).

  Saves are atomic (orbax writes to `<step>.orbax-checkpoint-tmp` and renames
  it), so a crash during a save leaves the previous checkpoint loadable; the
  temporary folder is ignored, and replaced by the next save of that step.
  A checkpoint that cannot be restored raises `CheckpointError`.
  """

  def __init__(
    self, workdir: str, max_to_keep: int = 2, folder: str = "checkpoints"
  ):
    self.directory = os.path.abspath(os.path.join(workdir, folder))
    self._mngr = _manager(self.directory, max_to_keep)

  def latest_step(self) -> Optional[int]:
    """The latest saved step, or None when there is none."""
    return self._mngr.latest_step()

  def all_steps(self) -> List[int]:
    """The saved steps, in increasing order."""
    return sorted(self._mngr.all_steps())

  def delete(self, step: int) -> None:
    """Deletes the checkpoint of `step`."""
    self._mngr.delete(int(step))

  def save(self, step: int, state: Any) -> None:
    """Saves `state` as the checkpoint of `step` (`wait` waits for the save)."""
    self._mngr.save(int(step), args=ocp.args.StandardSave(state))

  def restore(
    self, target: Any, step: Optional[int] = None
  ) -> Tuple[Optional[int], Any]:
    """Restores into the structure of `target`; (None, target) if no checkpoint.

    Args:
      target: a pytree of arrays with the structure, shapes and dtypes of the
        saved state (e.g. a freshly initialized one).
      step: the step to restore; None: the latest.

    Returns:
      (step, restored state), or (None, target) when there is no checkpoint.

    Raises:
      CheckpointError: `step` does not exist; the checkpoint holds another
        structure (other model or optimizer); or it is truncated or corrupted
        (the message names the latest earlier step that restores).
    """
    steps = self.all_steps()
    if step is None:
      if not steps:
        return None, target
      step = steps[-1]
    elif step not in steps:
      raise CheckpointError(
        f"{self.directory} has no checkpoint at step {step}; it holds "
        f"steps {steps}.",
        step=step,
      )
    kind, problem, result = self._try_restore(target, step)
    if kind is None:
      return step, result
    path = os.path.join(self.directory, str(step))
    if kind == "structure":
      raise CheckpointError(
        f"The checkpoint at step {step} in {self.directory} does not fit "
        f"this run: {problem}. It was written by a run with another model "
        "or optimizer; resume with the config that wrote it, or use a new "
        "workdir.",
        step=step,
        cause=result,
      )
    last_good = None
    for earlier in reversed([s for s in steps if s < step]):
      if self._try_restore(target, earlier)[0] is None:
        last_good = earlier
        break
    if last_good is not None:
      advice = (
        f"The last good checkpoint is step {last_good}: delete {path} "
        f"to resume from it."
      )
    else:
      advice = (
        f"No earlier checkpoint restores (steps {steps}); delete "
        f"{self.directory} to start over."
      )
    raise CheckpointError(
      f"The checkpoint at step {step} in {self.directory} is unreadable: "
      f"{problem}. {advice}",
      step=step,
      last_good=last_good,
      cause=result,
    )

  def _try_restore(self, target, step):
    """(None, None, state), or (kind, problem, cause) where kind is
    "structure" (the arrays differ from `target`'s) or "unreadable"."""
    _drop_closed_loop_reports()
    folder = os.path.join(self.directory, str(step))
    if not os.path.isdir(os.path.join(folder, "default")):
      return "unreadable", f"its folder {folder} holds no saved state", None
    try:
      metadata = self._mngr.item_metadata(step)
      tree = getattr(metadata, "tree", metadata)
      saved = _leaves(tree) if tree else {}
    except Exception as e:  # pylint: disable=broad-except
      return (
        "unreadable",
        f"its metadata cannot be read ({_first_line(e)}); "
        "it is truncated or corrupted",
        e,
      )
    if not saved:
      return (
        "unreadable",
        "it holds no array metadata; it is truncated or corrupted",
        None,
      )
    wanted = _leaves(target)
    if saved != wanted:
      differences = []
      lacking = sorted(set(wanted) - set(saved))
      extra = sorted(set(saved) - set(wanted))
      changed = sorted(
        k for k in set(saved) & set(wanted) if saved[k] != wanted[k]
      )
      if lacking:
        differences.append(f"it lacks {_some(lacking)}")
      if extra:
        differences.append(f"it has {_some(extra)}, which this run lacks")
      if changed:
        differences.append(
          _some(
            [f"{k} is {saved[k]} in it but {wanted[k]} here" for k in changed],
            sep="; ",
          )
        )
      return "structure", "; ".join(differences), None
    abstract = jax.tree.map(_abstract, target)
    try:
      state = self._mngr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except
      return (
        "unreadable",
        f"its data cannot be read ({_first_line(e)}); it "
        "is truncated or corrupted",
        e,
      )
    return None, None, state

  def wait(self) -> None:
    """Waits until the saves started so far are finished."""
    self._mngr.wait_until_finished()

  def close(self) -> None:
    """Waits for the saves started so far, then closes the manager."""
    self._mngr.wait_until_finished()
    self._mngr.close()
