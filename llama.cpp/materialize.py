#!/usr/bin/env python3
"""Materialise the pinned llama.cpp source tree (verified by sha256) and print its path.

    python llama.cpp/materialize.py            # into llamakit's cache (what builds use)
    python llama.cpp/materialize.py --dest DIR # somewhere else

The pin is ``pin.json`` beside this script. A checksum mismatch is an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llamakit._build.source import materialize  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=None, help="target folder")
    args = parser.parse_args()
    print(materialize(args.dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
