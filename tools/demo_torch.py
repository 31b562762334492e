"""The demo model in PyTorch and its training loop (used by ``tools/train_demo.py``).

The model computes what llama.cpp's ``llama`` graph computes, so its weights go into the
GGUF as they are: RMSNorm, RoPE on interleaved pairs (ggml's "normal" mode, which the
``llama`` arch uses, hence no q/k permutation), grouped-query attention, SwiGLU.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from train_demo import Example, Hyper

def make_model(hyper: Hyper, n_vocab: int) -> Any:
    """A llama in PyTorch that computes what llama.cpp's ``llama`` graph computes.

    q/k/v and gate/up are fused into one matrix each (fewer, larger matmuls: this is
    what makes CPU training fast enough); ``gguf_weights`` splits them again.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    d = hyper.n_embd
    head_dim = d // hyper.n_head
    n_q, n_kv = hyper.n_head * head_dim, hyper.n_head_kv * head_dim

    def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # ggml's normal mode: dims (2i, 2i+1) rotate as a pair by pos * base^(-2i/head_dim)
        x0, x1 = x.unflatten(-1, (head_dim // 2, 2)).unbind(-1)
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1).flatten(-2)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn_norm = nn.Parameter(torch.ones(d))
            self.wqkv = nn.Linear(d, n_q + 2 * n_kv, bias=False)
            self.wo = nn.Linear(n_q, d, bias=False)
            self.ffn_norm = nn.Parameter(torch.ones(d))
            self.w_gate_up = nn.Linear(d, 2 * hyper.n_ff, bias=False)
            self.w_down = nn.Linear(hyper.n_ff, d, bias=False)

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
                    ) -> torch.Tensor:
            b, t, _ = x.shape
            h = F.rms_norm(x, (d,), self.attn_norm, hyper.rms_eps)
            q, k, v = self.wqkv(h).split((n_q, n_kv, n_kv), -1)
            q = rope(q.view(b, t, hyper.n_head, head_dim), cos, sin).transpose(1, 2)
            k = rope(k.view(b, t, hyper.n_head_kv, head_dim), cos, sin).transpose(1, 2)
            v = v.view(b, t, hyper.n_head_kv, head_dim).transpose(1, 2)
            # enable_gqa: query head j reads key/value head j // (n_head / n_head_kv),
            # as llama.cpp's broadcast does
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = x + self.wo(a.transpose(1, 2).reshape(b, t, n_q))
            h = F.rms_norm(x, (d,), self.ffn_norm, hyper.rms_eps)
            gate, up = self.w_gate_up(h).chunk(2, -1)
            return x + self.w_down(F.silu(gate) * up)

    class DemoLlama(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(n_vocab, d)
            self.layers = nn.ModuleList(Block() for _ in range(hyper.n_layer))
            self.norm = nn.Parameter(torch.ones(d))
            self.output = nn.Linear(d, n_vocab, bias=False)
            inv = hyper.rope_freq_base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64)
                                           / head_dim)
            angles = torch.arange(hyper.n_ctx, dtype=torch.float64)[:, None] * inv[None, :]
            self.register_buffer("cos", angles.cos().float()[:, None, :], persistent=False)
            self.register_buffer("sin", angles.sin().float()[:, None, :], persistent=False)
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = hyper.init_std
                    if name.endswith(("wo.weight", "w_down.weight")):
                        std /= (2 * hyper.n_layer) ** 0.5
                    nn.init.normal_(p, 0.0, std)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.embed(ids)
            t = ids.shape[1]
            for layer in self.layers:
                x = layer(x, self.cos[:t], self.sin[:t])
            return self.output(F.rms_norm(x, (d,), self.norm, hyper.rms_eps))

    return DemoLlama()


def greedy_torch(model: Any, prompts: Sequence[list[int]], end: int, max_new: int = 24
                 ) -> list[list[int]]:
    """Greedy replies of the PyTorch model (batched, right-padded), up to token ``end``."""
    import torch

    device = next(model.parameters()).device
    seqs = [list(p) for p in prompts]
    done = [False] * len(seqs)
    with torch.no_grad():
        for _ in range(max_new):
            live = [i for i, d in enumerate(done) if not d]
            if not live:
                break
            width = max(len(seqs[i]) for i in live)
            batch = torch.zeros((len(live), width), dtype=torch.long)
            for row, i in enumerate(live):
                batch[row, :len(seqs[i])] = torch.tensor(seqs[i])
            logits = model(batch.to(device)).cpu()
            for row, i in enumerate(live):
                token = int(logits[row, len(seqs[i]) - 1].argmax())
                seqs[i].append(token)
                done[i] = token == end
    return [s[len(p):] for s, p in zip(seqs, prompts, strict=True)]


def strip_end(tokens: list[int], end: int) -> list[int]:
    return tokens[:tokens.index(end)] if end in tokens else tokens


