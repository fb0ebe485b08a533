"""The send cycle: what is due (schedule), to whom (recipients), from whom (senders), sent or left to people (to-dos).

Imports ``spec``, ``store``, ``ledger`` (plan assignment), ``render`` and ``transport``; never ``reconcile`` or ``cli``.
"""
