"""hyre_engine/adam.py: the same parameters as torch.optim.Adam, step for step, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hyre_engine.adam import Adam


def _train(make_optimizer, *, weight_decay: float, steps: int = 60):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    frozen = net[2].bias
    frozen.requires_grad_(False)  # a frozen tensor (the ensemble's priors) is never handed over
    opt = make_optimizer([p for p in net.parameters() if p.requires_grad], weight_decay)
    x, y = torch.randn(32, 6), torch.randn(32, 1)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = ((net(x) - y) ** 2).mean()
        if step % 7 == 3:  # a step where one parameter gets no gradient: it must not move
            loss = ((net[0](x)).sum(dim=1, keepdim=True) - y).pow(2).mean()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_it_is_torch_adam_bit_for_bit_on_the_cpu(weight_decay):
    ours = _train(lambda ps, wd: Adam(ps, lr=3e-3, weight_decay=wd), weight_decay=weight_decay)
    theirs = _train(lambda ps, wd: torch.optim.Adam(ps, lr=3e-3, weight_decay=wd), weight_decay=weight_decay)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_bad_settings_are_refused_naming_them():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="lr > 0"):
        Adam([p], lr=0)
    with pytest.raises(ValueError, match="betas"):
        Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="no parameters"):
        Adam([])


def test_training_an_ensemble_does_not_import_dynamo():
    code = ("import sys, numpy as np; from hyre_engine import ensemble as ens, training; "
            "m = ens.build_ensemble(ens.EnsembleConfig(input_dim=4, n_heads=3, hidden=4)); "
            "x = np.random.default_rng(0).normal(size=(20, 4)).astype('float32'); "
            "training.fit_ensemble(m, task='regression', inputs=x, targets=x[:, 0], steps=3, device='cpu'); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
