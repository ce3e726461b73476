"""Baseline and Baseline++ (Chen et al. 2019): pre-train, then fit a new head.

Meta-training is ordinary supervised learning: the embedding and a classifier
over ALL meta-train classes are trained on mini-batches (`task_loss` on the
query field of `metajax.data.episodes.ClassBatchSampler`'s batches, whose
labels are global class ids). At test time the embedding is frozen and a new
`ways`-way head is fit to the support set's features with an optax optimizer
for a fixed number of full-batch steps (`metajax.inner.optimize`, a
`lax.scan` that the trainer and `evaluate` vmap over tasks).

Heads: "linear" (Baseline: W f + b) or "cosine" (Baseline++: s * cos(f, w_c),
with the scale s learned in pre-training and kept at test time). With
`normalize_features=True` and the linear head the test-time fit is a
logistic regression on L2-normalized features (Tian et al. 2020's RFS
evaluation, here with an optax solver and weight decay instead of L-BFGS).
With `transductive_steps > 0`, `predict` goes on to fine-tune the whole
network, embedding included, on the support cross-entropy plus the mean
entropy of the unlabeled queries' predictions (Dhillon et al. 2020's
transductive fine-tuning), starting from the head `adapt` fit; `predict` is
the only function that sees the queries, so that is where it happens.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metajax import checks
from metajax import losses
from metajax.inner.loop import optimize
from metajax.learners.embedding import l2_normalize, to_float
from metajax.learners.protonet import class_means
from metajax.types import Episode, Learner

__all__ = (
  "baseline",
  "baseline_pp",
  "entropy",
  "fit_head",
  "head_logits",
  "init_head",
  "support_head",
  "transductive_finetune",
)

CLASSIFIERS = ("linear", "cosine")
HEAD_INITS = ("zeros", "prototypes", "random")


def init_head(
  key, features: int, classes: int, classifier: str, scale: Any = 10.0
):
  """A fresh head: {"kernel" [D, C], "bias" [C]} or {"kernel", "scale"}."""
  kernel = nn.initializers.lecun_normal()(key, (features, classes), jnp.float32)
  if classifier == "linear":
    return {"kernel": kernel, "bias": jnp.zeros((classes,), jnp.float32)}
  return {"kernel": kernel, "scale": jnp.asarray(scale, jnp.float32)}


def support_head(
  key,
  features,
  labels,
  ways: int,
  classifier: str,
  init: str,
  scale: Any = 10.0,
):
  """The starting point of the test-time head fit on the support set.

  `features` [n, D] and `labels` [n] are the support set's. "zeros": a zero
  linear head. "prototypes": the kernel's columns are the classes' mean
  support features (weight imprinting; for the cosine head this starts at
  the nearest-class-mean classifier). "random": `init_head`'s Lecun-normal
  kernel. A fit moves the kernel only within the span of the support
  features (the gradient of a head's loss lies there), so what a random
  start puts outside that span stays (up to weight decay) and adds noise to
  every query's logits; "zeros" and "prototypes" put nothing there.
  """
  if init == "random":
    return init_head(key, features.shape[-1], ways, classifier, scale)
  if init == "zeros":
    kernel = jnp.zeros((features.shape[-1], ways), jnp.float32)
  else:
    kernel = class_means(features, labels, ways).T.astype(jnp.float32)
  if classifier == "linear":
    return {"kernel": kernel, "bias": jnp.zeros((ways,), jnp.float32)}
  return {"kernel": kernel, "scale": jnp.asarray(scale, jnp.float32)}


def head_logits(head, features, classifier: str):
  """Logits [n, C] of `features` [n, D] under a linear or cosine head."""
  if classifier == "linear":
    return features @ head["kernel"] + head["bias"]
  return head["scale"] * (
    l2_normalize(features) @ l2_normalize(head["kernel"], axis=0)
  )


def fit_head(
  head,
  features,
  labels,
  *,
  classifier: str,
  opt: optax.GradientTransformation,
  steps: int,
):
  """`steps` full-batch updates of `opt` on the head's cross-entropy
  (`metajax.inner.optimize`).

  The cosine head's scale is not trained (only its kernel is).
  """
  trainable = {k: v for k, v in head.items() if k != "scale"}
  fixed = {k: v for k, v in head.items() if k == "scale"}

  def loss(params, _):
    return losses.cross_entropy(
      head_logits({**params, **fixed}, features, classifier), labels
    )

  trainable = optimize(opt, loss, trainable, steps=steps).params
  return {**trainable, **fixed}


def entropy(logits):
  """Mean Shannon entropy (nats) of the rows' softmax."""
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))


