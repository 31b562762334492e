import tempfile, time, statistics
from pathlib import Path
import llamakit
from llamakit.testing import write_llama_model
from llamakit._native.batch import BatchHandle
d = tempfile.mkdtemp(); p = Path(d) / "m.gguf"
write_llama_model(p, n_embd=1024, n_layer=8, n_head=16, n_head_kv=4, n_ff=4096, dtype="f16")
with llamakit.load_model(p, backend="cpu") as model, model.new_context(n_ctx=64*64, n_seq_max=64, n_batch=256, n_threads=2) as ctx:
    h = ctx._handle
    b = BatchHandle(h.native, 256)
    def run(ids):
        ctx.kv.clear()
        # 8 prompt tokens each, then 20 single-token steps
        toks=[]; pos=[]; seqs=[]; outs=[]
        for s in ids:
            toks += [5+i for i in range(8)]; pos += list(range(8)); seqs += [s]*8; outs += [0]*7+[1]
        b.fill(toks, pos, seqs, outs); b.decode(h)
        times=[]
        for step in range(20):
            b.fill([7]*len(ids), [8+step]*len(ids), list(ids), [1]*len(ids))
            t=time.perf_counter(); b.decode(h); h.synchronize(); times.append(time.perf_counter()-t)
        return statistics.median(times)*1e3
    for _ in range(2):
        print("contiguous 0..15", round(run(list(range(16))),2), "ms; gap {0..7, 40..47}", round(run(list(range(8))+list(range(40,48))),2), "ms; 4 blocks", round(run([0,1,2,3,10,11,12,13,20,21,22,23,30,31,32,33]),2))
    b.close()
