"""One pooled SMTP connection, and the staged mail transaction that sends a message at most once.

``Session.run`` sends one message as MAIL FROM, one RCPT TO per recipient,
DATA, then the dot-stuffed bytes: the same round trips as
``smtplib.sendmail``, but each answer is checked where it comes, so a
failure is known to be before or after the message was handed over. That
decides what may be tried again:

* Before DATA is written nothing can have been delivered: a refusal (4xx,
  421 included), a dropped connection or a timeout at MAIL or RCPT is tried
  again on a fresh connection with backoff, up to ``max_attempts``, then the
  message is ``deferred``. A pooled connection the server closed while idle
  is reopened at once, without spending an attempt.
* A 4xx or 5xx answer to DATA or to the final ".": the server clearly did
  not take it. 4xx is tried again with the same bytes (same Message-ID);
  5xx is ``failed``.
* From the moment DATA is written, a failure without a clear answer
  (timeout, dropped or reset connection, a reply that is no SMTP reply)
  makes the message ``unknown``: it may have arrived (RFC 1047), so it is
  never tried again. A customer must not get the same reminder twice.
* 2xx at the end: ``sent``. A 5xx at RCPT fails that recipient; it counts
  against the address (``permanent_recipients``, C9) only when its enhanced
  status code is 5.1.x or 5.2.x, or when the server gives none.
"""

from __future__ import annotations

import logging
import re
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dunningops.transport.base import SendResult, Status
from dunningops.transport.message import OutgoingMessage, envelope_sender, recipients, to_bytes

if TYPE_CHECKING:
    from dunningops.transport.smtp import SmtpTransport

log = logging.getLogger(__name__)

Answer = tuple[int, str]


def text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class Unusable(Exception):
    """The server cannot be used (login, TLS, 5xx greeting, down): defer the rest instead of trying each message.

    ``lasting`` problems (credentials, TLS, configuration) hold for the rest
    of the transport's life and become its ``fatal`` error (``advice`` says
    what to change), so that a wrong password costs a failed login or two
    per run, not a handful per batch; the others (the server is down or
    refuses service) are tried again once ``backoff_max`` has passed, not
    with every batch (a run's batches follow each other within seconds).
    """

    def __init__(self, code: int | None, detail: str, *, lasting: bool = True, advice: str = ""):
        super().__init__(detail)
        self.code, self.detail, self.lasting, self.advice = code, detail, lasting, advice
        self.since = time.monotonic()


