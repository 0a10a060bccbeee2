"""PRIV-2: erase a customer's personal data on request, through a recorded procedure
that keeps the reason (Data Security Law), without breaking the statistics.

What goes: the customer's name, phone, ID number and address; on their tickets the
name and contact, and personal data inside the problem description (masked). What
stays: ticket ids, channels, categories, priorities, timestamps, satisfaction, the
clocks and escalations — so monthly reports (QA-*) and replays give the same numbers.
The ``erasure`` row records who asked, why and when, and a hash of the contact (to
answer "was this person erased?"), never the data itself.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlmodel import Session, select

from aftersales.privacy import mask_text
from models.entities import Customer, Erasure, Notification, Ticket

ERASED = "[erased]"


class ErasureError(ValueError):
    """A request that cannot be carried out; the message names the field."""


def contact_hash(contact: str) -> str:
    return hashlib.sha256(contact.strip().lower().encode()).hexdigest()


def erase_customer(
    session: Session,
    *,
    reason: str,
    requested_by: str,
    now: datetime,
    customer_id: str | None = None,
    contact: str | None = None,
) -> Erasure:
    """Erase by customer id and/or contact (a ticket from an unregistered caller has only
    the contact). Idempotent: erasing twice finds nothing more to erase."""
    if not reason.strip():
        raise ErasureError("reason: required — the Data Security Law asks for the reason")
    if not requested_by.strip():
        raise ErasureError("requested_by: required — who asked for the erasure")
    if not customer_id and not contact:
        raise ErasureError("customer_id/contact: give at least one")
    contacts = {contact} if contact else set()
    names: set[str] = set()
    if customer_id:
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise ErasureError(f"customer_id: no customer {customer_id!r}")
        if customer.phone != ERASED:
            contacts.add(customer.phone)
        if customer.name != ERASED:
            names.add(customer.name)
        customer.name = customer.phone = ERASED
        customer.id_number = customer.address = None
        session.add(customer)
    q = select(Ticket)
    conditions = []
    if customer_id:
        conditions.append(Ticket.customer_id == customer_id)
    if contacts:
        conditions.append(Ticket.contact.in_(sorted(contacts)))
    from sqlalchemy import or_

    tickets = list(session.exec(q.where(or_(*conditions))).all())
    names |= {t.customer_name for t in tickets if t.customer_name != ERASED}
    for t in tickets:
        t.customer_name = ERASED
        t.contact = ERASED
        t.description = mask_text(t.description)
        session.add(t)
        # the stored messages were masked when rendered (PRIV-1) but carry the name
        for n in session.exec(select(Notification).where(Notification.ticket_id == t.id)):
            for name in sorted(names, key=len, reverse=True):
                n.title = n.title.replace(name, ERASED)
                n.body = n.body.replace(name, ERASED)
            session.add(n)
    record = Erasure(
        customer_id=customer_id,
        contact_hash=contact_hash(contact) if contact else None,
        reason=reason.strip(),
        requested_by=requested_by.strip(),
        tickets_affected=len(tickets),
        erased_at=now,
    )
    session.add(record)
    session.flush()
    return record
