"""MINE, the mutual information neural estimator (Belghazi et al., ICML 2018), as UAE (Hsu et al.
2021, ``uae.py``) uses it between a sentence's embeddings E and their perturbation E + δ.

Donsker–Varadhan lower bound, with a statistics network T_Θ and shuffled pairs as the product
of the marginals:

    I_Θ(X; Y) = mean_s T_Θ(x_s, y_s) − log mean_s exp T_Θ(x_s, y_π(s))          π a random permutation

Θ is trained by gradient ascent on I_Θ (Adam, the biased gradient of the plain DV bound, as the
UAE reference does: no moving-average correction of the denominator).

**What the samples are.** The reference (``Unsupversied/unsupervised_attack.py``, mode
``conv``; ``simCLR/contrast_attack.py``) attacks one image at a time and builds the MINE batch
from *feature channels*: ``x_batch = transpose(conv1(x), [3,1,2,0])`` turns the C channels of the
model's first convolution into C samples, each an H×W map, and pairs channel c of x with channel
c of x + δ (joint) or with a shuffled channel of x + δ (marginal). The MI is therefore estimated
per example, over that example's channels. Here the first layer is the embedding and its
channels are the D embedding dimensions: for each example b, sample c ∈ 1..D is the sequence
x_{b,c} = (E[b, t, c])_{t ∈ real tokens} and y_{b,c} the same channel of E + δ. The marginal
pairs x_{b,c} with y_{b,π_b(c)}, π_b a permutation of that example's channels. So I_b is one
number per example (D samples), as the reference's one number per image, and the attack's
constraint and multiplier stay per example.

**The statistics network.** The reference's T (``MiNetwork``) encodes x and y separately
(conv 2×2, 16 filters → flatten → dense 512 → dense 10, all linear), adds the codes, applies a
ReLU and a bias-free linear output. A flatten needs one fixed size; sentences vary in length. So
here the two linear encoders act on a sliding window of two tokens (the 1-d analogue of the 2×2
convolution), their sum goes through the ReLU at every token, and the bias-free output reads the
mean over the sentence's real tokens:

    T_Θ(x, y) = wᵀ · mean_t ReLU(A [x_t, x_{t+1}] + B [y_t, y_{t+1}] + b)        (x_{L} = y_{L} = 0)

Inputs are divided by the standard deviation of the clean embeddings of the example (a constant:
GloVe's coordinates are ~1, MiniLM's ~0.05), so one network and learning rate serve every family.
Initialisation and shuffles draw from seeded generators only (never global random state).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

WINDOW = 2  # tokens per window: the 1-d analogue of the reference's 2×2 convolution


class StatisticsNetwork(nn.Module):
    """T_Θ(x, y) for sample pairs x, y <float>[N,L] with a token mask <bool>[N,L] -> <float>[N].

    One 1-d convolution over the two input channels (x, y) with a window of two tokens is the
    sum A[x_t, x_{t+1}] + B[y_t, y_{t+1}] + b of the module docstring."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.conv = nn.Conv1d(2, hidden, WINDOW)  # [A | B] and b
        self.out = nn.Linear(hidden, 1, bias=False)  # w

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.dtype)
        xy = torch.stack([x * m, y * m], dim=1)  # (N, 2, L)
        h = F.relu(self.conv(F.pad(xy, (0, WINDOW - 1))))  # (N, H, L): window t reads tokens t, t+1
        pooled = (h * m.unsqueeze(1)).sum(-1) / m.sum(-1, keepdim=True).clamp(min=1.0)  # (N, H)
        return self.out(pooled).squeeze(-1)  # (N,)