def transductive_finetune(
  embed_features,
  embed,
  head,
  support,
  query_x,
  *,
  classifier: str,
  opt: optax.GradientTransformation,
  steps: int,
  entropy_weight: float,
):
  """(embed, head) fine-tuned on the support cross-entropy plus the mean
  entropy of the queries' predictions (Dhillon et al. 2020).

  `embed_features(embed, x)` gives the features; the cosine head's scale
  stays fixed, and no meta-gradient flows into the starting embedding.
  """
  support_x, support_y = support
  fixed = {k: v for k, v in head.items() if k == "scale"}
  params = {
    "embed": jax.lax.stop_gradient(embed),
    "head": {k: v for k, v in head.items() if k != "scale"},
  }

  def objective(p, _):
    h = {**p["head"], **fixed}
    support_logits = head_logits(
      h, embed_features(p["embed"], support_x), classifier
    )
    query_logits = head_logits(
      h, embed_features(p["embed"], query_x), classifier
    )
    return losses.cross_entropy(
      support_logits, support_y
    ) + entropy_weight * entropy(query_logits)

  params = optimize(opt, objective, params, steps=steps).params
  return params["embed"], {**params["head"], **fixed}


def baseline(
  embedding: nn.Module,
  *,
  num_classes: int,
  ways: int,
  classifier: str = "linear",
  finetune_steps: int = 100,
  finetune_lr: float = 1e-2,
  finetune_weight_decay: float = 1e-3,
  finetune_opt: Optional[optax.GradientTransformation] = None,
  normalize_features: bool = False,
  scale: float = 10.0,
  head_init: Optional[str] = None,
  transductive_steps: int = 0,
  transductive_lr: float = 5e-5,
  transductive_opt: Optional[optax.GradientTransformation] = None,
  entropy_weight: float = 1.0,
) -> Learner:
  """The fine-tuning baseline of Chen et al. 2019.

  meta_params = {"embed": embedding params, "head": the pre-training head
  over `num_classes` classes}. `task_loss` (pre-training) is the
  cross-entropy of the head on the episode's query field, a mini-batch with
  global labels; `adapt` fits a fresh `ways`-way head (started as
  `head_init` says) on the frozen support features; `predict` applies it to the query
  features. The task state is {"head": ...} (and "support", the support set,
  when transductive). The learner trains on class batches
  (`train_on="class_batches"`: `ClassBatchSampler`'s mini-batches).

  Args:
    embedding: flax module mapping float inputs [B, ...] to [B, D].
    num_classes: classes of the pre-training head (all meta-train classes).
    ways: classes per test episode.
    classifier: "linear" (Baseline) or "cosine" (Baseline++).
    finetune_steps: full-batch steps of the test-time head fit (>= 1).
    finetune_lr: the head fit's Adam step.
    finetune_weight_decay: weight decay added to the head fit's gradient.
    finetune_opt: an optimizer for the head fit instead of that Adam.
    normalize_features: L2-normalize the features before a linear head (RFS
      logistic regression); the cosine head normalizes anyway.
    scale: initial value of Baseline++'s learned scale.
    head_init: the test-time head's start (`support_head`): "zeros" (the
      default of the linear head), "prototypes" (the cosine head's default)
      or "random" (Lecun-normal; the default before issue 21, which cost the
      linear head 6 points at Omniglot 5-way 1-shot: docs/results.md). The
      paper starts from PyTorch's random initialization.
    transductive_steps: full-batch steps of transductive fine-tuning of the
      whole network in `predict` (0: off).
    transductive_lr: its Adam step (the paper's 5e-5).
    transductive_opt: an optimizer for it instead of that Adam.
    entropy_weight: weight of the query entropy in that objective.

  Returns:
    A `Learner` with a `task_loss` for pre-training.

  References:
    Chen, Liu, Kira, Wang & Huang, "A Closer Look at Few-shot
    Classification", ICLR 2019.
    Tian, Wang, Krishnan, Tenenbaum & Isola, "Rethinking Few-Shot Image
    Classification: a Good Embedding Is All You Need?", ECCV 2020.
    Dhillon, Chaudhari, Ravichandran & Soatto, "A Baseline for Few-Shot
    Image Classification", ICLR 2020.
  """
  num_classes = checks.integer("num_classes", num_classes, minimum=2)
  ways = checks.integer("ways", ways, minimum=2)
  classifier = checks.one_of("classifier", classifier, CLASSIFIERS)
  finetune_steps = checks.integer("finetune_steps", finetune_steps, minimum=1)
  normalize_features = checks.boolean("normalize_features", normalize_features)
  scale = checks.positive("scale", scale)
  loss_fn, metric_fn, metric_name = losses.for_task("classification")

  def embed_features(embed, x):
    f = embedding.apply({"params": embed}, to_float(x))
    return l2_normalize(f) if normalize_features else f

  def init(key, episode: Episode):
    embed_key, head_key = jax.random.split(key)
    x = to_float(
      episode.query_x if episode.query_x.shape[0] else episode.support_x
    )
    embed = embedding.init(embed_key, x).get("params", {})
    dim = jax.eval_shape(embedding.apply, {"params": embed}, x).shape[-1]
    return {
      "embed": embed,
      "head": init_head(head_key, dim, num_classes, classifier, scale),
    }

  def task_loss(meta_params, episode: Episode, key):
    del key
    feats = embed_features(meta_params["embed"], episode.query_x)
    logits = head_logits(meta_params["head"], feats, classifier)
    return loss_fn(logits, episode.query_y), metric_fn(logits, episode.query_y)

  adapt, predict = _test_time(
    embed_features,
    ways=ways,
    classifier=classifier,
    scale=scale,
    head_init=head_init,
    finetune_steps=finetune_steps,
    finetune_opt=finetune_opt,
    finetune_lr=finetune_lr,
    finetune_weight_decay=finetune_weight_decay,
    transductive_steps=transductive_steps,
    transductive_opt=transductive_opt,
    transductive_lr=transductive_lr,
    entropy_weight=entropy_weight,
  )
  return Learner(
    init=init,
    adapt=adapt,
    predict=predict,
    loss=loss_fn,
    metric=metric_fn,
    metric_name=metric_name,
    task_loss=task_loss,
    train_on="class_batches",
  )


