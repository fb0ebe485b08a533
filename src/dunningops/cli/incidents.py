"""`dunningops incident`: open, close, list, show and import customer incidents (T8)."""
