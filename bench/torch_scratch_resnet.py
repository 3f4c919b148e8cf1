"""The scratch ResNet of ``anndl.models.networks.scratch_resnet`` (default ``ScratchResNetConfig``) in plain PyTorch, for
``bench/bench_torch_parity.py`` only: torch is never a dependency of anndl, and this file imports nothing of it.

Same architecture, layer for layer: rescale 1/255; stem 3x3/2 conv (no bias), BN, ReLU, 3x3/2 max pool; 2 stacks x
3 basic blocks of 32 then 64 filters (3x3 convs without bias, BN after each, the first block of stack 2 strided with
a ResNet-D shortcut: 2x2 average pool, 1x1 conv, BN); global average pool, dropout 0.5, a 4-way dense softmax
(cross-entropy on the logits, as Keras computes it on the softmax). BatchNorm as Keras's defaults (momentum 0.99,
epsilon 1e-3). Lion (Chen et al., 2023) written out as ``keras.optimizers.Lion`` computes it (torch 2.13 has none).
"""

from __future__ import annotations

import torch
from torch import nn


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # Keras momentum 0.99 == torch momentum 0.01


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            pool = [nn.AvgPool2d(stride, stride)] if stride != 1 else []
            self.shortcut = nn.Sequential(*pool, nn.Conv2d(cin, cout, 1, bias=False), _bn(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ScratchResNet(nn.Module):
    def __init__(self, filters: int = 32, stacks: int = 2, blocks_per_stack: int = 3, dropout: float = 0.5,
                 num_classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, filters, 3, 2, 1, bias=False), _bn(filters), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], filters
        for s in range(stacks):
            for b in range(blocks_per_stack):
                cout = filters * 2 ** s
                blocks.append(BasicBlock(cin, cout, 2 if (s > 0 and b == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):  # x: (N, 3, H, W) in [0, 255]
        x = self.blocks(self.stem(x * (1 / 255)))
        return self.head(self.dropout(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))).float()


class Lion(torch.optim.Optimizer):
    """``keras.optimizers.Lion`` (beta_1 0.9, beta_2 0.99, no weight decay): p -= lr * sign(b1 m + (1 - b1) g);
    m = b2 m + (1 - b2) g."""

    def __init__(self, params, lr: float = 1e-5, beta_1: float = 0.9, beta_2: float = 0.99):
        super().__init__(params, dict(lr=lr, beta_1=beta_1, beta_2=beta_2))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            moments = [self.state[p].setdefault("m", torch.zeros_like(p)) for p in params]
            updates = torch._foreach_mul(moments, group["beta_1"])
            torch._foreach_add_(updates, grads, alpha=1 - group["beta_1"])
            torch._foreach_sign_(updates)
            torch._foreach_add_(params, updates, alpha=-group["lr"])
            torch._foreach_mul_(moments, group["beta_2"])
            torch._foreach_add_(moments, grads, alpha=1 - group["beta_2"])
