"""`dunningops notify`: the unpaid-invoice notification to debtors (T7)."""
