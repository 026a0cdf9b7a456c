"""Token bytes to text a client may see: pure, no model, no I/O.

A token can end inside a UTF-8 character, and the text so far can end with the beginning of a
stop string. Both are held back until the next token decides them; nothing else is, so the
caller can check for cancellation after every token whatever the text looks like.
"""

from __future__ import annotations

import codecs


class TextStream:
    """Feed each token's bytes; get back the text that is safe to send and whether a stop
    string ended the reply (the stop string itself and anything after it are never sent)."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def push(self, data: bytes) -> tuple[str, bool]:
        self._pending += self._decoder.decode(data)
        cut = min((i for i in (self._pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            text, self._pending = self._pending[:cut], ""
            return text, True
        hold = self._held_back()
        text = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(text):]
        return text, False

    def finish(self) -> str:
        """What is left when the reply ends without a stop string (end of text, length). A
        character cut by the token limit is dropped, not shown as U+FFFD."""
        text, self._pending = self._pending, ""
        self._decoder.reset()
        return text

    def _held_back(self) -> int:
        """Length of the longest end of the pending text that begins some stop string."""
        longest = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:k]):
                    longest = k
                    break
        return longest
