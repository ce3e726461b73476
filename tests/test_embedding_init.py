"""config.embedding_init: a run's embedding initialized from another run's."""

import os

import jax
import numpy as np
import pytest

from experiments.configs import maml_omniglot, protonet_omniglot, snail_omniglot
from metajax import from_config
from metajax import runs
from metajax import step as step_lib
from metajax.data.episodes import step_rng


@pytest.fixture(scope="module", name="protonet_run")
def fixture_protonet_run(tmp_path_factory, omniglot_data_dir):
  """A finished ProtoNet smoke run with SNAIL's and MANN's Conv4."""
  config = protonet_omniglot.get_config("smoke")
  snail = snail_omniglot.get_config("smoke")
  config.update(
    dict(
      data_dir=omniglot_data_dir,
      eval_episodes=2,
      val_every=0,
      image_size=snail.image_size,
    )
  )
  config.model_kwargs.pooling = snail.model_kwargs.pooling
  config.model_kwargs.norm = snail.model_kwargs.norm
  workdir = str(tmp_path_factory.mktemp("protonet"))
  runs.train_and_evaluate(config, workdir)
  return workdir


def _snail(omniglot_data_dir, source, filters=None, **overrides):
  config = snail_omniglot.get_config("smoke")
  config.update(
    dict(
      data_dir=omniglot_data_dir,
      embedding_init=source,
      num_steps=1,
      outer_lr=1e-7,
      eval_episodes=2,
      **overrides,
    )
  )
  if filters is not None:
    config.model_kwargs.filters = filters
  return config


def test_snail_starts_from_a_protonet_embedding(
  tmp_path, omniglot_data_dir, protonet_run
):
  config = _snail(omniglot_data_dir, protonet_run)
  runs.train_and_evaluate(config, str(tmp_path))
  given = runs.load_run(protonet_run).meta_params["embed"]
  got = runs.load_run(str(tmp_path)).meta_params
  # One Adam step of 1e-7 from the ProtoNet's weights, not a fresh init.
  for a, b in zip(jax.tree.leaves(given), jax.tree.leaves(got["embed"])):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # The rest is initialized as without embedding_init (meta_train's key and
  # first example), and the fresh embedding differs from the given one.
  learner = from_config.build_learner(config)
  source = from_config.build_sources(config)["train"]
  fresh = step_lib.init_train_state(
    learner,
    from_config.build_outer_opt(config),
    step_lib.seed_keys(config.seed)[0],
    source.sample_batch(step_rng(config.seed, 0), 1),
  ).meta_params
  for a, b in zip(
    jax.tree.leaves(fresh["snail"]), jax.tree.leaves(got["snail"])
  ):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert not np.allclose(
    jax.tree.leaves(fresh["embed"])[0], jax.tree.leaves(given)[0], atol=1e-3
  )


def test_embedding_init_errors(tmp_path, omniglot_data_dir, protonet_run):
  # Another network (more filters): refused before anything is written.
  workdir = tmp_path / "refused"
  with pytest.raises(ValueError, match="not this run's network"):
    runs.train_and_evaluate(
      _snail(omniglot_data_dir, protonet_run, filters=6), str(workdir)
    )
  assert not os.path.exists(workdir)
  with pytest.raises(ValueError, match="holds no run"):
    from_config.validate(_snail(omniglot_data_dir, str(tmp_path / "nothing")))
  maml = maml_omniglot.get_config("smoke")
  maml.update(dict(data_dir=omniglot_data_dir))
  maml.embedding_init = protonet_run
  with pytest.raises(ValueError, match="'maml' has none"):
    from_config.validate(maml)


