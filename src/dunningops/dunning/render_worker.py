"""A large send cycle's emails rendered in a process of its own, while this one claims, records and sends.

Rendering is Python and holds the GIL; so do the sending threads between their socket calls. In
one process the two take turns on one core, and rendering (with the plain-text alternative and the
quoted-printable bodies) is most of a reminder's cost. A run with more than one batch of emails
therefore renders its batches in a child process. The bodies are still encoded for the wire here,
by the sending threads: measured, that balances the two processes better than encoding in the
child, and it spares pickling the encoded bodies too.

The child is a new interpreter (render_child.py), not a fork: this process has threads and an open
store by then, and a new interpreter imports only the renderer. It starts
on the first large batch, which renders here meanwhile; a batch renders in the child only once the
child is ready, so a run never waits for it to start. Rendering is a pure function of the templates
and the context, so where the child renders changes no byte of any email, and a batch the child
cannot give back (it died, it is stuck, a value does not cross processes) is rendered here instead,
the child not used again. The template limits (time, size, loops) apply in the child as they do here.
Nothing is recorded ``sending`` before its batch is rendered, so none of this touches at most once.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import subprocess
import sys
from collections.abc import Sequence

from dunningops.dunning.render_child import READY, read_frame, write_frame
from dunningops.render.errors import RenderError
from dunningops.render.renderer import RenderedEmail, Renderer, RenderRequest

__all__ = ["MIN_REQUESTS", "RenderWorker"]

log = logging.getLogger(__name__)

# Fewer emails in a batch: rendered here (starting a child costs a few tenths of a second).
MIN_REQUESTS = 50
# How long a batch waits for a child that is still starting before it renders here instead (tests
# wait, so that the child surely renders; a run never does).
WAIT_READY_S = 0.0
# A batch the child has not given back by then is rendered here (the template limits stop any one
# email long before: this is for a child that hangs or was stopped).
BATCH_TIMEOUT_S = 120.0


class RenderWorker(Renderer):
    """A Renderer whose ``render_many`` batches render in a child process once it is ready.

    ``render`` (one email: the to-dos' emails, the letters) always renders here. ``close()`` stops the child.
    ``processes``: False renders everything here (one core, or a caller that wants no child).
    """

    def __init__(
        self,
        templates: dict[str, dict],
        company: dict,
        *,
        plain_text: bool = True,
        processes: bool | None = None,
        min_requests: int | None = None,
    ):
        super().__init__(templates, company, plain_text=plain_text)
        self._args = (templates, company, plain_text)
        self._wanted = _cores() > 1 if processes is None else processes
        self._min_requests = MIN_REQUESTS if min_requests is None else min_requests
        self._child: subprocess.Popen | None = None
        self._ready = False
        self.used = 0  # batches the child rendered (for tests and the benchmarks)

    def render_many(self, requests: Sequence[RenderRequest]) -> list[RenderedEmail | RenderError]:
        if not self._wanted or len(requests) < self._min_requests:
            return super().render_many(requests)
        if self._child is None:
            self._start()
            return super().render_many(requests)  # while the child starts
        try:
            if not self._ready:
                if not self._readable(WAIT_READY_S):
                    return super().render_many(requests)  # not ready yet: this batch too
                if self._receive() != READY:
                    raise EOFError("the child did not start")
                self._ready = True
            assert self._child.stdin is not None
            write_frame(self._child.stdin.fileno(), list(requests))
            if not self._readable(BATCH_TIMEOUT_S):
                raise TimeoutError(f"no answer in {BATCH_TIMEOUT_S:.0f} s")
            got = self._receive()
            if not isinstance(got, list) or len(got) != len(requests):
                raise EOFError("the child answered something else")
        except Exception as exc:  # whatever went wrong there, the batch renders here
            self._give_up(exc)
            return super().render_many(requests)
        self.used += 1
        return got

    def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None
        try:
            child.stdin.close()  # its end of input: it exits
            child.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()
        finally:
            if child.stdout is not None:
                child.stdout.close()

    def _start(self) -> None:
        try:
            # -P: the working directory (a config repository, say) is not on the child's path, so no
            # file there is imported in place of ours. Its own session: a Ctrl-C in the terminal
            # stops this process, which then closes the child.
            self._child = subprocess.Popen(
                [sys.executable, "-P", "-m", "dunningops.dunning.render_child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
                start_new_session=True,
            )
            assert self._child.stdin is not None
            write_frame(self._child.stdin.fileno(), self._args)
        except Exception as exc:  # no child (a limit on processes, no interpreter): render here
            self._give_up(exc)

    def _readable(self, timeout: float) -> bool:
        assert self._child is not None and self._child.stdout is not None
        return bool(select.select([self._child.stdout.fileno()], [], [], timeout)[0])

    def _receive(self) -> object:
        assert self._child is not None and self._child.stdout is not None
        frame = read_frame(self._child.stdout.fileno())
        if frame is None:
            raise EOFError(f"the child ended (exit status {self._child.poll()})")
        return pickle.loads(frame)

    def _give_up(self, exc: BaseException) -> None:
        log.warning("rendering in this process from now on: the render worker failed (%s: %s)", type(exc).__name__, exc)
        self._wanted = False
        child, self._child = self._child, None
        if child is not None:
            child.kill()  # stuck or half-way through a frame: never read from it again
            child.wait()
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()


def _cores() -> int:
    """The cores this process may run on (a container's cpuset, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --- in the child (render_child.py) -----------------------------------------------------------

_renderer: Renderer | None = None


def start_renderer(templates: dict[str, dict], company: dict, plain_text: bool) -> None:
    global _renderer
    _renderer = Renderer(templates, company=company, plain_text=plain_text)


def render_batch(requests: list[RenderRequest]) -> list[RenderedEmail | RenderError]:
    assert _renderer is not None
    return _renderer.render_many(requests)
