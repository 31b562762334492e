import random, statistics, tempfile, time
from pathlib import Path
import llamakit
from llamakit import _batch
from llamakit._engine import engine as engine_module
from llamakit._batch import BatchStepper
from llamakit.testing import write_llama_model
_batch.starts_ahead = lambda model: True
engine_module.starts_ahead = lambda model: True
d = tempfile.mkdtemp(); p = Path(d) / "t.gguf"; write_llama_model(p)
N, T = 64, 64
with llamakit.load_model(p, backend="cpu") as model:
    rng = random.Random(0)
    special = set(model.special_tokens)
    pool = [t for t in range(model.n_vocab) if t not in special]
    ban = {t: float("-inf") for t in special if model.is_eog(t)}
    prompts = [[rng.choice(pool) for _ in range(32)] for _ in range(N)]
    with model.new_context(n_ctx=N * 128, n_seq_max=N, n_batch=2048, n_ubatch=512, n_threads=2) as ctx:
        runnable = BatchStepper._runnable
        for name, off in (("generate_batch runs", False), ("generate_batch py", True)):
            BatchStepper._runnable = (lambda self: False) if off else runnable
            hosts = []
            for _ in range(5):
                ctx.reset_perf(); t = time.perf_counter()
                ctx.generate_batch(prompts, max_new_tokens=T, temperature=0, logit_bias=ban)
                wall = (time.perf_counter() - t) * 1e3; perf = ctx.perf()
                hosts.append((wall - perf["t_eval_ms"] - perf["t_p_eval_ms"]) / T)
            print(f"{name}: host ms/step min {min(hosts):.3f} median {statistics.median(hosts):.3f}")
        BatchStepper._runnable = runnable
    runnable = BatchStepper._runnable
    with llamakit.Engine(model, n_parallel=N, n_ctx=N * 128, n_batch=2048, n_ubatch=512, cache_prompt=False, n_threads=2) as engine:
      for name, off in (("engine runs", False), ("engine py", True), ("engine runs", False), ("engine py", True)):
        BatchStepper._runnable = (lambda self: False) if off else runnable
        hosts = []
        for _ in range(5):
            ectx = engine._ctx
            ectx.reset_perf()
            with engine._cond:
                t = time.perf_counter()
                reqs = [engine.submit(tokens=pr, max_new_tokens=T, temperature=0, logit_bias=ban) for pr in prompts]
            [r.result() for r in reqs]
            wall = (time.perf_counter() - t) * 1e3; perf = ectx.perf()
            hosts.append((wall - perf["t_eval_ms"] - perf["t_p_eval_ms"]) / T)
        print(f"{name}: host ms/step min {min(hosts):.3f} median {statistics.median(hosts):.3f}")
