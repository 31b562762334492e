"""Run attack cases (snippets of Python against llamakit) in subprocesses and count what
happened to each: ``ok``, ``error`` (a LlamakitError), ``untyped`` (another exception),
``crash`` (the process died of a signal) or ``hang`` (it ran past its alarm)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_WORKER = Path(__file__).with_name("attack_worker.py")


@dataclass
class Attack:
    """One case: ``code`` runs in the worker; ``expect`` is ``"ok"`` or the names of
    classes the LlamakitError raised must be (its MRO must hold each)."""

    id: str
    code: str
    expect: tuple[str, ...] = ("LlamakitError",)
    timeout: int = 60
    extra: dict[str, Any] = field(default_factory=dict)


def run_attacks(attacks: list[Attack], model: Path, workdir: Path, *,
                timeout: int = 60) -> dict[str, dict[str, Any]]:
    """Each attack's outcome record, by id; a crashed worker is restarted after the case
    that killed it."""
    results: dict[str, dict[str, Any]] = {}
    pending = list(attacks)
    while pending:
        job = workdir / "attack-job.json"
        job.write_text(json.dumps({"model": str(model), "timeout": timeout,
                                   "cases": [asdict(a) for a in pending]}))
        proc = subprocess.run([sys.executable, str(_WORKER), str(job)], capture_output=True,
                              text=True, timeout=timeout * len(pending) + 120, check=False)
        started = None
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record["id"]] = record
                started = None
        if started is None:
            if proc.returncode != 0:  # died between cases: nothing more to learn
                raise AssertionError(f"attack worker failed: {proc.stderr[-2000:]}")
            break
        hang = proc.returncode == -signal.SIGALRM
        results[started] = {"id": started, "outcome": "hang" if hang else "crash",
                            "returncode": proc.returncode, "stderr": proc.stderr[-800:]}
        done = set(results)
        pending = [a for a in pending if a.id not in done]
    return results


def failures(attacks: list[Attack], results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What went wrong, by case id: every crash, hang, untyped error, and any outcome that
    is not the one the case expects."""
    wrong: dict[str, str] = {}
    for attack in attacks:
        got = results[attack.id]
        if got["outcome"] in ("crash", "hang", "untyped"):
            wrong[attack.id] = f"{got['outcome']}: {got.get('type', '')} " \
                               f"{got.get('message', got.get('stderr', ''))[-300:]}"
        elif attack.expect == ("ok",):
            if got["outcome"] != "ok":
                wrong[attack.id] = f"expected success, got {got['type']}: {got['message']}"
        elif got["outcome"] != "error":
            wrong[attack.id] = f"expected {attack.expect}, it returned {got.get('result')}"
        elif not set(attack.expect) <= set(got["mro"]):
            wrong[attack.id] = f"expected {attack.expect}, got {got['mro'][:4]}: " \
                               f"{got['message']}"
    return wrong
