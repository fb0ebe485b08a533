"""The render worker's child process (``python -m dunningops.dunning.render_child``): see render_worker.py.

It speaks frames on its standard input and output, each an 8-byte big-endian length and a pickle:
first the renderer's arguments, answered by ``READY``; then batches of render requests, each
answered by its emails (or RenderErrors) in order. It ends when its input closes (the parent is
done, or died). Its own standard output is moved aside first, so that nothing a library prints can
break a frame; standard error is the parent's to discard.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys

HEADER = struct.Struct(">Q")
READY = "ready"


def read_frame(fd: int) -> bytes | None:
    """One frame's bytes from ``fd``; None at the end of the input."""
    head = _read_exactly(fd, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    body = _read_exactly(fd, size)
    if body is None:
        raise EOFError("the input ended inside a frame")
    return body


def write_frame(fd: int, value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            if left == size:
                return None
            raise EOFError("the input ended inside a frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def main() -> int:
    out = os.dup(1)
    os.dup2(2, 1)  # print() and libraries write to standard error, never into a frame
    # Read before the renderer's imports: the parent's first write (the templates) may be larger
    # than a pipe holds, and it must not wait for them.
    first = read_frame(0)
    if first is None:
        return 0
    from dunningops.dunning.render_worker import render_batch, start_renderer

    start_renderer(*pickle.loads(first))
    write_frame(out, READY)
    while (frame := read_frame(0)) is not None:
        write_frame(out, render_batch(pickle.loads(frame)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
