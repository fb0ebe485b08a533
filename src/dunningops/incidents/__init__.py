"""T8: customer incidents (tickets, e.g. an invoice dispute), their notifications and their ratings."""
