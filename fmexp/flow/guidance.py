"""Class-conditional fields and classifier-free guidance (Ho and Salimans 2022) for a flow.

A class-conditional network ``v(x, t, y)`` with a null class (``UNet(num_classes=K)``, null ``y = K``)
holds the conditional field and, at ``y = null``, the unconditional one; ``drop_labels`` trains both
in one network. Bound to the labels of a batch, it is an ordinary field ``v(x, t)`` that every solver,
loss and likelihood of fmexp takes. The guided field is

    v_w(x, t, y) = (1 + w) v(x, t, y) - w v(x, t, null),

``w = 0`` the conditional model. On a Gaussian path the field is affine in the score (FM-OT with
``sigma_min = 0``: ``v = (x + (1 - t) grad log p_t(x)) / t``), so ``v_w`` is the field of the tilted
density ``p_t(x | y)^(1 + w) / p_t(x)^w``: not a trained density for ``w != 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ClassLabels", "Guided", "drop_labels", "proportional_labels", "class_accuracy", "guidance_error"]

ConditionalNetwork = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``v(x, t, y)``: ``x`` of shape ``(B, ...)``, ``t`` and ``y`` of shape ``(B,)``."""


@dataclass(frozen=True)
class Guided:
    """The field ``v_w(x, t) = (1 + w) v(x, t, y) - w v(x, t, null)`` for the fixed labels ``y`` ``(B,)``.

    One call is one function evaluation (NFE) of the ODE; it costs ``network_evaluations`` calls of
    the network: 1 at ``w = 0``, else 2, or 1 of twice the batch where ``batched`` (the conditional
    and the null rows stacked).
    """

    network: ConditionalNetwork
    y: Tensor
    null: int
    w: float = 0.0
    batched: bool = True

    @property
    def network_evaluations(self) -> int:
        """Network calls per function evaluation."""
        return 1 if self.w == 0 or self.batched else 2

    @property
    def rows_per_call(self) -> int:
        """Rows of a network call per row of ``x``: 2 where the conditional and null rows are stacked."""
        return 2 if self.w != 0 and self.batched else 1

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if self.w == 0:
            return self.network(x, t, self.y)
        null = torch.full_like(self.y, self.null)
        if self.batched:
            conditional, unconditional = self.network(
                torch.cat([x, x]), torch.cat([t, t]), torch.cat([self.y, null])
            ).chunk(2)
        else:
            conditional, unconditional = self.network(x, t, self.y), self.network(x, t, null)
        return (1 + self.w) * conditional - self.w * unconditional


@dataclass(frozen=True)
class ClassLabels:
    """What a class-conditional network trains on besides the data: each training point's label, the
    validation batch's (never dropped), the null class, and the label dropout ``p``."""

    train: Tensor
    val: Tensor
    null: int
    dropout: float = 0.0

    def bind(self, network: ConditionalNetwork, index: Tensor, generator: torch.Generator | None) -> Guided:
        """``network`` bound to the labels of the training points ``index``, each dropped to null with
        probability ``dropout`` (``drop_labels``, drawn from ``generator``)."""
        return Guided(network, drop_labels(self.train[index], self.dropout, self.null, generator), self.null)


def drop_labels(y: Tensor, p: float, null: int, generator: torch.Generator | None = None) -> Tensor:
    """``y`` with each label replaced by ``null`` with probability ``p`` (independently): classifier-free
    guidance's label dropout, which trains the unconditional field in the same network."""
    if p == 0:
        return y
    dropped = torch.rand(y.shape, generator=generator, device=y.device) < p
    return torch.where(dropped, torch.full_like(y, null), y)


def proportional_labels(labels: Tensor, n: int, num_classes: int) -> Tensor:
    """``n`` requested labels in the class proportions of ``labels``: each class ``k`` gets ``floor(n p_k)``,
    and the ``n - sum floor(n p_k)`` left go to the largest remainders (Hamilton's method), so every count
    is within 1 of ``n p_k`` and they sum to ``n``. They are interleaved, the i-th label of a class of
    ``c`` at ``(i + 1/2) / c``, so that a prefix (a chunk, the ladder's first samples) is near the
    proportions too."""
    counts = torch.bincount(labels.long(), minlength=num_classes).double()
    exact = n * counts / counts.sum()
    whole = exact.floor().long()
    left = n - int(whole.sum())
    whole[torch.argsort(exact - whole, descending=True, stable=True)[:left]] += 1
    requested = torch.repeat_interleave(torch.arange(num_classes), whole)
    rank = torch.cat([torch.arange(int(c), dtype=torch.float64) for c in whole])
    return requested[torch.argsort((rank + 0.5) / whole[requested], stable=True)]


def class_accuracy(predicted: Tensor, requested: Tensor, num_classes: int) -> tuple[float, list[float]]:
    """The fraction of samples classified as their requested label, overall and per class (NaN for a
    class that was never requested)."""
    hit = (predicted == requested).double()
    per_class = [
        float(hit[requested == k].mean()) if bool((requested == k).any()) else float("nan") for k in range(num_classes)
    ]
    return float(hit.mean()), per_class


def guidance_error(w: float, label_dropout: float) -> str | None:
    """Why a guidance scale ``w`` and a label dropout cannot go together, or None: ``label_dropout`` must
    lie in [0, 1), and ``w != 0`` needs the unconditional field that only ``label_dropout > 0`` trains."""
    if not 0 <= label_dropout < 1:
        return f"train.label_dropout must lie in [0, 1), got {label_dropout}"
    if w != 0 and label_dropout == 0:
        return (
            f"a guidance scale w={w} needs the unconditional field v(x, t, null), which only"
            " train.label_dropout > 0 trains (e.g. 0.1); set it, or sample at w=0"
        )
    return None
