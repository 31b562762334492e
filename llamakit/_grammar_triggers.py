"""How far back a lazy grammar's trigger pattern can reach: what lets the shim match it
over a bounded tail of the output instead of the whole output each token.

llama.cpp runs every trigger pattern over the whole output so far on every token until one
matches (``std::regex_search``, or ``regex_match`` for ``^...$`` patterns): O(output) a
token, and its recursive executor overflows the C stack on some 45 KB of output with the
chat layer's ``^[\\s\\S]*?(X)[\\s\\S]*$`` shape. The shim (native/lk_trigger.cpp) waits for
the trigger itself and searches only the last ``reach`` bytes before each new piece plus
the piece: a match that was not there a token ago must end in (or look at) the new piece,
so it starts within ``reach`` bytes of it when no match is longer than ``reach - 1``.

``trigger_plan`` gives, for a pattern (ECMAScript, as std::regex reads it, over bytes), the
pattern to search and its reach, or refuses it. Leading ``^[\\s\\S]*?`` / ``[\\s\\S]*?`` and
trailing ``[\\s\\S]*`` / ``[\\s\\S]*?`` (with ``$``) at the top level match anything, so
they are dropped (searching what remains finds the same leftmost match and the same
groups); any other unbounded repetition is refused.
"""

from __future__ import annotations

import math
import re

from ._errors import GrammarError

__all__ = ["trigger_plan"]

_ANY = r"\[(?:\\s\\S|\\S\\s)\]"
_LEAD = re.compile(r"^\^?" + _ANY + r"\*\?")
_TRAIL = re.compile(_ANY + r"\*\??\$?$")
_QUANT = re.compile(r"\{(\d+)(,(\d*))?\}")


Span = tuple[float, float]  # fewest and most bytes


class _Parser:
    """Fewest and most bytes a pattern can match, lookaheads counted as if they consumed
    (an over-estimate of the most is safe: the window only grows)."""

    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.i = 0
        self.groups: dict[int, Span] = {}
        self.n_groups = 0
        #: The pattern starts with capturing group 1, which always matches something.
        self.leads_with_group = False

    def alternation(self) -> Span:
        lo, hi = self.sequence()
        while self.i < len(self.s) and self.s[self.i] == "|":
            self.i += 1
            other = self.sequence()
            lo, hi = min(lo, other[0]), max(hi, other[1])
        return lo, hi

    def sequence(self) -> Span:
        lo = hi = 0.0
        first = self.i == 0
        while self.i < len(self.s) and self.s[self.i] not in "|)":
            (a_lo, a_hi), group = self.atom()
            q_lo, q_hi = self.quantifier()
            if first and group == 1 and a_lo * q_lo >= 1:
                self.leads_with_group = True
            first = False
            lo += a_lo * q_lo if a_lo else 0
            hi += a_hi * q_hi if a_hi else 0
        return lo, hi

    def quantifier(self) -> Span:
        s, i = self.s, self.i
        if i >= len(s):
            return 1, 1
        times: Span = (1, 1)
        if s[i] in "*+":
            times, self.i = (0 if s[i] == "*" else 1, math.inf), i + 1
        elif s[i] == "?":
            times, self.i = (0, 1), i + 1
        elif s[i] == "{" and (m := _QUANT.match(s, i)):
            low = int(m.group(1))
            times = (low, int(m.group(3)) if m.group(3) else (math.inf if m.group(2) else low))
            self.i = m.end()
        else:
            return times
        if self.i < len(s) and s[self.i] == "?":
            self.i += 1
        return times

    def atom(self) -> tuple[Span, int]:
        """The next atom's span, and its group number (0: not a capturing group)."""
        s = self.s
        c = s[self.i]
        self.i += 1
        if c in "^$":
            return (0, 0), 0
        if c == ".":
            return (1, 1), 0
        if c == "[":
            if self.i < len(s) and s[self.i] == "^":
                self.i += 1
            while self.i < len(s) and s[self.i] != "]":
                self.i += 2 if s[self.i] == "\\" else 1
            self.i += 1
            return (1, 1), 0
        if c == "(":
            number = 0
            look = s.startswith(("?=", "?!"), self.i)
            if s.startswith("?", self.i):
                self.i += 2  # (?: (?= (?!
            else:
                self.n_groups += 1
                number = self.n_groups
            inner = self.alternation()
            self.i += 1  # ")"
            if look:
                inner = (0, inner[1])
            if number:
                self.groups[number] = inner
            return inner, number
        if c == "\\" and self.i < len(s):
            e = s[self.i]
            self.i += 1
            if e in "bB":
                return (0, 0), 0
            if e.isdigit() and e != "0":
                while self.i < len(s) and s[self.i].isdigit():
                    e += s[self.i]
                    self.i += 1
                return (0, self.groups.get(int(e), (0, math.inf))[1]), 0
            if e == "x":
                self.i += 2
            elif e == "u":
                self.i += 4
            elif e == "c":
                self.i += 1
            size = len(e.encode()) if not e.isalnum() else 1
            return (size, size), 0
        size = len(c.encode())
        return (size, size), 0


def trigger_plan(pattern: str, limit: int) -> tuple[str, int]:
    """The pattern to search over the tail of the output, and how many bytes before the new
    piece a match (with the one byte an assertion may peek at) can start; ``GrammarError``
    naming ``[grammar] max_trigger_match_bytes`` when that is unbounded or over ``limit``."""
    search = pattern
    if "|" not in _top_level(pattern):
        lead = _LEAD.match(search)
        if lead:
            # llama.cpp's start is the first non-empty group, else the match's start: the
            # output's start once a leading "[\s\S]*?" is in the match. Only a first group
            # that always matches something keeps the start independent of that prefix.
            rest = search[lead.end():]
            parser = _Parser(rest)
            parser.alternation()
            if parser.leads_with_group:
                search = rest
        trail = _TRAIL.search(search)
        if trail and not search[:trail.start()].endswith("\\"):
            search = search[:trail.start()]
    longest = _Parser(search).alternation()[1]
    if longest == math.inf or longest + 1 > limit:
        size = "an unbounded number of" if longest == math.inf else f"up to {int(longest)}"
        raise GrammarError(
            f"trigger pattern {pattern[:80]!r} can match {size} bytes, more than [grammar] "
            f"max_trigger_match_bytes={limit}: the output is searched for a trigger only "
            "that far back. Bound its repetitions ({m,n} instead of * or +); a leading "
            r"'[\s\S]*?' before a capturing group that matches the trigger, and a trailing "
            r"'[\s\S]*', are fine")
    return search, int(longest) + 1


def _top_level(pattern: str) -> str:
    """``pattern`` with escapes, classes and groups blanked out."""
    out, depth, i = [], 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 1
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0:
            out.append(c)
        i += 1
    return "".join(out)
