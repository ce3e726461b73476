"""Reptile on Omniglot N-way K-shot (Nichol et al. 2018).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/reptile_omniglot.py:5w1s --workdir=/tmp/reptile

The settings of the paper's code (openai/supervised-reptile, README) where
they fit this design. Meta-training episodes have more shots than the test
episodes ("train-shots": `shots` here, and `test_shots` is K): 15 for 5-way
(the transductive 5-way 1-shot command; batch statistics make every metajax
conv4 transductive), 9 / 12 for 20-way 1 / 5-shot. Inner Adam (beta1 = 0),
outer SGD with step 1 decayed linearly to 0, and the inner Adam's
statistics carried from task to task (`carry_inner_state`: the paper's code
never resets its Adam's slots). Where the paper takes
mini-batches of the episode in each inner step, metajax takes the whole
support set, so one inner step here sees what the paper's steps see in one
pass: 3 steps for 5-way (the paper: 3 x 25 of 75 images), 5 for 20-way
(the paper: 12 x 15 of 180). Test-time steps: 5 for 5-way (paper: 5 of 25),
50 for 20-way (paper: 97 of 10).

Results on the held-out characters, 600 test episodes (README table; 2k
steps for 5-way, 1.5k for 20-way, 2 CPU cores): 5w1s 64.28 +- 0.72, 5w5s
85.03 +- 0.48, 20w1s 30.38 +- 0.44, 20w5s 55.09 +- 0.47 (%, 10 test steps);
with the Adam reset per task (`--config.carry_inner_state=False`) the same
budgets gave 58.49, 80.09, 23.03 and 42.61.

Variants as maml_omniglot: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke. The paper
ran 100k (5-way) and 200k (20-way) outer steps; `num_steps` here is what the
README's rows ran on 2 CPU cores.
"""

from experiments.configs import maml_omniglot

# (ways, K) -> train shots, inner steps, test inner steps, inner lr,
# meta-batch, outer steps.
_PAPER = {
    (5, 1): (15, 3, 5, 1e-3, 10, 100_000),
    (5, 5): (15, 3, 5, 1e-3, 10, 100_000),
    (20, 1): (9, 5, 50, 4.6e-4, 3, 200_000),
    (20, 5): (12, 5, 50, 4.6e-4, 3, 200_000),
}

# The Reptile paper's Table 1, transductive Omniglot rows.
_PAPER_RESULT = {(5, 1): "97.68 +- 0.04", (5, 5): "99.48 +- 0.06",
                 (20, 1): "89.43 +- 0.14", (20, 5): "97.12 +- 0.32"}


def get_config(variant: str = ""):
  c = maml_omniglot.get_config(variant)
  c.learner = "reptile"
  c.outer_opt = "sgd"
  c.outer_lr = 1.0
  c.outer_lr_schedule = "linear_decay"
  # The paper's TensorFlow Adam keeps its statistics from task to task.
  c.carry_inner_state = True
  if variant == "smoke":
    return c
  shots, steps, test_steps, lr, batch, num_steps = _PAPER[(c.ways, c.shots)]
  c.paper_result = (f"Reptile paper, full Omniglot {c.ways}-way {c.shots}-shot "
                    f"(transductive): {_PAPER_RESULT[(c.ways, c.shots)]}")
  c.test_shots = c.shots
  c.shots = shots
  c.queries = 5  # training queries only give the logged accuracy
  c.test_queries = 15 if c.ways == 5 else 5
  c.inner_steps = steps
  c.test_inner_steps = test_steps
  c.inner_lr = lr
  c.meta_batch_size = batch
  c.num_steps = num_steps
  return c
