"""Name → constructor registry for losses, in the style of ``timm.create_model``.

A loss module registers itself with ``@register_loss("name")``; ``create_loss("name", **options)`` builds it and turns
an unknown name or option into a :class:`mmcl.errors.UserError` that says what is valid.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from mmcl.errors import UserError

LossT = TypeVar("LossT", bound=Callable[..., nn.Module])

_LOSSES: dict[str, Callable[..., nn.Module]] = {}
BUILT_IN = ("clip", "cwcl", "dcl", "geometry", "inmodal", "multiview", "siglip", "symile")  # modules that register losses


def _registered() -> dict[str, Callable[..., nn.Module]]:
    """The registry, with the built-in loss modules imported (importing one registers its losses)."""
    for module in BUILT_IN:
        importlib.import_module(f"mmcl.losses.{module}")
    return _LOSSES


class LossOptionError(UserError):
    """A loss was asked for by an unknown name or with an option it does not take."""


def register_loss(name: str) -> Callable[[LossT], LossT]:
    """Decorator: make ``create_loss(name, ...)`` call the decorated class or function."""

    def add(constructor: LossT) -> LossT:
        if name in _LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        _LOSSES[name] = constructor
        return constructor

    return add


def list_losses() -> list[str]:
    """Every registered loss name, sorted."""
    return sorted(_registered())


def create_loss(name: str, **options: Any) -> nn.Module:
    """Build the loss registered as ``name``; it is called as ``loss(outputs, batch=None) -> dict[str, Tensor]``."""
    if name not in _registered():
        close = difflib.get_close_matches(name, _LOSSES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise LossOptionError(f"unknown loss {name!r}{hint}; valid losses: {', '.join(list_losses())}")
    constructor = _LOSSES[name]
    accepted = [p for p in inspect.signature(constructor).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise LossOptionError(
            f"loss {name!r}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(accepted) or 'none'}"
        )
    return constructor(**options)
