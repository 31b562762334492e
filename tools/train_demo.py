#!/usr/bin/env python3
"""Train llamakit's embedded demo model, reproducibly, on the CPU.

    pip install -e ".[train]"                       # torch==2.13.0 (CPU build)
    nice -n 19 python tools/train_demo.py           # writes llamakit/data/demo-model.{gguf,json}

What it does, in order (every number is in ``Hyper`` below):

1. **Data**: synthetic single-turn chats from ``llamakit._demo.make_question`` (arithmetic
   on small numbers, unit conversions, spelling random letter strings backwards, and a
   greeting), drawn with ``random.Random(Hyper.data_seed)``; a tenth carry a system prompt.
2. **Vocabulary**: SentencePiece-style (llama.cpp's ``llama``/SPM tokenizer): ``<unk>``,
   ``<s>``, the ChatML control tokens ``<|im_start|>``/``<|im_end|>``, the 256 byte-fallback
   tokens ``<0x00>``..``<0xFF>``, every printable ASCII character (space as ``▁``), then
   pieces learned BPE-style from the chat text. Pieces only grow a word from its start (a
   word begins after a space or with a capital letter; the role names are words too) and
   never contain digits, so numbers, quoted words and answers stay (almost always) one
   character a token: that is what makes arithmetic and reversal learnable by a model this
   small. A piece's score is minus its merge rank, as SentencePiece's BPE models have them.
   Newlines use byte fallback.
3. **Tokenize with llama.cpp itself**: the vocabulary is written as a vocab-only GGUF,
   loaded with ``llamakit.load_model(..., vocab_only=True)`` and every chat is rendered with
   the GGUF's ChatML template and tokenized by llama.cpp, so training and inference see the
   same ids. The loss covers the answer and its ``<|im_end|>`` only.
4. **Model** (``tools/demo_torch.py``): llama architecture (RMSNorm, RoPE, grouped-query
   attention, SwiGLU), written for llama.cpp's conventions directly: RoPE rotates
   interleaved pairs (ggml's "normal" mode, which the ``llama`` arch uses), so q/k weights
   are stored unpermuted.
5. **Train** with AdamW, ``torch.manual_seed(Hyper.seed)``, deterministic algorithms.
6. **Write** the GGUF (F16 weights, F32 norms) with the ``gguf`` package, then check it in
   llamakit: the greedy replies of llama.cpp and of the PyTorch forward pass are compared
   token by token (a difference means a layout bug; the count is recorded), and the
   accuracy on validation questions (``Hyper.validation_seed``) is measured through
   ``Context.chat``. The file's sha256 goes into ``demo-model.json`` with the
   hyper-parameters, the timings and the accuracy; ``tests/demo`` checks the shipped file
   against it and measures accuracy on questions of yet another seed.

Experiments (how the hyper-parameters were chosen): ``--data-cache FILE.npz`` saves the
prepared data, which ``--train-only --device cuda --set lr=... --steps ...`` then trains
from where only torch and numpy are installed.

Run it with ``nice -n 19``: it uses one thread (``Hyper.threads``) and is meant to take only
idle CPU. On an idle machine it takes about a quarter of an hour.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from demo_torch import accuracy, cpu_seconds, greedy_torch, make_model, strip_end, train  # noqa: E402

if TYPE_CHECKING:
    import llamakit
    from llamakit._demo import DemoQuestion

# llamakit is imported where it is used: the training loop alone (``--data-cache`` with
# a prepared file) runs where only torch and numpy are installed.

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Hyper:
    """Every setting of a training run; recorded in the JSON beside the model."""

    # shape
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 8
    n_head_kv: int = 4
    n_ff: int = 512
    n_ctx: int = 512
    rope_freq_base: float = 10000.0
    rms_eps: float = 1e-5
    # data
    data_seed: int = 14
    validation_seed: int = 41
    n_vocab_sample: int = 20000  # chats the vocabulary is learned from
    min_piece_count: int = 40  # a merge must occur this often in that sample
    system_prompt_share: float = 0.1
    task_weights: tuple[tuple[str, float], ...] = (
        ("add", 2.0), ("sub", 2.0), ("mul", 1.0), ("convert", 1.5), ("reverse", 3.0),
        ("greeting", 0.25))
    # optimisation
    seed: int = 1234
    steps: int = 2400
    batch_size: int = 64
    lr: float = 3e-4
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta2: float = 0.98
    grad_clip: float = 1.0
    prompt_loss_weight: float = 0.0  # weight of the prompt's tokens in the loss
    init_std: float = 0.02
    # One thread: on a shared machine (nice 19) two OpenMP threads spend most of their time
    # waiting for each other at barriers (measured: 1.99 vs 0.35 CPU-seconds a step under
    # load), and the file's bytes depend on the thread count.
    threads: int = 1
    eval_every: int = 500
    n_validation_per_task: int = 40


SYSTEM_PROMPTS = ("You are a helpful assistant.", "You are the llamakit demo model.",
                  "Answer with the result only.")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SPACE = "\u2581"  # SentencePiece's visible space
UNK, BOS, IM_START, IM_END = 0, 1, 2, 3
SPECIAL_TOKENS = ("<unk>", "<s>", "<|im_start|>", "<|im_end|>")
# llama.cpp's llama_token_type (gguf.TokenType)
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


# --------------------------------------------------------------------------- data


Chat = list[dict[str, str]]


def render_chat(messages: Chat, answer: str | None = None) -> str:
    """``CHAT_TEMPLATE`` rendered with ``add_generation_prompt``, plus the answer and its
    ``<|im_end|>`` when given (the reply ends there: generation stops at that token)."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    text += "<|im_start|>assistant\n"
    return text if answer is None else f"{text}{answer}<|im_end|>"


