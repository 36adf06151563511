"""AdamW whose row-sparse gradients update only the rows they touch, for large ID embedding tables.

Dense AdamW moves every row of an embedding table at every step (the moments of untouched rows decay and
still move them), so a step costs O(rows): at 100,000 items × 64 dimensions about 29 ms of one core, more
than the batch itself. With `nn.Embedding(sparse=True)` the gradient holds only the batch's rows, and this
optimizer updates those rows' moments and weights (the "lazy" Adam of large-vocabulary training); dense
parameters get exactly AdamW's update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


class LazyAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay) that applies a sparse gradient to its rows only."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter with a gradient; returns the closure's loss when given one."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)
        return loss

    def _update(self, param: torch.Tensor, group: dict) -> None:
        """AdamW's update of one parameter (of the rows its sparse gradient holds)."""
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
        correction1 = 1.0 - beta1 ** state["step"]
        correction2 = 1.0 - beta2 ** state["step"]
        grad = param.grad
        if grad.is_sparse:
            grad = grad.coalesce()
            rows, values = grad.indices()[0], grad.values()
            exp_avg = state["exp_avg"][rows].mul_(beta1).add_(values, alpha=1.0 - beta1)
            exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1.0 - beta2)
            state["exp_avg"][rows] = exp_avg
            state["exp_avg_sq"][rows] = exp_avg_sq
            weights = param[rows].mul_(1.0 - lr * decay)
            denominator = (exp_avg_sq / correction2).sqrt_().add_(eps)
            param[rows] = weights.addcdiv_(exp_avg, denominator, value=-lr / correction1)
            return
        param.mul_(1.0 - lr * decay)
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1.0 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denominator = (state["exp_avg_sq"] / correction2).sqrt_().add_(eps)
        param.addcdiv_(state["exp_avg"], denominator, value=-lr / correction1)


def sparsify_large_embeddings(module: nn.Module, min_rows: int) -> bool:
    """Give every embedding table of at least `min_rows` rows sparse gradients; True if any has them."""
    large = [m for m in module.modules() if isinstance(m, nn.Embedding) and m.num_embeddings >= min_rows]
    for embedding in large:
        embedding.sparse = True
    return bool(large)
