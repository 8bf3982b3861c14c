"""Selectable activations, by name, so that configs can compare them."""

from typing import Literal

from torch import nn

ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "prelu": lambda: nn.PReLU(),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
}

# for config fields: a wrong name is refused at validation with the list of choices
ActivationName = Literal["relu", "leaky_relu", "elu", "prelu", "tanh", "sigmoid", "gelu", "silu"]
# what super-resolution networks offer (sigmoid and tanh only to compare them)
SRActivation = Literal["relu", "elu", "leaky_relu", "prelu", "sigmoid", "tanh"]


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None
