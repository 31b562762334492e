"""The engine after earlier requests: a burst of 32 requests with the slot choice keeping ids
together, against least-recently-used only (the choice before). batched.py's order of calls."""
import random, sys, tempfile, time
from pathlib import Path
import llamakit
from llamakit._engine import engine as engine_module
from llamakit._engine.slots import EngineSlot
from llamakit._native.batch import BatchHandle
from llamakit.testing import write_llama_model

def lru(idle, prompt, similarity, cache_prompt, busy=frozenset()):
    return min(idle, key=lambda s: s.last_used)

blocks = []
original_fill = BatchHandle.fill
def fill(self, tokens, positions, seq_ids, outputs):
    ids = sorted(set(seq_ids))
    blocks.append(1 + sum(1 for a, b in zip(ids, ids[1:]) if b != a + 1))
    original_fill(self, tokens, positions, seq_ids, outputs)
BatchHandle.fill = fill

d = tempfile.mkdtemp(); p = Path(d) / "m.gguf"
write_llama_model(p, n_embd=512, n_layer=4, n_head=8, n_head_kv=4, n_ff=2048, dtype="f16")
rng = random.Random(0)
with llamakit.load_model(p, backend="cpu") as model:
    special = set(model.special_tokens)
    pool = [t for t in range(model.n_vocab) if t not in special]
    ban = {str(t): float("-inf") for t in special if model.is_eog(t)}
    for name in sys.argv[1:]:
        if name == "lru":
            engine_module.choose_slot = lru
        else:
            from llamakit._engine.slots import choose_slot
            engine_module.choose_slot = choose_slot
        with llamakit.Engine(model, n_parallel=64, n_ctx=64 * 64, n_batch=2048, n_ubatch=512,
                             cache_prompt=False, n_threads=2) as engine:
            for n, reps in ((1, 4), (8, 4), (32, 3)):
                prompts = [[rng.choice(pool) for _ in range(16)] for _ in range(n)]
                for _ in range(reps):
                    blocks.clear()
                    with engine._cond:
                        t = time.perf_counter()
                        reqs = [engine.submit(tokens=pr, max_new_tokens=32, temperature=0,
                                              logit_bias=ban) for pr in prompts]
                    [r.result() for r in reqs]
                    dt = time.perf_counter() - t
                    if n == 32:
                        print(f"{name}: 32 requests {dt * 1e3:.0f} ms, blocks per batch max {max(blocks)}, "
                              f"steps with >1 block {sum(b > 1 for b in blocks)} of {len(blocks)}")
