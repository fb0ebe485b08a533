"""The ledger: customers, contacts, invoices and payments imported from the accounting system (C4).

Imports ``spec`` (types) and ``store``; never ``reconcile`` or the cycles.
"""
