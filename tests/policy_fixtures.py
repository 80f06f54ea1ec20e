"""Privacy policies for tests that are not about the policy: every listed owner may do everything."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


def open_policy(owners: Iterable[str], *, minimum_age: int = 14, erase_after_months: int = 12) -> str:
    """A policy file text in which each owner may read and write every category for answering,
    marketing and analytics."""
    lines = [
        "[obligations]",
        f"minimum_age = {minimum_age}",
        f"erase_after_months = {erase_after_months}",
        "",
    ]
    for owner in owners:
        lines += [
            "[[data_user]]",
            f"name = {owner!r}",
            "[[data_user.rule]]",
            'operations = ["read", "write"]',
            'categories = ["contact", "participation", "declared", "free_text", "profile"]',
            'purposes = ["response", "marketing", "analytics"]',
            "",
        ]
    return "\n".join(lines)


def write_open_policy(directory: Path, owners: Iterable[str], **kwargs: int) -> Path:
    """Write :func:`open_policy` as ``policy.toml`` in ``directory``; returns its path."""
    path = directory / "policy.toml"
    path.write_text(open_policy(owners, **kwargs), encoding="utf-8")
    return path