class Temporary(Exception):
    """A connection could not be set up now (refused, timeout, 4xx greeting): worth a retry."""

    def __init__(self, code: int | None, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


class _Refused(Exception):
    """A clear answer before or at the end of DATA: this exchange delivered nothing. ``final``: 5xx."""

    def __init__(self, code: int | None, detail: str, *, final: bool):
        super().__init__(detail)
        self.code, self.detail, self.final = code, detail, final


class _Unknown(Exception):
    """DATA was written and no clear answer came: the message may have been delivered."""

    def __init__(self, code: int | None, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


# RFC 3463 enhanced status codes: class.subject.detail. Subjects 1 (addressing) and 2 (mailbox)
# blame the recipient; 7 (security, policy: "5.7.1 relay denied"), 3, 4, 5 and 6 blame the
# sender's setup or the content, so the contact stays valid (C9 marks only the address's faults).
_ENHANCED = re.compile(rb"[245]\.(\d{1,3})\.\d{1,3}(?![.\d])")


def address_at_fault(reply: bytes | str) -> bool:
    """Does this 5xx answer to RCPT say the address is wrong? Without an enhanced code, assume so (as ever)."""
    found = _ENHANCED.match(reply if isinstance(reply, bytes) else reply.encode("utf-8", "replace"))
    return found is None or found.group(1) in (b"1", b"2")


# A dot-atom address (RFC 5322 3.4.1) with a plain host name: what smtplib's ``quoteaddr`` turns
# into ``<address>`` unchanged. It parses every address with ``email.utils.parseaddr`` (pure
# Python, about a fifth of a message's sending on loopback); such an address needs no parsing.
# Anything else (the null sender, an address literal, quoted local parts) still goes through it.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def envelope_command(smtp: smtplib.SMTP, verb: str, address: str, options: tuple[str, ...] = ()) -> tuple[int, bytes]:
    """``MAIL FROM`` (verb ``mail``) or ``RCPT TO`` (``rcpt``): what ``smtp.mail`` / ``smtp.rcpt`` send and return."""
    if not _PLAIN_ADDRESS.fullmatch(address):
        return smtp.mail(address, options) if verb == "mail" else smtp.rcpt(address, options)
    # As smtplib writes it: options only on an ESMTP session (ours are never SMTPUTF8).
    extra = " " + " ".join(options) if options and smtp.does_esmtp else ""
    smtp.putcmd(verb, f"{'FROM' if verb == 'mail' else 'TO'}:<{address}>{extra}")
    return smtp.getreply()


def wire_form(payload: bytes) -> bytes:
    """What follows the 354: dot-stuffed (RFC 5321 4.5.2) and ended by CRLF "." CRLF, as ``smtplib.SMTP.data``."""
    # A dot at the start of a line gets another. bytes.replace, not smtplib's regex: quoted-printable
    # bodies have such lines in most messages, and the regex cost ~60 µs of 10 kB per message.
    payload = payload.replace(b"\n.", b"\n..")
    if payload.startswith(b"."):
        payload = b"." + payload
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    return payload + b".\r\n"


@dataclass(slots=True)
class _Progress:
    """Where one message stands across its attempts (recipients in envelope order)."""

    pending: list[str]  # still to reach
    delivered: list[str] = field(default_factory=list)  # took it: 2xx at the end of DATA
    bounced: dict[str, Answer] = field(default_factory=dict)  # 5xx at RCPT, the address's fault (C9)
    refused: dict[str, Answer] = field(default_factory=dict)  # 5xx at RCPT for another reason (policy)


def _refusals(answers: dict[str, Answer]) -> tuple[int, str]:
    items = list(answers.items())
    listed = "; ".join(f"<{rcpt}> {code} {reply}" for rcpt, (code, reply) in items)
    return items[0][1][0], f"refused at RCPT: {listed}"


@dataclass(slots=True)
class _Presented:
    """The next message, whose MAIL and RCPTs went out with this one's end: their answers are still to be read."""

    msg: OutgoingMessage
    payload: bytes  # its bytes, built once: every attempt sends the same
    answers: int  # owed on the connection: MAIL's, then one per RCPT


def _envelope_lines(sender: str, options: tuple[str, ...], rcpts: list[str]) -> str:
    """MAIL FROM and one RCPT TO per recipient, as one pipelined group (plain addresses only)."""
    extra = " " + " ".join(options) if options else ""
    return f"MAIL FROM:<{sender}>{extra}\r\n" + "".join(f"RCPT TO:<{rcpt}>\r\n" for rcpt in rcpts)


class Session:
    """One worker's connection, opened on first use, reopened when it drops."""

    def __init__(self, transport: SmtpTransport):
        self.t = transport
        self.smtp: smtplib.SMTP | None = None
        self.reused = False  # has this connection already carried a message?
        self._presented: _Presented | None = None  # only ever on the open connection (_forget clears it)

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()  # the server is gone already: nothing to say goodbye to
            self._forget()

    def run(self, msg: OutgoingMessage, after: OutgoingMessage | None = None) -> SendResult:
        """Send ``msg``; ``after``, the message this session sends next, may have its envelope sent with ``msg``'s end."""
        presented = self._presented
        if presented is not None and presented.msg is not msg:
            self._abandon_presented()  # not what was announced (the pool never does this): keep the answers in step
            presented = None
        if presented is not None:
            payload = presented.payload
        else:
            try:
                payload = to_bytes(msg)
            except ValueError as exc:
                # The message itself is wrong (no server involved): code None tells it from a bounce.
                return SendResult(msg.message_id, "failed", None, f"cannot write this message: {exc}")
        result = self._deliver(msg, payload, after)
        if self._presented is not None and self._presented.msg is msg:
            self._abandon_presented()  # its answers were never read (deferred before any exchange)
        return result

    # --- one message, attempt after attempt ------------------------------------------

    def _deliver(self, msg: OutgoingMessage, payload: bytes, after: OutgoingMessage | None) -> SendResult:
        sender = envelope_sender(msg)
        # Built once: every attempt sends the very same bytes (same Message-ID, same Date).
        wire = wire_form(payload)
        state = _Progress(recipients(msg))
        last: tuple[int | None, str] = (None, "")
        free_reconnect = True
        attempt = 0
        while True:
            attempt += 1
            was_reused = False
            if (problem := self.t._unusable) is not None:
                return self._result(msg, state, "deferred", (problem.code, problem.detail))
            try:
                if self.smtp is None or self.smtp.sock is None:
                    self._open()
                was_reused, self.reused = self.reused, True
                temporary = self._transaction(msg, sender, state, wire, len(payload), after)
                if not temporary:
                    return self._result(msg, state, "failed")  # sent, unless every recipient was refused
                last = _refusals(temporary)
            except _Unknown as exc:
                self._drop()
                log.warning("SMTP %s: %s may have been delivered, not sent again: %s", self.t.where, msg.message_id, exc.detail)
                return self._result(msg, state, "unknown", (exc.code, exc.detail))
            except _Refused as exc:
                last = (exc.code, exc.detail)
                if exc.code == 530:
                    # "Authentication required": our configuration, not this message, is wrong.
                    problem = Unusable(
                        530,
                        f"the SMTP server {self.t.where} requires AUTH: {exc.detail}",
                        advice="set username_env and password_env in settings.sending.transport",
                    )
                    self.t._mark_unusable(problem)
                    return self._result(msg, state, "deferred", (problem.code, problem.detail))
                if exc.final:
                    return self._result(msg, state, "failed", last)
                if not state.pending:
                    return self._result(msg, state, "failed")
            except Unusable as exc:
                self.t._mark_unusable(exc)
                return self._result(msg, state, "deferred", (exc.code, exc.detail))
            except Temporary as exc:
                last = (exc.code, exc.detail)
                if attempt >= self.t.max_attempts and self.t._no_connection_open():
                    # No worker holds a connection: the server is down, not busy.
                    self.t._mark_unusable(Unusable(exc.code, exc.detail, lasting=False))
            except OSError as exc:  # before DATA (SMTPServerDisconnected, reset, timeout): nothing delivered
                self._drop()
                if was_reused and free_reconnect:
                    # A pooled connection the server closed while idle: reconnect at once, no attempt spent.
                    free_reconnect = False
                    attempt -= 1
                    continue
                last = (None, f"connection to {self.t.where} lost before DATA: {exc or type(exc).__name__}")
            if attempt >= self.t.max_attempts:
                return self._result(msg, state, "deferred", last, gave_up=attempt)
            wait = self.t._backoff(attempt)
            log.info(
                "SMTP %s: %s; %s tried %d of %d times, next in %.2fs",
                self.t.where,
                last[1],
                msg.message_id,
                attempt,
                self.t.max_attempts,
                wait,
            )
            time.sleep(wait)

    def _transaction(
        self, msg: OutgoingMessage, sender: str, state: _Progress, wire: bytes, size: int, after: OutgoingMessage | None
    ) -> dict[str, Answer]:
        """One MAIL / RCPT / DATA exchange for ``state.pending``; returns the recipients refused with 4xx.

        Updates ``state`` (delivered, refused, what is still pending). Raises
        ``_Refused`` for a clear no (nothing delivered by this exchange),
        ``_Unknown`` once DATA is written without a clear answer, and
        ``OSError`` when the connection fails before DATA (nothing delivered).
        """
        smtp = self.smtp
        assert smtp is not None
        pending = list(state.pending)
        presented, self._presented = self._presented, None
        if presented is not None and presented.msg is msg:
            # Its MAIL and RCPTs (all its recipients: this is its first attempt) went out with the
            # previous message's end: only their answers are left to read.
            answers = self._answers(smtp, presented.answers)
        else:
            options = (f"SIZE={size}",) if smtp.does_esmtp and smtp.has_extn("size") else ()
            answers = self._envelope(smtp, sender, options, pending)
        code, reply = next(answers)
        if code != 250:
            if self.smtp is not None:  # None: the connection went while the pipelined answers were read
                self._end_transaction(code)
            raise _Refused(code if code > 0 else None, f"refused at MAIL FROM <{sender}>: {text(reply)}", final=500 <= code < 600)
        accepted: list[str] = []
        temporary: dict[str, Answer] = {}
        for rcpt in pending:
            code, reply = next(answers)
            if code in (250, 251):
                accepted.append(rcpt)
            elif 500 <= code < 600:
                (state.bounced if address_at_fault(reply) else state.refused)[rcpt] = (code, text(reply))
            elif code == 421 or not 400 <= code < 600:
                # The server is closing (or talks nonsense) before DATA: nothing delivered, every
                # recipient not refused for good is tried again.
                self._drop()
                state.pending = [r for r in state.pending if r not in state.bounced and r not in state.refused]
                raise _Refused(
                    code if code > 0 else None,
                    f"the server closed the session at RCPT <{rcpt}>: {code} {text(reply)}",
                    final=False,
                )
            else:
                temporary[rcpt] = (code, text(reply))
        state.pending = [r for r in state.pending if r in temporary or r in accepted]
        if not accepted:
            self._reset()
            state.pending = list(temporary)
            return temporary
        # From here on the bytes may reach the server: without a clear answer, the message is "unknown".
        try:
            smtp.putcmd("data")
            code, reply = smtp.getreply()
        except OSError as exc:
            raise _Unknown(None, f"connection to {self.t.where} lost at DATA: {exc or type(exc).__name__}") from None
        if code != 354:
            if 400 <= code < 600:
                self._end_transaction(code)
                raise _Refused(code, f"refused at DATA: {text(reply)}", final=code >= 500)
            raise _Unknown(code if code > 0 else None, f"{self.t.where} answered DATA with {text(reply)!r}")
        try:
            smtp.send(wire + self._present(smtp, after))
            code, reply = smtp.getreply()
        except OSError as exc:  # timeout, drop, reset, an overlong reply line
            raise _Unknown(
                None, f"no answer from {self.t.where} once the message was sent: {exc or type(exc).__name__}"
            ) from None
        if 200 <= code < 300:
            state.delivered.extend(accepted)
            state.pending = list(temporary)
            return temporary
        if 400 <= code < 600:
            self._drain_presented()  # the next message's answers first, so that RSET's is RSET's
            if self.smtp is not None:
                self._end_transaction(code)  # RSET also ends the next message's transaction: it starts again
            raise _Refused(code, f"refused at DATA (end of message): {text(reply)}", final=code >= 500)
        raise _Unknown(code if code > 0 else None, f"{self.t.where} answered the message with {text(reply)!r}, not an SMTP reply")

    def _envelope(
        self, smtp: smtplib.SMTP, sender: str, options: tuple[str, ...], rcpts: list[str]
    ) -> Iterator[tuple[int, bytes]]:
        """The answers to MAIL FROM, then to each RCPT TO, in order, as the caller asks for them.

        Without PIPELINING each command is written when its answer is asked for, so nothing
        follows a refused MAIL. With it (RFC 2920) MAIL and every RCPT go in one write and
        their answers are read in one go: a round trip per recipient less, most of a
        message's sending on a nearby server. DATA is never in the group: it is written
        on its own once a recipient was accepted, so that the moment the message counts as
        handed over is the same either way.
        """
        plain = _PLAIN_ADDRESS.fullmatch
        if not (smtp.does_esmtp and smtp.has_extn("pipelining") and plain(sender) and all(map(plain, rcpts))):
            yield envelope_command(smtp, "mail", sender, options)
            for rcpt in rcpts:
                yield envelope_command(smtp, "rcpt", rcpt)
            return
        smtp.send(_envelope_lines(sender, options, rcpts))
        yield from self._answers(smtp, len(rcpts) + 1)

    def _answers(self, smtp: smtplib.SMTP, count: int) -> Iterator[tuple[int, bytes]]:
        """The answers to a pipelined MAIL and its RCPTs (``count`` in all), read when the first is asked for."""
        answers: list[tuple[int, bytes]] = []
        try:
            for _ in range(count):
                code, reply = smtp.getreply()
                answers.append((code, reply))
                if code == 421 or not 200 <= code < 600:
                    break  # the server is closing, or talks nonsense: the caller drops the connection here
        except OSError:
            if not answers or answers[0][0] == 250:
                raise  # lost before DATA, as without pipelining: nothing delivered, tried again
            self._drop()  # MAIL was refused already: that answer stands; this connection carries nothing more
        yield from answers

    def _present(self, smtp: smtplib.SMTP, after: OutgoingMessage | None) -> bytes:
        """The envelope of ``after`` to write with this message's end (RFC 2920: the next MAIL may follow
        the final "."), or nothing. Only its MAIL and RCPTs: its DATA, and so its bytes, wait for their answers.

        Saves the round trip of the next message's envelope. Whatever becomes of this message, the
        next one has delivered nothing: a lost connection takes the envelope with it (``_forget``),
        and a refusal of this message reads its answers and RSETs before anything else.
        """
        if after is None or not (smtp.does_esmtp and smtp.has_extn("pipelining")):
            return b""
        sender, rcpts = envelope_sender(after), recipients(after)
        if not (_PLAIN_ADDRESS.fullmatch(sender) and all(map(_PLAIN_ADDRESS.fullmatch, rcpts))):
            return b""
        try:
            payload = to_bytes(after)
        except ValueError:
            return b""  # run() reports what is wrong with it
        options = (f"SIZE={len(payload)}",) if smtp.has_extn("size") else ()
        self._presented = _Presented(after, payload, len(rcpts) + 1)
        return _envelope_lines(sender, options, rcpts).encode("ascii")

    def _drain_presented(self) -> None:
        """Read the answers still owed to a presented envelope, so that the next answer read is the next command's."""
        presented, self._presented = self._presented, None
        if presented is None or self.smtp is None:
            return
        try:
            for _ in range(presented.answers):
                code, _ = self.smtp.getreply()
                if code == 421 or not 200 <= code < 600:
                    self._drop()  # closing, or out of step: this connection carries nothing more
                    return
        except OSError:
            self._drop()

    def _abandon_presented(self) -> None:
        """A presented envelope that will not be followed by its DATA: answers read, then RSET (its message starts again)."""
        self._drain_presented()
        if self.smtp is not None:
            self._reset()

    def _end_transaction(self, code: int) -> None:
        """After a refusal: RSET, so that the next message on this connection starts clean.

        421 (the server is closing) or an answer that is no SMTP reply: drop the connection instead.
        """
        if code == 421 or not 400 <= code < 600:
            self._drop()
        else:
            self._reset()

    def _reset(self) -> None:
        try:
            code, _ = self.smtp.rset()  # type: ignore[union-attr]
        except OSError:
            code = 0
        if code != 250:
            self._drop()  # a connection in an unknown state carries nothing more

    # --- the outcome ---------------------------------------------------------------------

    def _result(
        self,
        msg: OutgoingMessage,
        state: _Progress,
        status: Status,
        problem: tuple[int | None, str] | None = None,
        *,
        gave_up: int = 0,
    ) -> SendResult:
        """The result once nothing more will be tried for this message.

        ``status`` is what became of it if no recipient got it; with no
        ``problem`` and ``failed``, every recipient was refused for good.
        """
        refusals = {}
        if state.bounced or state.refused:
            refusals = {r: a for r in recipients(msg) if (a := state.bounced.get(r) or state.refused.get(r))}
        details = [_refusals(refusals)[1]] if refusals else []
        if problem is not None:
            why = problem[1]
            if gave_up:
                why = f"gave up after {gave_up} attempts: {why}"
            if state.delivered and state.pending:
                maybe = "perhaps " if status == "unknown" else ""
                why = f"{maybe}not delivered to {', '.join(state.pending)}: {why}"
            details.append(why)
        detail = "; ".join(details)
        permanent = list(state.bounced)
        first = next(iter(refusals.values()), None)
        if state.delivered:
            # Some recipients got it: never anything else, or the caller would send it again to them.
            return SendResult(msg.message_id, "sent", first[0] if first else 250, detail, permanent)
        if problem is None:
            assert first is not None and status == "failed"
            return SendResult(msg.message_id, "failed", first[0], detail, permanent)
        return SendResult(msg.message_id, status, problem[0], detail, permanent)

    # --- the connection ------------------------------------------------------------------

    def _open(self) -> None:
        self.smtp = self.t._connect()
        self.reused = False
        self.t._count_connection(+1)
        log.debug("SMTP connection to %s opened", self.t.where)

    def _forget(self) -> None:
        self._presented = None  # its envelope went with the connection: nothing of it can be delivered
        if self.smtp is not None:
            self.smtp = None
            self.t._count_connection(-1)

    def _drop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
        self._forget()
        self.reused = False
