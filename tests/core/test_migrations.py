"""The migrations form one linear chain, from one base to one head, and ``core.db.migrate`` reaches it.

Several issues add migrations at once; two written against the same parent make two heads, and
``alembic upgrade head`` then refuses to start (or, with a merge revision, the order of their changes is
left to chance). This test names the revisions to rechain before that reaches a start-up.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
from alembic.script import ScriptDirectory

from etcwallet.core.db import MIGRATIONS_DIR


def chain_problems(directory: Path) -> list[str]:
    """What keeps the migrations in ``directory`` from being one linear chain (empty when they are)."""
    script = ScriptDirectory(str(directory))
    revisions = {rev.revision: rev for rev in script.walk_revisions("base", "heads")}
    problems = []
    heads, bases = script.get_heads(), script.get_bases()
    if len(heads) != 1:
        problems.append(f"{len(heads)} heads {sorted(heads)}: give all but one a new down_revision")
    if len(bases) != 1:
        problems.append(f"{len(bases)} bases {sorted(bases)}: only the first migration has no parent")
    for rev in revisions.values():
        if isinstance(rev.down_revision, tuple | list):
            problems.append(f"{rev.revision} merges {sorted(rev.down_revision)}: rechain instead of merging")
        if len(rev.nextrev) > 1:
            problems.append(f"{rev.revision} is revised by {sorted(rev.nextrev)}: a branch point")
        if rev.branch_labels or rev.dependencies:
            problems.append(f"{rev.revision} has branch labels or dependencies")
    if len(heads) == 1:
        walked, current = [], script.get_revision(heads[0])
        while current is not None and current.revision not in walked:
            walked.append(current.revision)
            down = current.down_revision
            current = script.get_revision(down) if isinstance(down, str) else None
        if len(walked) != len(revisions):
            problems.append(f"the chain from the head reaches {len(walked)} of {len(revisions)} revisions")
    return problems


def test_the_migrations_are_one_linear_chain() -> None:
    assert chain_problems(MIGRATIONS_DIR) == []


def test_the_database_is_migrated_to_that_head(database_url: str, owner_url: str) -> None:
    """``database_url`` migrated the run's database with ``core.db.migrate``: it stands at the one head."""
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with psycopg.connect(owner_url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version_num FROM alembic_version").fetchall()]
    assert versions == [head]


def _copy_with(tmp_path: Path, name: str, revision: str, down: str) -> Path:
    """The migrations directory copied, with one more revision whose parent is ``down``."""
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / name).write_text(
        f'"""A migration written in parallel."""\n\nrevision = "{revision}"\ndown_revision = {down}\n'
        "branch_labels = None\ndepends_on = None\n\n\ndef upgrade() -> None:\n    pass\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    return copy


def test_two_heads_are_found(tmp_path: Path) -> None:
    """Two migrations written against the same parent (here the head's parent) make a second head."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_revision(script.get_current_head())
    assert head is not None and isinstance(head.down_revision, str)
    copy = _copy_with(tmp_path, "9999_parallel.py", "9999_parallel", repr(head.down_revision))
    problems = chain_problems(copy)
    assert any("2 heads" in p for p in problems), problems
    assert any(f"{head.down_revision} is revised by" in p for p in problems), problems


def test_a_merge_revision_is_found(tmp_path: Path) -> None:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_revision(script.get_current_head())
    assert head is not None and isinstance(head.down_revision, str)
    copy = _copy_with(tmp_path, "9998_side.py", "9998_side", repr(head.down_revision))
    (copy / "versions" / "9999_merge.py").write_text(
        '"""Merge."""\n\nrevision = "9999_merge"\n'
        f"down_revision = ({head.revision!r}, '9998_side')\n"
        "branch_labels = None\ndepends_on = None\n\n\ndef upgrade() -> None:\n    pass\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    problems = chain_problems(copy)
    assert any("9999_merge merges" in p for p in problems), problems
    assert not any("heads" in p for p in problems), problems  # one head again, but not a line
