"""`dunningops fmt`: canonical key order and indentation, comments kept, content never changed."""

from __future__ import annotations

import random
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dunningops.cli import cli
from dunningops.errors import ConfigError
from dunningops.reconcile.objects import desired_objects
from dunningops.spec import load_config
from dunningops.spec import fmt
from dunningops.spec.fmt import format_config, format_text

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"

# Keys out of order at every level, with a file header, comments above keys, end-of-line
# comments, blank lines between list items, flow style, a free-form mapping (assign.where).
UNORDERED = """\
# Team and plans, written out of order.

# The plans (this paragraph is theirs, the one above is the file's).
plans:
  - name: Standard   # shown in the app
    id: standard
    steps:
      # First a friendly email.
      - template: courtesy
        action: email
        at: -3d
        id: courtesy
        # Sent from the billing alias.
        from: alias.billing
        send: auto

      - id: call
        assignee: account_manager
        action: call
        at: 10d
    assign:
      where:
        currency: [EUR]
        country: [FR]
version: 1
members:
  - email: ann@example.com
    id: ann
    name: Ann
"""

CANONICAL = """\
# Team and plans, written out of order.

version: 1
members:
  - id: ann
    email: ann@example.com
    name: Ann
# The plans (this paragraph is theirs, the one above is the file's).
plans:
  - id: standard
    name: Standard   # shown in the app
    assign:
      where:
        currency: [EUR]
        country: [FR]
    steps:
      # First a friendly email.
      - id: courtesy
        at: -3d
        action: email
        send: auto
        # Sent from the billing alias.
        from: alias.billing
        template: courtesy

      - id: call
        at: 10d
        action: call
        assignee: account_manager
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    """A copy of the repository's example config, taken now (it may still be changing)."""
    return Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))


def test_reorders_keys_as_the_models_declare_and_keeps_comments() -> None:
    assert format_text(UNORDERED) == CANONICAL


def test_comment_above_a_key_moves_with_it_at_every_kind_of_place() -> None:
    # First key of a nested mapping (below the parent's end-of-line comment), first
    # key of a list item (the comment goes above the `- `), a mapping of models
    # (Template.locales) whose languages keep their order, quotes kept as written.
    text = """\
    settings:   # who we are
      # Where mail comes from.
      deliverability:
        fallback_sender: ar@example.com
      # The company.
      company:
        name: Example SAS
        brand_color: "#0b4f6c"  # quoted
        timezone: 'Europe/Paris'
        country: FR
    templates:
      - name: Courtesy
        # The id never changes.
        id: courtesy
        locales:
          fr: {body: courtesy.fr.txt.j2, subject: Rappel}
          en:
            body: courtesy.en.txt.j2
            subject: "Payment due soon"
    """
    assert format_text(textwrap.dedent(text)) == textwrap.dedent("""\
    settings:   # who we are
      # The company.
      company:
        name: Example SAS
        country: FR
        timezone: 'Europe/Paris'
        brand_color: "#0b4f6c"  # quoted
      # Where mail comes from.
      deliverability:
        fallback_sender: ar@example.com
    templates:
      # The id never changes.
      - id: courtesy
        name: Courtesy
        locales:
          fr: {subject: Rappel, body: courtesy.fr.txt.j2}
          en:
            subject: "Payment due soon"
            body: courtesy.en.txt.j2
    """)


def test_comment_after_a_block_scalar_moves_with_the_next_key() -> None:
    # After a `|` block, ruamel keeps the next line's indentation apart from the comment text.
    text = """\
    aliases:
      - id: billing
        signature: |-
          Billing team
          Example SAS
        # Never changes: a new address is a new alias.
        email: billing@example.com
        display_name: Billing
    """
    assert format_text(textwrap.dedent(text)) == textwrap.dedent("""\
    aliases:
      - id: billing
        # Never changes: a new address is a new alias.
        email: billing@example.com
        display_name: Billing
        signature: |-
          Billing team
          Example SAS
    """)


def test_aliased_fields_and_unknown_keys() -> None:
    # `from` and `import` are the aliases of from_ and import_; an unknown key
    # (validation reports it) keeps its place after the known ones.
    text = """\
    moved:
      - to: alias.billing
        frm: typo
        from: alias.invoices
    settings:
      replies: {import: all, manage: true}
    """
    assert format_text(textwrap.dedent(text)) == textwrap.dedent("""\
    settings:
      replies: {manage: true, import: all}
    moved:
      - from: alias.invoices
        to: alias.billing
        frm: typo
    """)


