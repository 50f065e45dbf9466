"""The command line: what ``serve`` prints at start."""

from __future__ import annotations

from pathlib import Path

from etcwallet.cli import start_banner
from etcwallet.core.config import Settings
from etcwallet.demo import DEMO_STAFF_PASSWORD


def banner(tmp_path: Path, **settings: object) -> str:
    return start_banner(Settings(data_dir=tmp_path, **settings), "127.0.0.1", 8000)


def test_the_banner_names_the_demo_password_only_when_demo_data_is_loaded(tmp_path: Path) -> None:
    demo = banner(tmp_path, env="development", demo=True)
    assert DEMO_STAFF_PASSWORD in demo and "admin" in demo and "http://127.0.0.1:8000" in demo
    assert DEMO_STAFF_PASSWORD not in banner(tmp_path, env="development", demo=False)
    # Production never loads demo data (nor serves /docs), so it never prints either.
    production = banner(tmp_path, env="production", demo=True)
    assert DEMO_STAFF_PASSWORD not in production and "/docs" not in production
    assert "http://127.0.0.1:8000" in production
