"""`dunningops daemon`: the cycles on a schedule, one HTTP server, structured logs, metrics."""
