"""An independent PyTorch Reptile, to check metajax's against (not a test).

Written from the algorithm of the paper's code (openai/supervised-reptile),
not from metajax, on the same episodes (metajax's samplers and seeded split
of the small Omniglot zips): docs/results.md's Reptile section compares its
validation accuracy with metajax's at equal steps. Needs PyTorch, which
metajax does not depend on (`pip install torch`).

  METAJAX_DATA_DIR=../shared/data/omniglot python -m \
      experiments.reptile_torch_reference --num_steps=2000

The paper's transductive 5-way 1-shot Omniglot command (--shots 1
--inner-batch 25 --inner-iters 3 --meta-step 1 --meta-batch 10 --eval-batch
25 --eval-iters 5 --learning-rate 0.001 --meta-step-final 0 --train-shots
15), as that code runs it:
  * conv4: 4 x (conv 3x3, 64, stride 2, 'same'; batch norm in training mode;
    relu), a dense head; Glorot init, zero biases.
  * one Adam (beta1 = 0) for the whole run; after each task only the weights
    are put back, so its moments and step count carry from task to task (the
    tasks of a meta-batch run one after another through it).
  * per task: 15 shots x 5 classes, 3 mini-batches of 25 without replacement.
  * outer: theta += eps * (mean(phi) - theta), eps decayed linearly 1 -> 0.
  * evaluation restores the weights and the Adam state after each episode: 5
    Adam steps on the 5 support images (a batch of 25 holds each 5 times: the
    same gradient), then all queries in one batch (transductive).
"""

import copy
import json
import time

from absl import app
from absl import flags
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from metajax.data import omniglot
from metajax.data.episodes import EpisodeSampler


class Net(nn.Module):
  def __init__(self, ways):
    super().__init__()
    self.convs = nn.ModuleList(
      [
        nn.Conv2d(1 if i == 0 else 64, 64, 3, stride=2, padding=1)
        for i in range(4)
      ]
    )
    self.norms = nn.ModuleList(
      [
        nn.BatchNorm2d(64, eps=1e-3, track_running_stats=False)
        for _ in range(4)
      ]
    )
    self.head = nn.Linear(64 * 2 * 2, ways)
    for m in list(self.convs) + [self.head]:
      nn.init.xavier_uniform_(m.weight)
      nn.init.zeros_(m.bias)

  def forward(self, x):
    for conv, norm in zip(self.convs, self.norms):
      x = F.relu(norm(conv(x)))
    return self.head(x.flatten(1))


def to_torch(x):  # uint8 NHWC -> float NCHW in [0, 1]
  return (
    torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
    / 255.0
  )


def train_task(net, opt, x, y, inner_batch, inner_iters, rng):
  order = rng.permutation(len(y))
  batches, i = [], 0
  while len(batches) < inner_iters:  # one pass (or more), without replacement
    if i + inner_batch > len(order):
      order, i = rng.permutation(len(y)), 0
    batches.append(order[i : i + inner_batch])
    i += inner_batch
  for b in batches:
    opt.zero_grad()
    F.cross_entropy(net(x[b]), y[b]).backward()
    opt.step()


def evaluate(net, opt, sampler, episodes, seed, steps):
  weights = copy.deepcopy(net.state_dict())
  opt_state = copy.deepcopy(opt.state_dict())
  accs = []
  for e in range(episodes):
    ep = sampler.sample(np.random.default_rng([seed, e]))
    sx, sy = to_torch(ep.support_x), torch.from_numpy(ep.support_y).long()
    for _ in range(steps):
      opt.zero_grad()
      F.cross_entropy(net(sx), sy).backward()
      opt.step()
    with torch.no_grad():
      pred = net(to_torch(ep.query_x)).argmax(-1).numpy()
    accs.append(float((pred == ep.query_y).mean()))
    net.load_state_dict(weights)
    opt.load_state_dict(opt_state)
  accs = np.array(accs)
  return accs.mean(), 1.96 * accs.std() / np.sqrt(len(accs))


_STEPS = flags.DEFINE_integer("num_steps", 2000, "Outer steps.")
_VAL_EVERY = flags.DEFINE_integer("val_every", 500, "Validate every N steps.")
_VAL_EPISODES = flags.DEFINE_integer(
  "val_episodes", 100, "Validation episodes."
)
_TEST_EPISODES = flags.DEFINE_integer("test_episodes", 600, "Test episodes.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")
_OUT = flags.DEFINE_string("out", "", "Write the figures to this JSON file.")


def main(argv):
  del argv
  a = flags.FLAGS
  torch.manual_seed(a.seed)
  torch.set_num_threads(2)
  ways, train_shots, inner_batch, inner_iters, meta_batch = 5, 15, 25, 3, 10
  lr, meta_step = 1e-3, 1.0
  splits = omniglot.load(split="seeded", image_size=28)
  train = EpisodeSampler(
    splits["train"], ways=ways, shots=train_shots, queries=1
  )
  val = EpisodeSampler(splits["val"], ways=ways, shots=1, queries=15)
  test = EpisodeSampler(splits["test"], ways=ways, shots=1, queries=15)
  net = Net(ways)
  opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.0, 0.999), eps=1e-8)
  rng = np.random.default_rng(a.seed)
  log = {"val": {}}
  start = time.time()
  for step in range(a.num_steps):
    eps = meta_step * (1 - step / a.num_steps)
    old = [q.detach().clone() for q in net.parameters()]
    total = [torch.zeros_like(q) for q in old]
    for _ in range(meta_batch):
      ep = train.sample(rng)
      x, y = to_torch(ep.support_x), torch.from_numpy(ep.support_y).long()
      train_task(net, opt, x, y, inner_batch, inner_iters, rng)
      with torch.no_grad():
        for t, q, o in zip(total, net.parameters(), old):
          t += q
          q.copy_(o)
    with torch.no_grad():
      for q, o, t in zip(net.parameters(), old, total):
        q.copy_(o + eps * (t / meta_batch - o))
    if a.val_every and (step + 1) % a.val_every == 0:
      m, c = evaluate(net, opt, val, a.val_episodes, 1, 5)
      log["val"][step + 1] = [m, c]
      print(
        f"step {step + 1}: val {m:.4f} +- {c:.4f} ({time.time() - start:.0f}s)",
        flush=True,
      )
  log["train_s"] = time.time() - start
  m, c = evaluate(net, opt, test, a.test_episodes, 2, 5)
  log["test"] = [m, c]
  print(
    f"test 5-way 1-shot: {m:.4f} +- {c:.4f} over {a.test_episodes}", flush=True
  )
  m, c = evaluate(
    net,
    opt,
    EpisodeSampler(splits["test"], ways=ways, shots=5, queries=15),
    a.test_episodes,
    3,
    5,
  )
  log["test_5shot"] = [m, c]
  print(f"test 5-way 5-shot: {m:.4f} +- {c:.4f}", flush=True)
  if a.out:
    with open(a.out, "w") as f:
      json.dump(log, f, indent=1)


if __name__ == "__main__":
  app.run(main)
