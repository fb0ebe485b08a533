"""The anchor of the plan benchmarks (performance.md): start Python, import yaml, parse the same YAML.

It runs in a fresh interpreter of the same environment, so start-up, the file
walk and PyYAML's C loader are all in it, as they are in `dunningops plan`.
It parses every ``*.yaml`` file of the config directory (block-design template
bodies included, since plan parses them too) and nothing else.
"""

from __future__ import annotations

import sys
from pathlib import Path

CODE = (
    "import pathlib, sys, yaml\n"
    "files = sorted(pathlib.Path(sys.argv[1]).rglob('*.yaml'))\n"
    "for path in files:\n"
    "    yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)\n"
    "print(f'parsed {len(files)} files')\n"
)


def anchor_argv(config_dir: Path) -> list[str]:
    return [sys.executable, "-c", CODE, str(config_dir)]


def anchor_expect(yaml_files: int) -> str:
    """What the anchor prints when it parsed every YAML file the generator wrote."""
    return f"parsed {yaml_files} files"
