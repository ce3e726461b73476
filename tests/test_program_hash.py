"""experiments/program_hash.py: the hash tells programs apart, not runs."""

from experiments import program_hash


def test_the_same_learner_lowers_to_the_same_text_and_others_do_not():
  small = dict(filters=4, size=14, tasks=2)
  maml = program_hash.program_text("maml", **small)
  assert maml == program_hash.program_text("maml", **small)
  assert maml != program_hash.program_text("fomaml", **small)
  assert maml != program_hash.program_text("maml", filters=8, size=14, tasks=2)
  assert "loc(" not in maml  # no source locations: moved code hashes alike
