"""Meta-SGD on the sinusoid family (Li et al. 2017, Section 4.1).

Run:
  python -m experiments.train --config=experiments/configs/meta_sgd_sinusoid.py:k10 \
      --workdir=/tmp/meta_sgd_sinusoid

MAML's sinusoid setting with a learned per-coordinate inner step (initialized
at inner_lr); train K = test K, 1 inner step, 600 test tasks. Variants: k5,
k10 (default), k20, smoke.
"""

from experiments.configs import maml_sinusoid

PAPER = {5: "0.90 +- 0.16", 10: "0.53 +- 0.09", 20: "0.31 +- 0.05"}


def get_config(variant: str = ""):
  c = maml_sinusoid.get_config("k10" if variant == "" else variant)
  c.learner = "meta_sgd"
  if variant != "smoke":
    c.paper_result = f"Meta-SGD paper, {c.shots}-shot: {PAPER[c.shots]}"
  return c
