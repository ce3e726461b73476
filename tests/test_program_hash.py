"""experiments/program_hash.py: the hash tells programs apart, not runs."""

from experiments import program_hash
from metajax.learners import FACTORIES


def test_the_same_learner_lowers_to_the_same_text_and_others_do_not():
  small = dict(filters=4, size=14, tasks=2)
  maml = program_hash.program_text("maml", **small)
  assert maml == program_hash.program_text("maml", **small)
  assert maml != program_hash.program_text("fomaml", **small)
  assert maml != program_hash.program_text("maml", filters=8, size=14, tasks=2)
  assert "loc(" not in maml  # no source locations: moved code hashes alike


def test_every_registered_learner_is_hashed():
  """A learner added to the registry but not here would go unchecked by a
  refactor's hash comparison."""
  assert sorted(program_hash.LEARNERS) == sorted(FACTORIES)
  assert set(program_hash.INNER_LOOP) <= set(program_hash.LEARNERS)
