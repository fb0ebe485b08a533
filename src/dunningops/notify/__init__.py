"""Notifications to customers besides the dunning plans, and their shared way out (deliver.py).

- debtors.py   T7: the unpaid-invoice notification, sent on demand to the customers a filter selects
- portal.py    A9: payment receipts and failed-payment emails, owed by the ledger import, each once
- deliver.py   the customer, recipients (C6, C9), sender (A2, A6), rendered email, then outgoing.send
"""
