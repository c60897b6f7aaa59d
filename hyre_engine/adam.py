"""Adam for training the ensemble, without torch.optim.

The first torch.optim optimizer a process makes imports torch._dynamo (its
``_disable_dynamo`` decorator does, lazily): 2.2 s of a first launch's ~6 s build of the
demo on a 2-core CPU, spent before the first step. This is the same update as
torch.optim.Adam's single-tensor path (the one it takes on a CPU; L2 weight decay added to
the gradient, bias-corrected moments), in the same order of operations, so a CPU run gives
the same parameters bit for bit (tests/test_adam.py); on CUDA torch.optim would use its
foreach kernels, which agree to rounding.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class Adam:
    """``step()`` and ``zero_grad()`` over ``params``, as torch.optim.Adam(params, lr, betas, eps, weight_decay)."""

    def __init__(self, params: Iterable[torch.Tensor], *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got no parameters to train")
        if not lr > 0 or not eps >= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam needs lr > 0, eps >= 0, weight_decay >= 0 and betas in [0, 1), "
                             f"got lr={lr}, eps={eps}, weight_decay={weight_decay}, betas={betas}")
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        # One count per parameter, as torch.optim keeps: a step that gives a tensor no
        # gradient leaves it, its moments and its bias correction where they were.
        self._steps = [0] * len(self.params)
        self._m = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._v = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, (p, m, v) in enumerate(zip(self.params, self._m, self._v, strict=True)):
            if p.grad is None:
                continue
            self._steps[i] += 1
            step_size = self.lr / (1 - beta1 ** self._steps[i])
            bias_correction2_sqrt = (1 - beta2 ** self._steps[i]) ** 0.5
            grad = p.grad if self.weight_decay == 0 else p.grad.add(p, alpha=self.weight_decay)
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            p.addcdiv_(m, (v.sqrt() / bias_correction2_sqrt).add_(self.eps), value=-step_size)
