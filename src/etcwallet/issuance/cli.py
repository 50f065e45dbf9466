"""``etcwallet issuance …``: the issuance chores of the command line (a batch of blank stock, with its
progress bar). Mounted by :mod:`etcwallet.cli`; each command opens its own small pool and unit of work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from etcwallet.core.config import get_settings
from etcwallet.core.db import open_pool
from etcwallet.core.errors import DomainError
from etcwallet.core.logging import configure_logging
from etcwallet.issuance.codes import CardType
from etcwallet.issuance.types import ChipKind, StockBatch

issuance_app = typer.Typer(help="发行 · ETC issuance: stock", no_args_is_help=True)
stock_app = typer.Typer(help="库存 · an outlet's blank cards and tags", no_args_is_help=True)
issuance_app.add_typer(stock_app, name="stock")
console = Console(stderr=True)

CARD_TYPES = {
    "stored_value": CardType.STORED_VALUE,
    "account": CardType.ACCOUNT,
    "22": CardType.STORED_VALUE,
    "23": CardType.ACCOUNT,
}


def _card_type(kind: ChipKind, value: str | None) -> CardType | None:
    if kind is ChipKind.TAG:
        if value is not None:
            raise typer.BadParameter("电子标签没有卡类型 · tags have no card type", param_hint="--card-type")
        return None
    if value not in CARD_TYPES:
        raise typer.BadParameter(
            "用户卡须指明卡类型：stored_value（储值卡）或 account（记账卡）· cards need stored_value or account",
            param_hint="--card-type",
        )
    return CARD_TYPES[value]


async def _add(
    database_url: str,
    *,
    kind: ChipKind,
    card_type: CardType | None,
    outlet_code: str,
    first: str,
    count: int,
    progress: Callable[[str, int], None],
) -> StockBatch:
    from etcwallet.app import keys_from
    from etcwallet.identity.staff import service as staff
    from etcwallet.issuance import stock
    from etcwallet.issuance.chip.keys import key_service_from
    from etcwallet.issuance.context import issuance_context_from
    from etcwallet.issuance.errors import IssuanceError
    from etcwallet.platform.audit import Actor
    from etcwallet.platform.unit import UnitOfWork

    settings = get_settings()
    keys_from(settings)
    context = issuance_context_from(settings, key_service_from(settings))
    pool = await open_pool(database_url, 2)
    try:
        async with pool.connection() as conn:
            outlet = await staff.find_outlet_by_code(conn, code=outlet_code)
        if outlet is None:
            raise IssuanceError("outlet_not_found", field="outlet")
        return await stock.add_stock(
            UnitOfWork(pool),
            issuer=context.issuer,
            kind=kind,
            card_type=card_type,
            outlet_id=outlet.id,
            first_number=first,
            count=count,
            actor=Actor.system("cli"),
            factory=context.factory,
            progress=progress,
        )
    finally:
        await pool.close()


@stock_app.command("add")
def stock_add(
    kind: Annotated[ChipKind, typer.Option(help="card (用户卡) or tag (电子标签)")],
    outlet: Annotated[str, typer.Option(help="the outlet's code")],
    first: Annotated[str, typer.Option(help="the first number: 20 digits for cards, 16 for tags")],
    count: Annotated[int, typer.Option(min=1, max=10_000, help="how many, numbered on from the first")],
    card_type: Annotated[
        str | None, typer.Option(help="cards: stored_value (储值卡) or account (记账卡)")
    ] = None,
) -> None:
    """Bring a batch of blank cards or tags into an outlet's stock, all or none, with a progress bar. With
    emulated chips (the default), the blank chips are made in the data directory's chip store too."""
    from etcwallet.cli import _database_url

    settings = get_settings()
    configure_logging(settings)
    chosen = _card_type(kind, card_type)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        rows = bar.add_task("入库 · rows", total=count)
        chips = bar.add_task("制卡 · chips", total=count, visible=settings.chip_reader == "emulator")

        def progress(phase: str, done: int) -> None:
            bar.update(rows if phase == "rows" else chips, completed=done)

        try:
            batch = asyncio.run(
                _add(
                    _database_url(),
                    kind=kind,
                    card_type=chosen,
                    outlet_code=outlet,
                    first=first,
                    count=count,
                    progress=progress,
                )
            )
        except DomainError as refused:
            console.print(f"[red]{refused.zh} / {refused.en}[/]")
            raise typer.Exit(1) from None
    last = str(int(batch.first_number) + batch.count - 1).zfill(len(batch.first_number))
    console.print(
        f"已入库 · added {batch.count} {kind.value}: {batch.first_number} … {last} (batch {batch.id})"
    )
