import cProfile, pstats, io, random, time, sys
import llamakit
m = llamakit.load_model("/tmp/lk-gpu-cuda/models/8b-q4_0.gguf", backend="cuda", n_gpu_layers=-1)
ctx = m.new_context(n_ctx=64*256, n_seq_max=64, n_batch=2048, n_ubatch=512)
rng = random.Random(0)
sp = set(m.special_tokens)
pool = [t for t in range(m.n_vocab) if t not in sp]
ban = {t: float("-inf") for t in sp if m.is_eog(t)}
for npl in (8, 64):
    prompts = [[rng.choice(pool) for _ in range(128)] for _ in range(npl)]
    for bs in (False, True, False, True):
        ctx.reset_perf()
        t = time.perf_counter()
        r = ctx.generate_batch(prompts, max_new_tokens=64, temperature=0, logit_bias=ban, backend_sampling=bs)
        w = time.perf_counter() - t
        p = ctx.perf()
        print(npl, "bs" if bs else "host", f"{sum(len(x.tokens) for x in r)/w:,.0f} tok/s wall {w*1e3:.0f} ms eval {p['t_eval_ms']:.0f} ms p_eval {p['t_p_eval_ms']:.0f} n_eval {p['n_eval']} reused {p['n_reused']}", flush=True)
prompts = [[rng.choice(pool) for _ in range(128)] for _ in range(64)]
pr = cProfile.Profile(); pr.enable()
ctx.generate_batch(prompts, max_new_tokens=64, temperature=0, logit_bias=ban, backend_sampling=True)
pr.disable(); s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12); print(s.getvalue()[:3000])
