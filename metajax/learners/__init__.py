"""Learner factories: each returns a `metajax.types.Learner`.

One file per method; `embedding.py` and `sequence.py` hold the helpers that
several learners share.
"""

from metajax.learners.baseline import baseline
from metajax.learners.baseline import baseline_pp
from metajax.learners.embedding import freeze_embedding
from metajax.learners.imaml import imaml
from metajax.learners.maml import anil
from metajax.learners.maml import fomaml
from metajax.learners.maml import head_only
from metajax.learners.maml import maml
from metajax.learners.maml import meta_sgd
from metajax.learners.mann import mann
from metajax.learners.matching import matching_net
from metajax.learners.meta_curvature import meta_curvature
from metajax.learners.meta_lstm import meta_learner_lstm
from metajax.learners.metaoptnet import metaoptnet
from metajax.learners.protomaml import protomaml
from metajax.learners.protonet import protonet
from metajax.learners.r2d2 import lrd2
from metajax.learners.r2d2 import r2d2
from metajax.learners.reptile import carry_outer_opt
from metajax.learners.reptile import reptile
from metajax.learners.snail import snail

# Config names (`config.learner`) -> factories: the one place a learner is
# named by a string.
FACTORIES = {
  f.__name__: f
  for f in (
    anil,
    baseline,
    baseline_pp,
    fomaml,
    imaml,
    lrd2,
    maml,
    mann,
    matching_net,
    meta_curvature,
    meta_learner_lstm,
    meta_sgd,
    metaoptnet,
    protomaml,
    protonet,
    r2d2,
    reptile,
    snail,
  )
}

__all__ = (
  "FACTORIES",
  "anil",
  "baseline",
  "baseline_pp",
  "carry_outer_opt",
  "fomaml",
  "freeze_embedding",
  "head_only",
  "imaml",
  "lrd2",
  "maml",
  "mann",
  "matching_net",
  "meta_curvature",
  "meta_learner_lstm",
  "meta_sgd",
  "metaoptnet",
  "protomaml",
  "protonet",
  "r2d2",
  "reptile",
  "snail",
)