def training_chats(hyper: Hyper, n: int, seed: int) -> list[tuple[Chat, DemoQuestion]]:
    """``n`` chats with their questions, tasks drawn by ``hyper.task_weights``."""
    from llamakit._demo import make_question

    rng = random.Random(seed)
    names = [name for name, _ in hyper.task_weights]
    weights = [weight for _, weight in hyper.task_weights]
    chats = []
    for _ in range(n):
        q = make_question(rng, rng.choices(names, weights)[0])
        messages: Chat = []
        if rng.random() < hyper.system_prompt_share:
            messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
        messages.append({"role": "user", "content": q.question})
        chats.append((messages, q))
    return chats


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    n_merges: int


_WORD = re.compile(f"{SPACE}?[A-Za-z]+")


def _merge_words(texts: Sequence[str]) -> Counter[str]:
    """Words that pieces may cover: a space then letters, or a capitalised word."""
    words: Counter[str] = Counter()
    for text in texts:
        for match in _WORD.finditer(text.replace(" ", SPACE)):
            word = match.group()
            if word[0] == SPACE or word[0].isupper():
                words[word] += 1
    return words


def learn_pieces(counts: Counter[str], min_count: int) -> list[str]:
    """BPE merges restricted to growing a word from its start, most frequent first.

    Each word is a sequence of symbols; the only pair that may merge is its first two
    symbols, so every piece is a prefix of a word (``▁c``, ``▁ce``, ... ``▁centimeters``)
    and text inside words the corpus never starts (digits, quoted letters) never merges.
    """
    words = {tuple(word): count for word, count in counts.items()}
    pieces: list[str] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            if len(symbols) > 1:
                pairs[symbols[:2]] += count
        if not pairs:
            break
        pair, count = max(pairs.items(), key=lambda item: (item[1], item[0]))
        if count < min_count:
            break
        piece = pair[0] + pair[1]
        pieces.append(piece)
        words = {((piece, *s[2:]) if s[:2] == pair else s): c for s, c in words.items()}
    return pieces


