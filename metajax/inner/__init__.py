"""Inner-loop optimizers as optax transformations whose hyperparameters can be
meta-parameters (so the outer gradient reaches them): SGD with learned steps
(Meta-SGD, MAML++'s LSLR), the Meta-Learner LSTM (Ravi & Larochelle 2017) and
the coordinate-wise LSTM optimizer (Andrychowicz et al. 2016)."""

from metajax.inner.learned_sgd import LearnedSgdState
from metajax.inner.learned_sgd import learned_sgd
from metajax.inner.lstm_optimizer import LstmOptimizerState
from metajax.inner.lstm_optimizer import init_lstm_optimizer
from metajax.inner.lstm_optimizer import lstm_optimizer
from metajax.inner.meta_lstm import MetaLstmState
from metajax.inner.meta_lstm import init_meta_lstm
from metajax.inner.meta_lstm import meta_lstm

__all__ = ("LearnedSgdState", "LstmOptimizerState", "MetaLstmState",
           "init_lstm_optimizer", "init_meta_lstm", "learned_sgd",
           "lstm_optimizer", "meta_lstm")