def channel_samples(embeds: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """<float>[B,D,T]: each example's D embedding channels as D samples over its tokens, divided
    by ``scale`` <float>[B] (zero on padding and special tokens)."""
    x = embeds.float() * mask.unsqueeze(-1).float()
    return x.transpose(1, 2) / scale.view(-1, 1, 1)


def clean_scale(embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """<float>[B] the standard deviation of each example's clean embedding coordinates (detached)."""
    m = mask.unsqueeze(-1).float()
    n = (m.sum((1, 2)) * embeds.shape[-1]).clamp(min=1.0)
    e = embeds.detach().float() * m
    mean = e.sum((1, 2)) / n
    var = ((e - mean.view(-1, 1, 1)) ** 2 * m).sum((1, 2)) / n
    return var.sqrt().clamp(min=1e-6)


def dv_bound(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """<float>[B] mean_s T(joint) − log mean_s exp T(marginal), over the S samples of each row."""
    S = t_joint.shape[1]
    return t_joint.mean(1) - (torch.logsumexp(t_marginal, dim=1) - math.log(S))


def shuffled(y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """y <float>[B,S,L] with its S samples permuted independently in each row (the marginal)."""
    B, S = y.shape[:2]
    perm = torch.rand(B, S, generator=generator).argsort(dim=1).to(y.device)  # (B, S)
    return y.gather(1, perm.unsqueeze(-1).expand_as(y))


class MINE:
    """A statistics network and its own Adam optimiser. ``estimate`` gives I_Θ per example
    (differentiable in y, so δ can follow it); ``train`` takes ascent steps on Θ only, with
    ``autograd.grad`` on Θ (a classifier's gradients are never touched)."""

    def __init__(self, hidden: int = 32, lr: float = 1e-3, seed: int = 0, device="cpu"):
        with torch.random.fork_rng(devices=[]):  # the init draws from a seed, not the caller's global state
            torch.manual_seed(seed)
            self.net = StatisticsNetwork(hidden).to(device)
        self.lr = lr
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)

    def estimate(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None) -> torch.Tensor:
        """<float>[B] I_Θ(x_b; y_b) over the S samples of each example; x, y <float>[B,S,L] and the
        token mask <bool>[B,L] shared by the samples of one example."""
        B, S, L = x.shape
        m = mask.unsqueeze(1).expand(B, S, L).reshape(B * S, L)
        xs = x.reshape(B * S, L)
        t_joint = self.net(xs, y.reshape(B * S, L), m).view(B, S)
        t_marg = self.net(xs, shuffled(y, generator).reshape(B * S, L), m).view(B, S)
        return dv_bound(t_joint, t_marg)

    def train(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, steps: int,
              generator: torch.Generator | None, max_examples: int | None = None) -> float:
        """``steps`` Adam steps maximising the mean I_Θ (x, y detached), each on a random minibatch
        of at most ``max_examples`` examples (all of them when None); returns the last estimate
        before its step."""
        x, y = x.detach(), y.detach()
        params = list(self.net.parameters())
        value = float("nan")
        B = x.shape[0]
        with torch.enable_grad():
            for _ in range(steps):
                if max_examples is not None and B > max_examples:
                    rows = torch.randperm(B, generator=generator)[:max_examples].to(x.device)
                    xb, yb, mb = x[rows], y[rows], mask[rows]
                else:
                    xb, yb, mb = x, y, mask
                mi = self.estimate(xb, yb, mb, generator).mean()
                grads = torch.autograd.grad(-mi, params)
                for p, g in zip(params, grads):
                    p.grad = g
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                value = float(mi.detach())
        return value

    # -- resume -------------------------------------------------------------------------------
    def state_dict(self, prefix: str = "mine.") -> dict[str, torch.Tensor]:
        """The network's weights and the Adam moments (once a step was taken), as flat tensors."""
        out = {f"{prefix}net.{k}": v for k, v in self.net.state_dict().items()}
        for i, p in enumerate(self.net.parameters()):
            for k, v in self.optimizer.state.get(p, {}).items():
                out[f"{prefix}adam.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor], prefix: str = "mine.") -> None:
        net = {k[len(prefix) + 4:]: v for k, v in state.items() if k.startswith(prefix + "net.")}
        if net:
            self.net.load_state_dict(net)
        params = list(self.net.parameters())
        for k, v in state.items():
            if k.startswith(prefix + "adam."):
                i, name = k[len(prefix) + 5:].split(".", 1)
                self.optimizer.state[params[int(i)]][name] = v.clone()