def _head_init(head_init: Optional[str], classifier: str) -> str:
  """`baseline`'s `head_init` checked, None resolved to the classifier's
  default ("zeros" for the linear head, "prototypes" for the cosine one)."""
  if head_init is None:
    head_init = "zeros" if classifier == "linear" else "prototypes"
  head_init = checks.one_of("head_init", head_init, HEAD_INITS)
  if head_init == "zeros" and classifier == "cosine":
    raise ValueError(
      "head_init='zeros' has no direction for the cosine "
      "head; use 'prototypes' or 'random'."
    )
  return head_init


def _test_time(
  embed_features,
  *,
  ways: int,
  classifier: str,
  scale: float,
  head_init: Optional[str],
  finetune_steps: int,
  finetune_opt: Optional[optax.GradientTransformation],
  finetune_lr: float,
  finetune_weight_decay: float,
  transductive_steps: int,
  transductive_opt: Optional[optax.GradientTransformation],
  transductive_lr: float,
  entropy_weight: float,
):
  """`baseline`'s (adapt, predict), its test-time options checked here
  (`ways`, `classifier`, `scale` and `finetune_steps` are checked already).

  `embed_features(embed, x)` gives the features, frozen for the head fit.
  """
  head_init = _head_init(head_init, classifier)
  transductive_steps = checks.integer(
    "transductive_steps", transductive_steps, minimum=0
  )
  entropy_weight = checks.number("entropy_weight", entropy_weight, low=0)
  if transductive_opt is None:
    transductive_opt = optax.adam(
      checks.positive("transductive_lr", transductive_lr)
    )
  if finetune_opt is None:
    finetune_opt = optax.chain(
      optax.add_decayed_weights(
        checks.number("finetune_weight_decay", finetune_weight_decay, low=0)
      ),
      optax.adam(checks.positive("finetune_lr", finetune_lr)),
    )

  def adapt(meta_params, support, key):
    support_x, support_y = support
    feats = jax.lax.stop_gradient(
      embed_features(meta_params["embed"], support_x)
    )
    head = support_head(
      key,
      feats,
      support_y,
      ways,
      classifier,
      head_init,
      jax.lax.stop_gradient(meta_params["head"].get("scale", scale)),
    )
    head = fit_head(
      head,
      feats,
      support_y,
      classifier=classifier,
      opt=finetune_opt,
      steps=finetune_steps,
    )
    if transductive_steps:
      return {"head": head, "support": (support_x, support_y)}
    return {"head": head}

  def predict(meta_params, state, query_x):
    embed, head = meta_params["embed"], state["head"]
    if transductive_steps:
      embed, head = transductive_finetune(
        embed_features,
        embed,
        head,
        state["support"],
        query_x,
        classifier=classifier,
        opt=transductive_opt,
        steps=transductive_steps,
        entropy_weight=entropy_weight,
      )
    return head_logits(head, embed_features(embed, query_x), classifier)

  return adapt, predict


def baseline_pp(
  embedding: nn.Module, *, num_classes: int, ways: int, **kwargs
) -> Learner:
  """Baseline++: `baseline` with the cosine classifier and learned scale."""
  return baseline(
    embedding, num_classes=num_classes, ways=ways, classifier="cosine", **kwargs
  )
