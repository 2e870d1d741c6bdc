"""The plain multilayer perceptron the fields and deformation networks are built from."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, num_layers: int, out_dim: int) -> nn.Sequential:
    """`num_layers` hidden ReLU layers of width `hidden_dim`, then a linear output layer."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)