def test_indentation_is_normalised_and_long_lines_are_not_folded() -> None:
    subject = '"Relance : ' + "facture en attente de règlement, " * 6 + '{{ customer.name }}"'
    text = f"members:\n- id: ann\n  email: ann@example.com\n  name: Ann\ntemplates:\n-   id: t\n    name: T\n    locales:\n        fr:\n            subject: {subject}\n            body: t.txt\n"
    assert format_text(text) == (
        "members:\n  - id: ann\n    email: ann@example.com\n    name: Ann\n"
        f"templates:\n  - id: t\n    name: T\n    locales:\n      fr:\n        subject: {subject}\n        body: t.txt\n"
    )


def test_formatting_is_idempotent(tmp_path: Path) -> None:
    path = write(tmp_path, "plans.yaml", UNORDERED)
    assert format_config(tmp_path) == [path]
    assert path.read_text(encoding="utf-8") == CANONICAL
    assert format_text(CANONICAL) == CANONICAL
    assert format_config(tmp_path) == []


def test_canonical_files_and_blocks_bodies_are_not_rewritten(tmp_path: Path) -> None:
    canonical = write(tmp_path, "plans.yaml", CANONICAL)
    # A blocks body is a YAML list, not a config mapping: it is left exactly as written.
    body = write(tmp_path, "templates/notice.fr.blocks.yaml", "-   type: heading\n    text:   'Hello'\n")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (canonical, body)}
    assert format_config(tmp_path) == []
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (canonical, body)} == before


def test_example_config_keeps_its_desired_state(example_config: Path) -> None:
    before = desired_objects(load_config(example_config))
    format_config(example_config)
    assert desired_objects(load_config(example_config)) == before
    assert format_config(example_config) == []  # and a second run has nothing left to do


def test_example_config_keeps_every_comment(example_config: Path) -> None:
    def comments(root: Path) -> list[str]:
        lines = (line.split("#", 1)[1] for p in sorted(root.rglob("*.yaml")) for line in p.read_text(encoding="utf-8").splitlines() if "#" in line)
        return sorted(lines)

    before = comments(example_config)
    format_config(example_config)
    assert comments(example_config) == before


@pytest.mark.parametrize("seed", range(8))
def test_shuffled_keys_come_back_to_the_same_text_with_their_comments(
    example_config: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # Shuffle the keys of every mapping of the (formatted) example config with fmt's own
    # comment-moving reorder, then format: the exact text must come back. The first key
    # of a file or list item stays first: a comment above it belongs to the file or item.
    format_config(example_config)
    canonical = {path: path.read_text(encoding="utf-8") for path in sorted(example_config.rglob("*.yaml"))}
    rnd, reorder = random.Random(seed), fmt._reorder

    def shuffled(node: Any, order: list[Any], at: Any) -> None:
        fixed = order[:1] if at != "key" else []
        rest = order[len(fixed):]
        rnd.shuffle(rest)
        reorder(node, fixed + rest, at)

    with monkeypatch.context() as patch:
        patch.setattr(fmt, "_reorder", shuffled)
        for path, text in canonical.items():
            path.write_text(format_text(text) or text, encoding="utf-8")
    format_config(example_config)
    assert {path: path.read_text(encoding="utf-8") for path in canonical} == canonical


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config directory not found"):
        format_config(tmp_path / "nowhere")


def test_check_exits_1_and_changes_nothing_then_0_once_formatted(tmp_path: Path) -> None:
    path = write(tmp_path, "plans.yaml", UNORDERED)
    runner = CliRunner()

    result = runner.invoke(cli, ["fmt", "--config", str(tmp_path), "--check"])
    assert result.exit_code == 1
    assert f"would reformat {path}" in result.output
    assert path.read_text(encoding="utf-8") == UNORDERED

    assert runner.invoke(cli, ["fmt", "--config", str(tmp_path)]).exit_code == 0
    assert path.read_text(encoding="utf-8") == CANONICAL
    assert runner.invoke(cli, ["fmt", "--config", str(tmp_path), "--check"]).exit_code == 0


def test_invalid_yaml_is_a_config_error_with_file_and_line_and_nothing_is_written(tmp_path: Path) -> None:
    unordered = write(tmp_path, "a.yaml", UNORDERED)
    write(tmp_path, "b.yaml", "members:\n  - id: ann\n    name: [Ann\n")

    with pytest.raises(ConfigError) as caught:
        format_config(tmp_path)
    (issue,) = caught.value.issues
    assert (issue.file, issue.line) == ("b.yaml", 4)
    assert issue.message.startswith("invalid YAML: ")
    assert unordered.read_text(encoding="utf-8") == UNORDERED

    result = CliRunner().invoke(cli, ["fmt", "--config", str(tmp_path)])
    assert result.exit_code == 1
    assert "b.yaml:4: invalid YAML" in result.output


def test_duplicate_key_is_refused_rather_than_merged(tmp_path: Path) -> None:
    write(tmp_path, "team.yaml", "members:\n  - id: ann\n    id: bob\n")
    with pytest.raises(ConfigError, match=r"team.yaml:3: invalid YAML: found duplicate key"):
        format_config(tmp_path)