def _batches(examples: Sequence[Example], hyper: Hyper, gen: Any) -> Any:
    """``hyper.steps`` batches of (ids, labels), each chat used once in a shuffled order.

    Chats of similar length are batched together (sorted within windows of 32 batches,
    whose order is shuffled again), so padding costs little.
    """
    import torch

    order = torch.randperm(len(examples), generator=gen).tolist()
    window = 32 * hyper.batch_size
    total = hyper.steps * hyper.batch_size
    for start in range(0, total, window):
        chunk = [order[i % len(order)] for i in range(start, min(start + window, total))]
        chunk.sort(key=lambda i: len(examples[i].tokens))
        groups = [chunk[j:j + hyper.batch_size] for j in range(0, len(chunk), hyper.batch_size)]
        for g in torch.randperm(len(groups), generator=gen).tolist():
            chosen = [examples[i] for i in groups[g]]
            width = max(len(e.tokens) for e in chosen)
            ids = torch.zeros((len(chosen), width), dtype=torch.long)
            labels = torch.full((len(chosen), width), -100, dtype=torch.long)
            weights = torch.zeros((len(chosen), width))
            for row, e in enumerate(chosen):
                ids[row, :len(e.tokens)] = torch.tensor(e.tokens)
                # position p predicts token p + 1: the answer and its <|im_end|> count fully,
                # the prompt by prompt_loss_weight, padding not at all
                labels[row, :len(e.tokens) - 1] = torch.tensor(e.tokens[1:])
                weights[row, :e.n_prompt - 1] = hyper.prompt_loss_weight
                weights[row, e.n_prompt - 1:len(e.tokens) - 1] = 1.0
            yield ids, labels, weights


def _lr(hyper: Hyper, step: int) -> float:
    if step < hyper.warmup_steps:
        return hyper.lr * (step + 1) / hyper.warmup_steps
    progress = (step - hyper.warmup_steps) / max(1, hyper.steps - hyper.warmup_steps)
    floor = hyper.lr * hyper.min_lr_ratio
    return floor + (hyper.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def accuracy(right: Counter[str], total: Counter[str]) -> dict[str, float]:
    acc = {task: right[task] / total[task] for task in total}
    acc["overall"] = sum(right.values()) / sum(total.values())
    return acc


def evaluate_torch(model: Any, examples: Sequence[Example], end: int) -> dict[str, float]:
    """Exact-answer accuracy of greedy PyTorch replies, per task."""
    model.eval()
    replies = greedy_torch(model, [e.tokens[:e.n_prompt] for e in examples], end, max_new=12)
    model.train()
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for e, reply in zip(examples, replies, strict=True):
        total[e.task] += 1
        right[e.task] += end in reply and strip_end(reply, end) == e.tokens[e.n_prompt:-1]
    return accuracy(right, total)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train(hyper: Hyper, examples: Sequence[Example], validation: Sequence[Example],
          n_vocab: int, end: int, log: Any, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Train a fresh model; returns it (on the CPU) and the run's statistics."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(hyper.seed)
    model = make_model(hyper, n_vocab).to(device)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hyper.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=hyper.lr, betas=(0.9, hyper.beta2), eps=1e-8, fused=True)
    gen = torch.Generator().manual_seed(hyper.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters")
    wall0, cpu0 = time.monotonic(), cpu_seconds()
    history = []
    running = 0.0
    for step, (ids, labels, weights) in enumerate(_batches(examples, hyper, gen)):
        for group in optimizer.param_groups:
            group["lr"] = _lr(hyper, step)
        logits = model(ids.to(device))
        losses = F.cross_entropy(logits.view(-1, n_vocab), labels.to(device).view(-1),
                                 reduction="none")
        weights = weights.to(device).view(-1)
        loss = (losses * weights).sum() / weights.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hyper.grad_clip)
        optimizer.step()
        value = float(loss.detach())
        running = 0.95 * running + 0.05 * value if step else value
        last = step + 1 == hyper.steps
        if (step + 1) % 50 == 0 or last:
            log(f"step {step + 1}/{hyper.steps} loss {running:.4f} lr {_lr(hyper, step):.2e} "
                f"wall {time.monotonic() - wall0:.0f}s cpu {cpu_seconds() - cpu0:.0f}s "
                f"load {os.getloadavg()[0]:.1f}")
        if (step + 1) % hyper.eval_every == 0 or last:
            acc = evaluate_torch(model, validation, end)
            history.append({"step": step + 1, "loss": round(running, 5),
                            **{k: round(v, 4) for k, v in acc.items()}})
            log("  validation (torch, greedy): " + " ".join(
                f"{k} {v:.3f}" for k, v in acc.items()))
    stats = {"n_params": n_params, "train_wall_s": round(time.monotonic() - wall0, 1),
             "train_cpu_s": round(cpu_seconds() - cpu0, 1), "history": history,
             "torch": torch.__version__, "device": str(device),
             "threads": torch.get_num_threads()}
    return model.cpu(), stats
