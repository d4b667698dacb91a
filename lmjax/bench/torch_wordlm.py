"""PyTorch's ``examples/word_language_model`` (LSTM), step for step, on token ids given to it.

The reference (github.com/pytorch/examples, ``word_language_model/main.py`` and ``model.py``)
with its defaults: ``nn.Embedding`` -> dropout -> ``nn.LSTM`` (dropout between layers) ->
dropout -> ``nn.Linear`` -> log-softmax; weights uniform in [-0.1, 0.1], decoder bias zero. Data
``batchify``-ed into ``batch`` columns (the stream cut into equal parts, the rest dropped),
truncated back-propagation through chunks of ``bptt`` rows with the hidden state carried and
detached between chunks (a fresh zero state at every epoch and every evaluation), plain SGD
(``p -= lr * grad``) after ``clip_grad_norm_(clip)``, evaluation with ``eval_batch`` columns and
the state carried, the learning rate divided by 4 after every epoch whose validation loss is not
lower than the best, and the test set scored once at the end with the best-validation model.

Only the data reading differs: the ids come from lmjax's vocabulary (``data.vocab=all``,
whitespace tokens, ``<eos>`` after every line: the tokens the reference's ``data.Corpus``
reads), so both sides train on the same ids. Needs the bench extra (``pip install -e
'.[bench]'``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Recipe:
    """The reference's command-line arguments (their defaults, except epochs)."""
    emsize: int = 200
    nhid: int = 200
    nlayers: int = 2
    dropout: float = 0.2
    lr: float = 20.0
    clip: float = 0.25
    epochs: int = 40
    batch_size: int = 20
    bptt: int = 35
    eval_batch_size: int = 10
    anneal: float = 4.0  # lr /= anneal when validation does not improve
    seed: int = 1111
    tied: bool = False


class RNNModel(nn.Module):
    """model.py's RNNModel with rnn_type LSTM."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float,
                 tie_weights: bool = False):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.nhid, self.nlayers = nhid, nlayers
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input: torch.Tensor, hidden: tuple) -> tuple[torch.Tensor, tuple]:
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz: int) -> tuple:
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                weight.new_zeros(self.nlayers, bsz, self.nhid))


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    """The reference's batchify: (N,) -> (N // bsz, bsz); column j = the j-th equal part."""
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows i .. i + bptt of the columns and the rows one later (flattened) as targets."""
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i:i + seq_len]
    target = source[i + 1:i + 1 + seq_len].view(-1)
    return data, target


def repackage_hidden(h):
    """Detach the hidden state from its history (truncated BPTT)."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def layout(ids: np.ndarray, bsz: int, bptt: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The training chunks of one epoch as (inputs (T, bsz), targets (T, bsz)) arrays."""
    source = batchify(torch.as_tensor(np.asarray(ids, np.int64)), bsz)
    out = []
    for i in range(0, source.size(0) - 1, bptt):
        data, target = get_batch(source, i, bptt)
        out.append((data.numpy(), target.view(data.shape).numpy()))
    return out


def evaluate(model: RNNModel, source: torch.Tensor, bsz: int, bptt: int) -> float:
    """Mean NLL over the batchified ``source``, the state carried from chunk to chunk."""
    model.eval()
    total = 0.0
    hidden = model.init_hidden(bsz)
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, bptt):
            data, targets = get_batch(source, i, bptt)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total += len(data) * F.nll_loss(output, targets).item()
    return total / (len(source) - 1)


def train_epoch(model: RNNModel, source: torch.Tensor, r: Recipe, lr: float) -> float:
    """One epoch of the reference's train(); returns the mean training loss of its batches."""
    model.train()
    hidden = model.init_hidden(r.batch_size)
    total, n = 0.0, 0
    for i in range(0, source.size(0) - 1, r.bptt):
        data, targets = get_batch(source, i, r.bptt)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        loss = F.nll_loss(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        total += loss.item()
        n += 1
    return total / max(n, 1)


def run_reference(train_ids: np.ndarray, valid_ids: np.ndarray, test_ids: np.ndarray,
                  vocab_size: int, r: Recipe,
                  on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train and test as the reference's main.py does. Returns per-epoch records (validation
    loss / perplexity, lr, seconds) and the test loss / perplexity of the best-validation model;
    ``wall_seconds``: training and validation of every epoch, model creation included (the test
    evaluation: ``test_seconds``)."""
    t0 = time.perf_counter()
    torch.manual_seed(r.seed)
    as_t = lambda a: torch.as_tensor(np.asarray(a, np.int64))  # noqa: E731
    train_data = batchify(as_t(train_ids), r.batch_size)
    val_data = batchify(as_t(valid_ids), r.eval_batch_size)
    test_data = batchify(as_t(test_ids), r.eval_batch_size)
    model = RNNModel(vocab_size, r.emsize, r.nhid, r.nlayers, r.dropout, r.tied)
    lr, best_val, best_state, epochs = r.lr, None, None, []
    for epoch in range(1, r.epochs + 1):
        train_loss = train_epoch(model, train_data, r, lr)
        val_loss = evaluate(model, val_data, r.eval_batch_size, r.bptt)
        rec = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
               "val_perplexity": math.exp(val_loss),
               "wall_seconds": time.perf_counter() - t0}
        epochs.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if best_val is None or val_loss < best_val:
            best_val, best_state = val_loss, copy.deepcopy(model.state_dict())
        else:
            lr /= r.anneal
    wall = time.perf_counter() - t0
    model.load_state_dict(best_state)
    test_loss = evaluate(model, test_data, r.eval_batch_size, r.bptt)
    return {"epochs": epochs, "best_val_loss": best_val, "test_loss": test_loss,
            "test_perplexity": math.exp(test_loss),
            "test_tokens": int((test_data.size(0) - 1) * test_data.size(1)),
            "wall_seconds": wall, "test_seconds": time.perf_counter() - t0 - wall,
            "torch": torch.__version__,
            "threads": torch.get_num_threads()}
