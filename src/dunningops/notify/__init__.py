"""Notifications to customers besides the dunning plans, and their shared way out (deliver.py).

- debtors.py   T7: the unpaid-invoice notification, sent on demand to the customers a filter selects
- owed.py      A9: what the ledger import owes, in its transaction (pure SQL)
- portal.py    A9: payment receipts and failed-payment emails sent, each once
- deliver.py   the customer, recipients (C6, C9), sender (A2, A6), rendered email, then outgoing.send
"""