def build_vocab(hyper: Hyper) -> Vocab:
    sample = training_chats(hyper, hyper.n_vocab_sample, hyper.data_seed)
    texts = [m["content"] for chat, _ in sample for m in chat]
    texts += [q.answer for _, q in sample]
    words = _merge_words(texts)
    # The role names follow a control token, so they start no word of the rules above;
    # whole-word pieces for them save 11 tokens a chat. Their lowercase prefixes ("us",
    # "as", "sy", ...) do merge inside quoted words: a few percent of the reversal words
    # see such a piece, and learn it.
    for chat, _ in sample:
        words.update(m["role"] for m in chat)
        words["assistant"] += 1
    pieces = learn_pieces(words, hyper.min_piece_count)
    chars = [SPACE] + [chr(c) for c in range(0x21, 0x7F)]
    tokens = [*SPECIAL_TOKENS, *(f"<0x{b:02X}>" for b in range(256)), *chars, *pieces]
    types = [UNKNOWN, CONTROL, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * (
        len(chars) + len(pieces))
    # Merged pieces score -1, -2, ... by rank; single characters below all of them (the
    # SPM tokenizer only compares the scores of pieces a merge would produce).
    scores = [0.0] * (len(SPECIAL_TOKENS) + 256)
    scores += [float(-len(pieces) - 1 - i) for i in range(len(chars))]
    scores += [float(-1 - i) for i in range(len(pieces))]
    if len(set(tokens)) != len(tokens):
        raise AssertionError("duplicate token text in the vocabulary")
    return Vocab(tokens, scores, types, len(pieces))


# --------------------------------------------------------------------------- GGUF


def write_gguf(path: Path, hyper: Hyper, vocab: Vocab,
               weights: dict[str, np.ndarray] | None) -> None:
    """The model (or only its vocabulary, ``weights=None``) as GGUF: llama architecture,
    2-D weights in F16, norms in F32."""
    import gguf

    head_dim = hyper.n_embd // hyper.n_head
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("llamakit demo")
    writer.add_description("A tiny chat model trained by llamakit's tools/train_demo.py on "
                           "synthetic arithmetic, unit-conversion and reversal questions.")
    writer.add_license_name("MIT")
    writer.add_context_length(hyper.n_ctx)
    writer.add_embedding_length(hyper.n_embd)
    writer.add_block_count(hyper.n_layer)
    writer.add_feed_forward_length(hyper.n_ff)
    writer.add_head_count(hyper.n_head)
    writer.add_head_count_kv(hyper.n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(hyper.rope_freq_base)
    writer.add_layer_norm_rms_eps(hyper.rms_eps)
    writer.add_vocab_size(len(vocab.tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    writer.add_unk_token_id(UNK)
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(IM_END)
    writer.add_eot_token_id(IM_END)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    # ChatML puts role names right after a control token; with SentencePiece's usual space
    # prefix they would read "▁user", and every answer would start with a space.
    writer.add_add_space_prefix(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    # Answers are exact: recommend greedy decoding (llamakit and llama.cpp read this key
    # when the caller sets no temperature).
    writer.add_float32("general.sampling.temp", 0.0)
    for name, array in (weights or {}).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_weights(state: dict[str, Any], hyper: Hyper) -> dict[str, np.ndarray]:
    """PyTorch parameters under llama.cpp's tensor names, in file order."""
    def f16(name: str) -> np.ndarray:
        return state[name].detach().float().numpy().astype(np.float16)

    def f32(name: str) -> np.ndarray:
        return state[name].detach().float().numpy().astype(np.float32)

    head_dim = hyper.n_embd // hyper.n_head
    n_q, n_kv = hyper.n_head * head_dim, hyper.n_head_kv * head_dim
    out = {"token_embd.weight": f16("embed.weight")}
    for i in range(hyper.n_layer):
        p, blk = f"layers.{i}.", f"blk.{i}."
        out[blk + "attn_norm.weight"] = f32(p + "attn_norm")
        q, k, v = (np.ascontiguousarray(w) for w in
                   np.split(f16(p + "wqkv.weight"), [n_q, n_q + n_kv]))
        out[blk + "attn_q.weight"] = q
        out[blk + "attn_k.weight"] = k
        out[blk + "attn_v.weight"] = v
        out[blk + "attn_output.weight"] = f16(p + "wo.weight")
        out[blk + "ffn_norm.weight"] = f32(p + "ffn_norm")
        gate, up = (np.ascontiguousarray(w) for w in np.split(f16(p + "w_gate_up.weight"), 2))
        out[blk + "ffn_gate.weight"] = gate
        out[blk + "ffn_up.weight"] = up
        out[blk + "ffn_down.weight"] = f16(p + "w_down.weight")
    out["output_norm.weight"] = f32("norm")
    out["output.weight"] = f16("output.weight")
    return out


# --------------------------------------------------------------------------- tokenizing


@dataclass
class Example:
    tokens: list[int]
    n_prompt: int
    task: str
    answer: str


def tokenize_chats(vocab_model: llamakit.Model,
                   chats: Sequence[tuple[Chat, DemoQuestion]]) -> list[Example]:
    """Token ids of each chat, as ``Context.chat`` tokenizes the prompt (BOS added, special
    tokens parsed), with the answer and ``<|im_end|>`` after it."""
    examples = []
    for index, (messages, q) in enumerate(chats):
        prompt = render_chat(messages)
        if index < 200:  # the f-string renders exactly what the GGUF's template does
            rendered = vocab_model.apply_chat_template(messages, add_generation_prompt=True)
            if rendered != prompt:
                raise AssertionError(f"template mismatch:\n{rendered!r}\n{prompt!r}")
        prompt_ids = vocab_model.tokenize(prompt, add_special=True, parse_special=True)
        full = vocab_model.tokenize(prompt + q.answer + "<|im_end|>", add_special=True,
                                    parse_special=True)
        if full[:len(prompt_ids)] != prompt_ids or full[-1] != IM_END:
            raise AssertionError(f"the answer changes the prompt's tokens: {q}")
        examples.append(Example(full, len(prompt_ids), q.task, q.answer))
    return examples


# --------------------------------------------------------------------------- checks


def check_in_llamakit(path: Path, model: Any, questions: Sequence[DemoQuestion], log: Any
                      ) -> dict[str, Any]:
    """Greedy replies through ``Context.chat`` on llama.cpp: the same token ids as the
    PyTorch model's (its weights rounded to F16 first, as in the file), and the accuracy
    per task."""
    import llamakit

    rounded = {k: v.half().float() if v.dim() == 2 else v
               for k, v in model.state_dict().items()}
    model.load_state_dict(rounded)
    model.eval()
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    results = []
    with llamakit.load_model(path, backend="cpu") as lk, \
            lk.new_context(n_ctx=256, n_threads=2) as ctx:
        for q in questions:
            result = ctx.chat([{"role": "user", "content": q.question}], temperature=0,
                              max_new_tokens=32)
            results.append(result)
            total[q.task] += 1
            right[q.task] += result.content == q.answer
    theirs = greedy_torch(model, [list(r.generation.prompt_tokens) for r in results], IM_END,
                          max_new=32)
    mismatches = 0
    for q, result, reply in zip(questions, results, theirs, strict=True):
        if list(result.generation.tokens) != strip_end(reply, IM_END):
            mismatches += 1
            log(f"  MISMATCH {q.question!r}: llama.cpp {list(result.generation.tokens)} "
                f"torch {reply}")
    acc = accuracy(right, total)
    log("llamakit (cpu, F16) accuracy: " + " ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    log(f"greedy token mismatches llama.cpp vs torch: {mismatches}/{len(questions)}")
    return {"n_questions": len(questions), "accuracy": {k: round(v, 4) for k, v in acc.items()},
            "torch_llamacpp_mismatches": mismatches}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- main


def prepare(hyper: Hyper, log: Any) -> tuple[Vocab, list[Example], list[Example]]:
    """The vocabulary, the tokenized training chats and the validation questions."""
    import llamakit
    from llamakit._demo import TASKS, make_question

    vocab = build_vocab(hyper)
    log(f"vocabulary: {len(vocab.tokens)} tokens ({vocab.n_merges} learned pieces)")
    with tempfile.TemporaryDirectory() as tmp:
        vocab_path = Path(tmp) / "vocab.gguf"
        write_gguf(vocab_path, hyper, vocab, None)
        with llamakit.load_model(vocab_path, backend="cpu", vocab_only=True) as vocab_model:
            chats = training_chats(hyper, hyper.steps * hyper.batch_size, hyper.data_seed)
            examples = tokenize_chats(vocab_model, chats)
            rng = random.Random(hyper.validation_seed)
            questions = [make_question(rng, task) for task in TASKS
                         for _ in range(hyper.n_validation_per_task)]
            validation = tokenize_chats(
                vocab_model, [([{"role": "user", "content": q.question}], q)
                              for q in questions])
    return vocab, examples, validation


_CACHE_KEYS = ("data_seed", "validation_seed", "n_vocab_sample", "min_piece_count",
               "system_prompt_share", "task_weights", "n_validation_per_task")


def _save_cache(path: Path, hyper: Hyper, vocab: Vocab, examples: Sequence[Example],
                validation: Sequence[Example]) -> None:
    """Prepared data for experiments elsewhere (a machine without llamakit), as .npz."""
    def pack(prefix: str, items: Sequence[Example]) -> dict[str, Any]:
        return {f"{prefix}_tokens": np.concatenate([e.tokens for e in items]).astype(np.uint16),
                f"{prefix}_length": np.array([len(e.tokens) for e in items], np.int32),
                f"{prefix}_n_prompt": np.array([e.n_prompt for e in items], np.int32),
                f"{prefix}_task": np.array([e.task for e in items]),
                f"{prefix}_answer": np.array([e.answer for e in items])}

    meta = {"hyper": {k: getattr(hyper, k) for k in _CACHE_KEYS}, "vocab": asdict(vocab)}
    with open(path, "wb") as out:
        np.savez_compressed(out, meta=np.array(json.dumps(meta)), **pack("train", examples),
                            **pack("validation", validation))


def _load_cache(path: Path, hyper: Hyper) -> tuple[Vocab, list[Example], list[Example]]:
    data = np.load(path)
    meta = json.loads(str(data["meta"]))
    for key in _CACHE_KEYS:
        if json.dumps(meta["hyper"][key]) != json.dumps(getattr(hyper, key)):
            raise SystemExit(f"{path} was prepared with another {key}")

    def unpack(prefix: str, n: int | None) -> list[Example]:
        ends = np.cumsum(data[f"{prefix}_length"])
        tokens = np.split(data[f"{prefix}_tokens"].astype(np.int64), ends[:-1])
        rows = zip(tokens, data[f"{prefix}_n_prompt"], data[f"{prefix}_task"],
                   data[f"{prefix}_answer"], strict=True)
        found = [Example(t.tolist(), int(p), str(k), str(a)) for t, p, k, a in rows]
        if n is not None and len(found) < n:
            raise SystemExit(f"{path} holds {len(found)} chats, {n} wanted")
        return found[:n] if n is not None else found

    return (Vocab(**meta["vocab"]), unpack("train", hyper.steps * hyper.batch_size),
            unpack("validation", None))


def parse_hyper(steps: int | None, overrides: Sequence[str]) -> Hyper:
    hyper = Hyper()
    if steps is not None:
        hyper = replace(hyper, steps=steps)
    for item in overrides:
        key, _, value = item.partition("=")
        current = getattr(hyper, key)
        hyper = replace(hyper, **{key: json.loads(value) if not isinstance(current, str)
                                  else value})
    return hyper


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "llamakit" / "data",
                        help="folder for demo-model.gguf and demo-model.json")
    parser.add_argument("--steps", type=int, default=None, help="override Hyper.steps")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a Hyper field, VALUE in JSON (experiments; recorded)")
    parser.add_argument("--data-cache", type=Path, default=None,
                        help="experiments: reuse the prepared data in this .npz file (written "
                        "when missing; its first steps*batch_size chats are used)")
    parser.add_argument("--train-only", action="store_true",
                        help="experiments: train and report validation accuracy, write nothing")
    parser.add_argument("--device", default="cpu", help="experiments: a torch device")
    parser.add_argument("--save-state", type=Path, default=None,
                        help="also save the trained PyTorch weights here")
    parser.add_argument("--load-state", type=Path, default=None,
                        help="skip training: write and check the model from weights that "
                        "--save-state saved (same settings)")
    args = parser.parse_args(argv)

    import torch

    hyper = parse_hyper(args.steps, args.set)
    torch.set_num_threads(hyper.threads)
    if args.device == "cpu":
        torch.use_deterministic_algorithms(True)

    def log(message: str) -> None:
        print(message, flush=True)

    wall0, cpu0, load0 = time.monotonic(), cpu_seconds(), os.getloadavg()
    if args.data_cache is not None and args.data_cache.exists():
        vocab, examples, validation = _load_cache(args.data_cache, hyper)
    else:
        vocab, examples, validation = prepare(hyper, log)
        if args.data_cache is not None:
            _save_cache(args.data_cache, hyper, vocab, examples, validation)
    lengths = [len(e.tokens) for e in examples]
    log(f"data: {len(examples)} chats, {sum(lengths)} tokens, length "
        f"{min(lengths)}..{max(lengths)} (mean {sum(lengths) / len(lengths):.1f}); "
        f"ready after {time.monotonic() - wall0:.1f}s")
    if args.load_state is not None:
        saved = torch.load(args.load_state, weights_only=True)
        model = make_model(hyper, len(vocab.tokens))
        model.load_state_dict(saved["state"])
        stats = saved["stats"]
    else:
        model, stats = train(hyper, examples, validation, len(vocab.tokens), IM_END, log,
                             args.device)
    if args.save_state is not None:
        torch.save({"state": model.state_dict(), "stats": stats}, args.save_state)
    if args.train_only:
        return 0

    import llamakit
    from llamakit._demo import MODEL_FILE, RECORD_FILE, TASKS, make_question

    llamakit.set_verbosity("error")
    rng = random.Random(hyper.validation_seed)
    questions = [make_question(rng, task) for task in TASKS
                 for _ in range(hyper.n_validation_per_task)]
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / MODEL_FILE
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        tmp_model = Path(tmp) / MODEL_FILE
        write_gguf(tmp_model, hyper, vocab, gguf_weights(model.state_dict(), hyper))
        check = check_in_llamakit(tmp_model, model, questions, log)
        os.replace(tmp_model, model_path)
    digest = sha256(model_path)
    record = {
        "file": MODEL_FILE,
        "sha256": digest,
        "size": model_path.stat().st_size,
        "n_params": stats["n_params"],
        "n_vocab": len(vocab.tokens),
        "n_learned_pieces": vocab.n_merges,
        "hyper": asdict(hyper),
        "training": {
            "n_chats": len(examples),
            "n_tokens": sum(lengths),
            "train_wall_s": stats["train_wall_s"],
            "train_cpu_s": stats["train_cpu_s"],
            "total_wall_s": round(time.monotonic() - wall0, 1),
            "total_cpu_s": round(cpu_seconds() - cpu0, 1),
            "loadavg_start": [round(x, 2) for x in load0],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "history": stats["history"],
        },
        "validation": check,
        "environment": {"torch": stats.get("torch", torch.__version__),
                        "python": platform.python_version(), "machine": platform.machine(),
                        "device": stats.get("device", args.device),
                        "threads": stats.get("threads", hyper.threads)},
    }
    (args.out / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {model_path} ({record['size']} bytes, sha256 {digest})")
    log(f"total: wall {record['training']['total_wall_s']}s, "
        f"cpu {record['training']['total_cpu_s']}s, load {load0} -> {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
