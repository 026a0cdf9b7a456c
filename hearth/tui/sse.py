"""Server-Sent Events, parsed without I/O: bytes in, lines out, messages out.

The dashboard may read another machine's server, so every part is bounded: a line longer than
`MAX_LINE` or a message whose data runs past `MAX_DATA` is refused (`SseTooLong`), never kept
growing. Only what the dashboard needs of the SSE format: `id`, `event`, `data` (several data
lines join with a newline), comment lines (heartbeats), a blank line ends a message; `retry` and
unknown fields are ignored, as the format says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LINE = 16 * 1024
MAX_DATA = 64 * 1024


class SseTooLong(ValueError):
    """A line or a message over its bound: the stream is not a hearth event stream."""


@dataclass(frozen=True)
class SseMessage:
    event: str
    data: str
    id: str | None = None


@dataclass
class LineSplitter:
    """Bytes as they arrive -> whole lines (without their end: LF, CRLF or CR)."""

    max_line: int = MAX_LINE
    _buffer: bytearray = field(default_factory=bytearray)
    _after_cr: bool = False

    def feed(self, chunk: bytes) -> list[str]:
        lines: list[str] = []
        for byte in chunk:
            if self._after_cr:
                self._after_cr = False
                if byte == 0x0A:  # the LF of a CRLF: the line already ended
                    continue
            if byte in (0x0A, 0x0D):
                lines.append(self._buffer.decode("utf-8", errors="replace"))
                self._buffer.clear()
                self._after_cr = byte == 0x0D
                continue
            self._buffer.append(byte)
            if len(self._buffer) > self.max_line:
                raise SseTooLong(f"an event-stream line runs past {self.max_line} bytes")
        return lines


@dataclass
class SseParser:
    """Lines -> messages. `feed` returns a message when a blank line ends one with data."""

    max_data: int = MAX_DATA
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _size: int = 0
    _id: str | None = None
    last_id: str | None = None
    """The id of the last message dispatched (what to send as `since`)."""

    def feed(self, line: str) -> SseMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._size += len(value) + 1
            if self._size > self.max_data:
                raise SseTooLong(f"an event's data runs past {self.max_data} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SseMessage | None:
        data, event, ident = self._data, self._event, self._id
        self._data, self._event, self._size = [], "", 0
        if ident is not None:
            self.last_id = ident
        self._id = None
        if not data:
            return None
        return SseMessage(event or "message", "\n".join(data), ident)


def parse(chunks: list[bytes]) -> list[SseMessage]:
    """Every message a stream of `chunks` holds (a convenience for tests and one-shot reads)."""
    lines, parser = LineSplitter(), SseParser()
    found = []
    for chunk in chunks:
        for line in lines.feed(chunk):
            message = parser.feed(line)
            if message is not None:
                found.append(message)
    return found
