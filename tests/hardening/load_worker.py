"""Subprocess of the malformed-file corpus: load each case and print one JSON line for it.

Usage: ``python load_worker.py JOB.json``. The job names the valid file, a work folder,
whether to validate, and the cases (edits of the valid file). A line is printed (and
flushed) after each case, so when llama.cpp kills the process the parent knows which file
did it. A file that loads is also given a short generation: a model that loads must not
crash on first use either.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from gguf_corpus import apply  # noqa: E402


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    import llamakit

    base = Path(job["base"]).read_bytes()
    workdir = Path(job["workdir"])
    for case in job["cases"]:
        path = workdir / f"case-{os.getpid()}.gguf"
        path.write_bytes(apply(base, case["ops"]))
        record = {"id": case["id"]}
        try:
            with llamakit.load_model(path, backend="cpu", validate=job["validate"]) as model, \
                    model.new_context(n_ctx=32, n_batch=8, n_threads=1) as ctx:
                ctx.generate("Hello", max_new_tokens=2, temperature=0)
        except llamakit.LlamakitError as exc:
            record.update(outcome="error", type=type(exc).__name__,
                          model_load_error=isinstance(exc, llamakit.ModelLoadError),
                          message=str(exc)[:400])
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails on it
            record.update(outcome="untyped", type=type(exc).__name__, message=str(exc)[:400])
        else:
            record.update(outcome="loaded")
        print(json.dumps(record), flush=True)
        path.unlink()


if __name__ == "__main__":
    main()
