"""The inner loop (`optimize`: steps of an optax transformation under `scan`,
which every learner that optimizes per task runs) and inner optimizers as
optax transformations whose hyperparameters can be meta-parameters (so the
outer gradient reaches them): SGD with learned steps (Meta-SGD, MAML++'s
LSLR), Meta-Curvature's Kronecker-factored gradient transform (Park &
Oliva 2019), the Meta-Learner LSTM (Ravi & Larochelle 2017), the
coordinate-wise LSTM optimizer (Andrychowicz et al. 2016), and Reptile's
Adam whose statistics carry across tasks."""

from metajax.inner.carried_adam import CarriedAdamState
from metajax.inner.carried_adam import carried_adam
from metajax.inner.learned_sgd import LearnedSgdState
from metajax.inner.learned_sgd import learned_sgd
from metajax.inner.loop import InnerResult
from metajax.inner.loop import optimize
from metajax.inner.lstm_optimizer import LstmOptimizerState
from metajax.inner.lstm_optimizer import init_lstm_optimizer
from metajax.inner.lstm_optimizer import lstm_optimizer
from metajax.inner.meta_curvature import apply_meta_curvature
from metajax.inner.meta_curvature import init_meta_curvature
from metajax.inner.meta_curvature import meta_curvature
from metajax.inner.meta_lstm import MetaLstmState
from metajax.inner.meta_lstm import init_meta_lstm
from metajax.inner.meta_lstm import meta_lstm

__all__ = (
  "CarriedAdamState",
  "InnerResult",
  "LearnedSgdState",
  "LstmOptimizerState",
  "MetaLstmState",
  "carried_adam",
  "apply_meta_curvature",
  "init_lstm_optimizer",
  "init_meta_curvature",
  "init_meta_lstm",
  "learned_sgd",
  "lstm_optimizer",
  "meta_curvature",
  "meta_lstm",
  "optimize",
)
