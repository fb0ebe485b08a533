"""The pull-request workflow's own steps: the sticky plan comment and the job summary.

Nothing here needs the store: the steps take files that `validate` and `plan` wrote, and the
GitHub Actions environment (``GITHUB_*`` variables) a runner gives every step.
"""
