"""Subprocess of the attack tests: run each case's code and print one JSON line for it.

Usage: ``python attack_worker.py JOB.json``. Before a case starts, a ``start`` line is
printed (and flushed), so when llama.cpp kills the process, or the case's alarm does
(a hang), the parent knows which case did it. Each case's code runs with ``llamakit``,
``model_path``, ``tmp`` (a folder of its own) and ``model()`` (the model, loaded once).
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    import llamakit

    loaded: list[Any] = []

    def model() -> Any:
        if not loaded:
            loaded.append(llamakit.load_model(job["model"], backend="cpu"))
        return loaded[0]

    for case in job["cases"]:
        print(json.dumps({"start": case["id"]}), flush=True)
        record: dict[str, Any] = {"id": case["id"]}
        # SIGALRM's default action ends the process even inside a C call: a hang shows as
        # death by SIGALRM, which the parent reports as "hang".
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(int(case.get("timeout", job["timeout"])))
        with tempfile.TemporaryDirectory() as tmp:
            scope = {"llamakit": llamakit, "model_path": job["model"], "tmp": Path(tmp),
                     "model": model, "extra": job.get("extra", {})}
            try:
                exec(compile(case["code"], case["id"], "exec"), scope)  # noqa: S102
            except llamakit.LlamakitError as exc:
                record.update(outcome="error", type=type(exc).__name__,
                              mro=[c.__name__ for c in type(exc).__mro__],
                              message=str(exc)[:500])
            except BaseException as exc:  # noqa: BLE001 - reported, the parent fails on it
                record.update(outcome="untyped", type=type(exc).__name__,
                              message=str(exc)[:500])
            else:
                record.update(outcome="ok", result=repr(scope.get("result"))[:500])
        signal.alarm(0)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
