"""docs/architecture.md's package map names every module of the product packages, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tokonomics", "proxy", "billing", "alerts", "tools")
# Directories the map describes as a whole ("one module per wire format", "a fake upstream").
DESCRIBED_WHOLE = {"providers", "simulator", "migrations"}


def _map_blocks() -> dict[str, str]:
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("## Package map", 1)[1].split("\n## ", 1)[0]
    code = section.split("```", 2)[1]
    blocks: dict[str, list[str]] = {}
    current = None
    for line in code.splitlines():
        head = line.split("/", 1)[0]
        if line[:1].strip() and head in PACKAGES:
            current = head
        if current:
            blocks.setdefault(current, []).append(line)
    return {name: "\n".join(lines) for name, lines in blocks.items()}


def _modules(package: str) -> list[Path]:
    return sorted(
        p.relative_to(REPO / package) for p in (REPO / package).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
        and not DESCRIBED_WHOLE & set(p.relative_to(REPO / package).parts[:-1])
    )


def test_every_module_is_on_the_map() -> None:
    blocks = _map_blocks()
    missing = []
    for package in PACKAGES:
        block = blocks.get(package, "")
        words = set(re.findall(r"[\w.]+", block))
        for module in _modules(package):
            if module.parts[-3:-1] == ("management", "commands"):
                if module.stem not in words:
                    missing.append(f"{package}/{module} (command {module.stem})")
                continue
            if module.name not in words:
                missing.append(f"{package}/{module}")
            for folder in module.parts[:-1]:
                if folder not in ("management", "commands") and f"{folder}/" not in block:
                    missing.append(f"{package}/{folder}/")
    assert not missing, f"docs/architecture.md's package map does not name: {sorted(set(missing))}"


def test_every_module_on_the_map_exists() -> None:
    for package, block in _map_blocks().items():
        named = set(re.findall(r"\b(\w+\.py)\b", block))
        present = {p.name for p in (REPO / package).rglob("*.py")}
        assert named <= present, f"the map of {package}/ names modules that are not there: {sorted(named - present)}"