def test_freeze_embedding_keeps_the_given_embedding(
  tmp_path, omniglot_data_dir, protonet_run
):
  from experiments.configs import mann_omniglot  # pylint: disable=g-import-not-at-top

  config = mann_omniglot.get_config("smoke")
  config.update(
    dict(
      data_dir=omniglot_data_dir,
      embedding_init=protonet_run,
      freeze_embedding=True,
      num_steps=2,
      outer_lr=1e-2,
      eval_episodes=2,
      checkpoint_every=1,
    )
  )
  workdir = str(tmp_path / "frozen")
  runs.train_and_evaluate(config, workdir)
  given = runs.load_run(protonet_run).meta_params["embed"]
  got = runs.load_run(workdir).meta_params
  for a, b in zip(
    jax.tree.leaves(given), jax.tree.leaves(got["embed"]), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  # The controller did train: two Adam steps of 1e-2 from its initial values.
  learner = from_config.build_learner(config)
  source = from_config.build_sources(config)["train"]
  fresh = step_lib.init_train_state(
    learner,
    from_config.build_outer_opt(config),
    step_lib.seed_keys(config.seed)[0],
    source.sample_batch(step_rng(config.seed, 0), 1),
  ).meta_params
  moved = [
    np.abs(a - b).max()
    for a, b in zip(
      jax.tree.leaves(fresh["controller"]), jax.tree.leaves(got["controller"])
    )
  ]
  assert min(moved) > 1e-3
  # Resuming the run (its frozen optimizer state restored) trains on and
  # still leaves the embedding alone.
  config.num_steps = 3
  runs.train_and_evaluate(config, workdir)
  for a, b in zip(
    jax.tree.leaves(given),
    jax.tree.leaves(runs.load_run(workdir).meta_params["embed"]),
  ):
    np.testing.assert_array_equal(a, b)
  # Without the freeze the same run changes its embedding.
  config.update(dict(freeze_embedding=False, num_steps=2))
  runs.train_and_evaluate(config, str(tmp_path / "trained"))
  trained = runs.load_run(str(tmp_path / "trained")).meta_params["embed"]
  assert (
    max(
      np.abs(a - b).max()
      for a, b in zip(jax.tree.leaves(given), jax.tree.leaves(trained))
    )
    > 1e-3
  )


def test_freeze_embedding_errors(tmp_path, omniglot_data_dir, protonet_run):
  maml = maml_omniglot.get_config("smoke")
  maml.update(dict(data_dir=omniglot_data_dir, freeze_embedding=True))
  with pytest.raises(ValueError, match="freeze_embedding is for learners"):
    from_config.validate(maml)
  config = _snail(omniglot_data_dir, protonet_run)
  with config.ignore_type():
    config.freeze_embedding = "yes"
  with pytest.raises(ValueError, match="freeze_embedding"):
    from_config.validate(config)
  # A run may not resume with the other setting (its config differs).
  workdir = str(tmp_path / "run")
  runs.train_and_evaluate(
    _snail(omniglot_data_dir, protonet_run, freeze_embedding=True), workdir
  )
  with pytest.raises(ValueError, match="freeze_embedding"):
    runs.train_and_evaluate(
      _snail(omniglot_data_dir, protonet_run, freeze_embedding=False), workdir
    )


@pytest.mark.parametrize("online_loss", [False, True])
def test_frozen_learner_has_no_embedding_gradient(
  omniglot_data_dir, online_loss
):
  from experiments.configs import mann_omniglot  # pylint: disable=g-import-not-at-top

  config = mann_omniglot.get_config("smoke")
  config.data_dir = omniglot_data_dir
  config.learner_kwargs.online_loss = online_loss
  learner = from_config.build_learner(config)
  config.freeze_embedding = True
  frozen = from_config.build_learner(config)
  batch = from_config.build_sources(config)["train"].sample_batch(
    step_rng(config.seed, 0), 2
  )
  params = learner.init(jax.random.key(0), jax.tree.map(lambda a: a[0], batch))
  key = jax.random.key(1)
  # One compiled meta-gradient per learner: its values and XLA's cost count.
  compiled = {
    name: jax.jit(
      jax.grad(lambda p, l=l: step_lib.meta_loss(l, p, batch, key)[0])
    )
    .lower(params)
    .compile()
    for name, l in (("free", learner), ("frozen", frozen))
  }
  free, fixed = compiled["free"](params), compiled["frozen"](params)
  assert max(np.abs(g).max() for g in jax.tree.leaves(free["embed"])) > 0
  for g in jax.tree.leaves(fixed["embed"]):
    np.testing.assert_array_equal(g, 0.0)
  # The rest of the meta-gradient is the unfrozen learner's.
  for a, b in zip(
    jax.tree.leaves(free["controller"]),
    jax.tree.leaves(fixed["controller"]),
    strict=True,
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

  # And the embedding's backward pass is not computed (XLA's count).
  def flops(name):
    analysis = compiled[name].cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return analysis["flops"]

  assert flops("frozen") < 0.6 * flops("free")
