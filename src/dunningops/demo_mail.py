"""The demo's incoming mail: what customers send back after a send cycle.

Built from the reminders the cycle really sent (their Message-IDs and addresses), as the
customers' mail clients and servers would write them: a reply quoting the reminder, an
out-of-office auto-reply, a delivery status notification (RFC 3464) for a dead mailbox, and a
message from somebody who is nobody's contact.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunningops.store.schema import MessageRow

messages = MessageRow.__table__


def _sent_reminders(session: Session, limit: int) -> list:
    return list(
        session.execute(
            select(messages.c.message_id, messages.c.from_address, messages.c.to_addresses, messages.c.subject)
            .where(messages.c.kind == "reminder", messages.c.status == "sent")
            .order_by(messages.c.id)
            .limit(limit)
        )
    )


def _reply(sent, at: datetime) -> bytes:
    msg = EmailMessage()
    customer = sent.to_addresses[0]
    msg["From"] = customer
    msg["To"] = sent.from_address
    msg["Subject"] = f"RE: {sent.subject}"
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = make_msgid(domain=customer.split("@")[1])
    msg["In-Reply-To"] = sent.message_id
    msg["References"] = sent.message_id
    msg.set_content(
        "Bonjour,\n\nNous avons réglé cette facture par virement hier, vous devriez le recevoir d'ici deux jours.\n\n"
        f"Cordialement,\nLe service comptable\n\nLe {at:%d/%m/%Y} à 08:41, {sent.from_address} a écrit :\n"
        f"> Bonjour,\n> Sauf erreur de notre part, la facture ci-dessous reste impayée.\n"
    )
    return bytes(msg)


def _auto_reply(sent, at: datetime) -> bytes:
    msg = EmailMessage()
    customer = sent.to_addresses[0]
    msg["From"] = customer
    msg["To"] = sent.from_address
    msg["Subject"] = f"Réponse automatique : {sent.subject}"
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = make_msgid(domain=customer.split("@")[1])
    msg["In-Reply-To"] = sent.message_id
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("Bonjour,\n\nJe suis absente du bureau jusqu'au lundi 7 décembre inclus.\n")
    return bytes(msg)


def _bounce(sent, at: datetime) -> bytes:
    # Written out as Postfix writes it: the standard library builds no multipart/report.
    dead, boundary, date = sent.to_addresses[0], "=_dsn_" + sent.message_id.strip("<>").split("@")[0][:16], format_datetime(at)
    text = f"""From: MAILER-DAEMON@mx.example-isp.fr (Mail Delivery System)
To: {sent.from_address}
Subject: Undelivered Mail Returned to Sender
Date: {date}
Message-ID: {make_msgid(domain="mx.example-isp.fr")}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example-isp.fr.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{dead}>: host mx.example-isp.fr said: 550 5.1.1 <{dead}>: Recipient address
    rejected: User unknown

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example-isp.fr
Arrival-Date: {date}

Final-Recipient: rfc822; {dead}
Original-Recipient: rfc822;{dead}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example-isp.fr
Diagnostic-Code: smtp; 550 5.1.1 <{dead}>: Recipient address rejected: User unknown

--{boundary}
Content-Type: text/rfc822-headers

From: {sent.from_address}
To: {dead}
Subject: {sent.subject}
Message-ID: {sent.message_id}

--{boundary}--
"""
    return text.replace("\n", "\r\n").encode("utf-8")


def _stranger(to: str, at: datetime) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Prospect <contact@nouveau-client.fr>"
    msg["To"] = to
    msg["Subject"] = "Demande de devis"
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = make_msgid(domain="nouveau-client.fr")
    msg.set_content("Bonjour,\n\nPourriez-vous nous envoyer un devis pour 40 tabourets ?\n\nMerci.\n")
    return bytes(msg)


def customer_mail(session: Session, at: datetime) -> list[tuple[str, bytes]]:
    """What comes back after the first reminders: (what it is, raw bytes), in order of arrival."""
    sent = _sent_reminders(session, 3)
    if not sent:
        return []
    out = [("a reply", _reply(sent[0], at + timedelta(hours=1)))]
    if len(sent) > 1:
        out.append(("a bounce", _bounce(sent[1], at + timedelta(minutes=2))))
    if len(sent) > 2:
        out.append(("an out-of-office reply", _auto_reply(sent[2], at + timedelta(minutes=5))))
    out.append(("a message from an unknown sender", _stranger(sent[0].from_address, at + timedelta(hours=2))))
    return out
