"""Alerts (C9): what the team must know, recorded in the store (the in-app list) and announced on the
configured channels (email through the one outgoing path, a Slack incoming webhook)."""
