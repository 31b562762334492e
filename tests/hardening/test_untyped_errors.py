"""Class 6 of issue 21: file-system failures, hostile config files and edited states are
typed LlamakitError leaves that also subclass the matching builtin; nothing is lost."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from attacks import Attack, failures, run_attacks

import llamakit

_CTX = "ctx = model().new_context(n_ctx=64, n_batch=16, n_threads=1)\n"

ATTACKS = [
    Attack("save_state-to-folder", _CTX + "ctx.save_state(tmp)",
           ("StateFileError", "OSError", "StateError")),
    Attack("save_state-to-proc", _CTX + "ctx.save_state('/proc/llamakit.state')",
           ("StateFileError", "OSError")),
    Attack("save_state-missing-folder", _CTX + "ctx.save_state(tmp / 'no' / 'x.state')",
           ("StateFileError", "OSError")),
    Attack("load_state-fifo", _CTX + "import os; os.mkfifo(tmp / 'f')\n"
           "ctx.load_state(tmp / 'f')", ("StateError",), timeout=20),
    Attack("load_state-folder", _CTX + "ctx.load_state(tmp)", ("StateError",)),
    Attack("save_state-after-model-file-deleted",
           "import shutil; shutil.copy(model_path, tmp / 'm.gguf')\n"
           "m = llamakit.load_model(tmp / 'm.gguf', backend='cpu')\n"
           "(tmp / 'm.gguf').unlink()\n"
           "c = m.new_context(n_ctx=64, n_threads=1); c.generate('hi', max_new_tokens=2)\n"
           "c.save_state(tmp / 's.state'); c.load_state(tmp / 's.state')", ("ok",)),
    Attack("config-dev-zero", "llamakit.load_config('/dev/zero')", ("ConfigError", "ValueError"),
           timeout=20),
    Attack("config-fifo", "import os; os.mkfifo(tmp / 'c.toml')\n"
           "llamakit.load_config(tmp / 'c.toml')", ("ConfigError",), timeout=20),
    Attack("config-5000-deep", "(tmp / 'c.toml').write_text('a = ' + '[' * 5000 + ']' * 5000)\n"
           "llamakit.load_config(tmp / 'c.toml')", ("ConfigError",)),
    Attack("config-5000-deep-tables", "(tmp / 'c.toml').write_text("
           "'[sampling]\\njson_schema = ' + '{a=' * 5000 + '1' + '}' * 5000)\n"
           "llamakit.load_config(tmp / 'c.toml')", ("ConfigError",)),
    Attack("messages-5000-deep", _CTX + "d = 'x'\nfor _ in range(5000): d = [d]\n"
           "ctx.chat([{'role': 'user', 'content': 'hi', 'extra': d}], max_new_tokens=1)",
           ("ChatTemplateError", "ValueError")),
    Attack("quantize-to-proc", "llamakit.quantize(model_path, '/proc/llamakit-q.gguf', 'Q8_0')",
           ("QuantizeFileError", "OSError", "QuantizeError")),
    Attack("quantize-to-sys", "llamakit.quantize(model_path, '/sys/llamakit-q.gguf', 'Q8_0')",
           ("QuantizeError",)),
    Attack("state-with-edited-token-list", _CTX +
           "ctx.generate('hello world', max_new_tokens=2, temperature=0)\n"
           "blob = ctx.state_bytes()\n"
           "import json, struct\n"
           "magic, n = struct.unpack_from('<8sI', blob)\n"
           "header = json.loads(blob[12:12 + n]); header['tokens'][-1] ^= 1\n"
           "raw = json.dumps(header).encode()\n"
           "ctx.set_state(struct.pack('<8sI', magic, len(raw)) + raw + blob[12 + n:])",
           ("StateError",)),
]


def test_untyped_error_attacks(tiny_model_path: Path, tmp_path: Path) -> None:
    """No attack of the class crashes, hangs or raises anything but its typed leaf."""
    results = run_attacks(ATTACKS, tiny_model_path, tmp_path)
    assert failures(ATTACKS, results) == {}


def test_a_full_disk_keeps_the_old_state_file(ctx: llamakit.Context, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while saving is a StateFileError with its errno; the earlier file survives."""
    target = tmp_path / "s.state"
    ctx.generate("hello", max_new_tokens=2, temperature=0)
    ctx.save_state(target)
    before = target.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(llamakit.StateFileError) as info:
        ctx.save_state(target)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.state"]


def test_a_read_only_folder_is_a_typed_error(ctx: llamakit.Context, tmp_path: Path) -> None:
    """A folder that cannot be written (not even by root: a file in the way) is typed."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(llamakit.StateFileError) as info:
        ctx.save_state(blocker / "s.state")
    assert isinstance(info.value, OSError)
