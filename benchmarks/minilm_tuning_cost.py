"""What one epoch of fine-tuning MiniLM's top layers jointly with the towers would cost on this CPU.

The `minilm_tuned` rung would run MiniLM inside the item tower: every training step passes the batch's
distinct items (history and target items of its user windows, the items the item tower embeds) through
MiniLM, forward and backward. This script counts those items on the real training batches (ML-100K,
`leave_last_out`, the default model and trainer: windows of history_length, trainer.batch_size windows per
step), then times, on this machine, a few optimiser steps of MiniLM on that many of the data set's item
texts, with
- the top `--top-layers` transformer layers trainable (the lower ones frozen, recomputed without gradients);
- every layer trainable;
- a forward pass alone without gradients (what the frozen encoder costs per step, for scale).
It extrapolates the time of one epoch (steps × measured step time; the towers' own cost, seconds per epoch
with frozen embeddings, left out).

    nice -n 5 python benchmarks/minilm_tuning_cost.py --threads 2 --steps 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from explorec.config import compose
from explorec.data.loading import load_dataset
from explorec.encoders.text import load_sentence_transformer
from explorec.models.data import TrainingWindows


def distinct_items_per_step(dataset: object, history_length: int, batch_size: int, seed: int) -> np.ndarray:
    """Distinct items (history ∪ targets) of each training step of one shuffled epoch."""
    windows = TrainingWindows(dataset.sequences("train"), history_length)  # type: ignore[attr-defined]
    order = np.random.default_rng(seed).permutation(len(windows))
    counts = []
    for start in range(0, len(order), batch_size):
        batch = windows.collate(order[start : start + batch_size].tolist())
        history = batch["history"][~batch["padding_mask"]]
        targets = batch["targets"][batch["target_mask"]]
        counts.append(int(torch.unique(torch.cat([history, targets])).numel()))
    return np.asarray(counts)


def time_steps(model: torch.nn.Module, texts: list[str], *, trainable_top: int | None, steps: int) -> float:
    """Median seconds of one optimiser step (forward, a loss, backward, AdamW) of MiniLM over `texts`.

    trainable_top None: forward only, no gradients. 0 < k < n_layers: only the top k layers train.
    """
    transformer = model[0].auto_model  # type: ignore[index]
    layers = transformer.encoder.layer
    for parameter in transformer.parameters():
        parameter.requires_grad = trainable_top is not None
    if trainable_top is not None and trainable_top < len(layers):
        for parameter in transformer.embeddings.parameters():
            parameter.requires_grad = False
        for layer in layers[: len(layers) - trainable_top]:
            for parameter in layer.parameters():
                parameter.requires_grad = False
    trainable = [parameter for parameter in transformer.parameters() if parameter.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-5) if trainable else None
    features = model.tokenize(texts)  # type: ignore[attr-defined]
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        if optimiser is None:
            with torch.no_grad():
                model(features)
        else:
            optimiser.zero_grad()
            embeddings = model(features)["sentence_embedding"]
            loss = (embeddings @ embeddings.T).logsumexp(dim=1).mean()  # stands in for the softmax loss
            loss.backward()
            optimiser.step()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def main() -> None:
    """Count, time and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top-layers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose([f"encoder.num_threads={args.threads}", "encoder.show_progress=false"])
    dataset = load_dataset(cfg)
    counts = distinct_items_per_step(dataset, cfg.model.history_length, cfg.trainer.batch_size, cfg.seed)
    n_items = round(float(counts.mean()))
    print(
        f"ML-100K {cfg.split.name}: {len(counts)} steps per epoch (batches of {cfg.trainer.batch_size} "
        f"windows of {cfg.model.history_length}); distinct items per step mean {counts.mean():.0f}, "
        f"min {counts.min()}, max {counts.max()} (catalogue {len(dataset.items)})",
        flush=True,
    )
    texts = dataset.items.sort_values("item_idx")["text"].tolist()
    sample = [texts[index] for index in np.random.default_rng(0).choice(len(texts), n_items, replace=False)]
    model = load_sentence_transformer(cfg.encoder)
    model.train()  # type: ignore[attr-defined]
    n_layers = len(model[0].auto_model.encoder.layer)  # type: ignore[index]
    for label, top in (
        ("forward only, no gradients", None),
        (f"top {args.top_layers} of {n_layers} layers trained", args.top_layers),
        (f"all {n_layers} layers trained", n_layers),
    ):
        step_s = time_steps(model, sample, trainable_top=top, steps=args.steps)  # type: ignore[arg-type]
        epoch_s = step_s * len(counts)
        print(
            f"  {label}: {step_s:.2f} s per step of {n_items} texts (median of {args.steps}) -> "
            f"{epoch_s / 60:.1f} min per epoch; 10 epochs {10 * epoch_s / 3600:.2f} h, "
            f"30 epochs {30 * epoch_s / 3600:.2f} h (MiniLM alone)",
            flush=True,
        )


if __name__ == "__main__":
    main()
