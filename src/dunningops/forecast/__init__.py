"""The send cycle simulated over a window: `dunningops forecast` and `dunningops plan --impact`."""
