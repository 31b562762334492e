"""generate_batch with sequences that end apart: with and without BatchStepper.compact."""
import tempfile, time, statistics, random
from pathlib import Path
import llamakit
from llamakit._batch import BatchStepper
from llamakit.testing import write_llama_model
d = tempfile.mkdtemp(); p = Path(d) / "m.gguf"
write_llama_model(p, n_embd=1024, n_layer=8, n_head=16, n_head_kv=4, n_ff=4096, dtype="f16")
original = BatchStepper.compact
with llamakit.load_model(p, backend="cpu") as model, model.new_context(n_ctx=16*96, n_seq_max=16, n_batch=512, n_threads=2) as ctx:
    rng = random.Random(0)
    special = set(model.special_tokens)
    pool = [t for t in range(model.n_vocab) if t not in special]
    prompts = [[rng.choice(pool) for _ in range(16)] for _ in range(16)]
    # sequence i may generate 8 + 4*i tokens: banned EOS, its own limit via a stop... use
    # limits by ending: force EOS after a number of tokens is not possible; use max_new_tokens
    # per call instead: half the sequences end early through an EOS bias on odd prompts
    kwargs = dict(max_new_tokens=64, temperature=0.8, seed=5, logit_bias={model.eos_token: 2.5})
    res = ctx.generate_batch(prompts, **kwargs)
    print("lengths", [len(r.tokens) for r in res])
    for rep in range(3):
        for name, fn in (("compact", original), ("no compact", lambda self, free: None)):
            BatchStepper.compact = fn
            t = time.perf_counter(); r = ctx.generate_batch(prompts, **kwargs); dt = time.perf_counter() - t
            print(f"{name}: {dt*1e3:.0f} ms, {sum(len(x.tokens) for x in r)} tokens")
