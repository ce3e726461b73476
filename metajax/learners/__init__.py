"""Learner factories: each returns a `metajax.types.Learner`."""

from metajax.learners.baseline import baseline
from metajax.learners.baseline import baseline_pp
from metajax.learners.maml import anil
from metajax.learners.maml import head_only
from metajax.learners.maml import maml
from metajax.learners.maml import meta_sgd
from metajax.learners.mann import mann
from metajax.learners.matching import matching_net
from metajax.learners.protonet import protonet
from metajax.learners.reptile import carry_outer_opt, reptile
from metajax.learners.snail import snail

__all__ = ("anil", "baseline", "baseline_pp", "carry_outer_opt", "head_only",
           "maml", "mann",
           "matching_net", "meta_sgd", "protonet", "reptile", "snail")
