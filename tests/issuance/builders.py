"""Builders of the issuance tests: an outlet's counter (operator, customer, stock, an emulated desk) and
the steps of an issuance, so each test states only what it is about."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.core.deps import Client
from etcwallet.identity.authz import Role
from etcwallet.identity.customers import outlet as outlet_customers
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.identity.staff import service as staff
from etcwallet.issuance import applications, cards, stock
from etcwallet.issuance.chip.card_emulator import UserCardEmulator
from etcwallet.issuance.chip.desk import EmulatedDesks
from etcwallet.issuance.chip.emulator import EmulatedReader
from etcwallet.issuance.chip.factory import EmulatedFactory, chip_store
from etcwallet.issuance.chip.keys import issuer_keys_from, key_service_from
from etcwallet.issuance.chip.obu_emulator import ObuEmulator
from etcwallet.issuance.codes import CardType, PlateColour
from etcwallet.issuance.context import IssuanceContext, issuer_from
from etcwallet.issuance.types import Application, ChipKind, IssuanceMode, Vehicle, VehicleKind
from etcwallet.issuance.vehicles import classify_vehicle
from etcwallet.ledger.service import Ledger
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import UnitOfWork
from tests.identity.customer_helpers import new_phone, new_resident_id
from tests.payments.builders import card_number as bank_card_number

CLIENT = Client("192.0.2.18", "pytest")
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def issuance_context(settings: Settings, directory: Path) -> IssuanceContext:
    """An issuance context over a chip store of its own (a test's drawer and desks)."""
    issuer = issuer_from(settings)
    store = chip_store(directory)
    factory = EmulatedFactory(store, issuer.id, issuer_keys_from(settings))
    return IssuanceContext(
        issuer=issuer, keys=key_service_from(settings), desks=EmulatedDesks(store), factory=factory
    )


def mistyped(number: str) -> str:
    """The same number with one digit typed wrong (never the same number)."""
    return number[:-2] + str((int(number[-2]) + 1) % 10) + number[-1]


def new_plate() -> str:
    """A random ordinary Gansu plate (甘A plus five characters, never I or O)."""
    return "甘" + secrets.choice(PLATE_LETTERS) + "".join(secrets.choice("0123456789") for _ in range(5))


def new_chip_number(kind: ChipKind, network: str = "6201") -> str:
    """A random card (20 digits) or OBU (16 digits) number of the network, far from every other test's."""
    length = 20 if kind is ChipKind.CARD else 16
    return network + "".join(secrets.choice("0123456789") for _ in range(length - len(network) - 4)) + "0000"


def car(plate: str | None = None, colour: PlateColour = PlateColour.BLUE) -> Vehicle:
    """A five-seat passenger car (class 1) with a valid VIN."""
    return Vehicle(
        plate=plate or new_plate(),
        plate_colour=colour,
        kind=VehicleKind.PASSENGER,
        vehicle_class=classify_vehicle(kind="passenger", seats=5, length_mm=4800),
        vin="LSVAM4187C2184847",
        engine_number="EA211-123456",
        length_mm=4800,
        width_mm=1800,
        height_mm=1500,
        seats=5,
    )


@dataclass
class Counter:
    """An outlet's counter: the outlet, its operator (a real staff row), the actor they act as, and a
    customer with a real-name profile; ``bank_card`` is the card bound at a bank outlet."""

    pool: AsyncConnectionPool
    uow: UnitOfWork
    keys: Keys
    context: IssuanceContext
    outlet: staff.Outlet
    operator: OutletOperator
    actor: Actor
    customer_id: UUID
    customer_name: str
    customer_id_number: str
    ledger: Ledger
    bank_card: str | None = None

    @property
    def desk(self) -> tuple[EmulatedReader, EmulatedReader]:
        """The operator's emulated card slot and tag field."""
        desks = self.context.emulated
        assert desks is not None
        return desks.readers(self.operator.staff_id)

    async def stock(
        self, kind: ChipKind, count: int = 1, card_type: CardType | None = CardType.STORED_VALUE
    ) -> list[str]:
        """Blank chips into the outlet's stock (and the emulated drawer); answers their numbers."""
        first = new_chip_number(kind, self.context.issuer.network)
        await stock.add_stock(
            self.uow,
            issuer=self.context.issuer,
            kind=kind,
            card_type=card_type if kind is ChipKind.CARD else None,
            outlet_id=self.outlet.id,
            first_number=first,
            count=count,
            actor=self.actor,
            factory=self.context.factory,
        )
        return [str(int(first) + i).zfill(len(first)) for i in range(count)]

    def card(self, number: str) -> UserCardEmulator:
        """An emulated card of the drawer."""
        chip = self.context.desks.store.get(number) if isinstance(self.context.desks, EmulatedDesks) else None
        assert isinstance(chip, UserCardEmulator)
        return chip

    def tag(self, number: str) -> ObuEmulator:
        """An emulated tag of the drawer."""
        chip = self.context.desks.store.get(number) if isinstance(self.context.desks, EmulatedDesks) else None
        assert isinstance(chip, ObuEmulator)
        return chip

    def insert_card(self, number: str) -> UserCardEmulator:
        """Put a card in the operator's slot."""
        card, _tag = self.desk
        chip = card.insert(number)
        assert isinstance(chip, UserCardEmulator)
        return chip

    async def apply(
        self, vehicle: Vehicle | None = None, card_type: CardType = CardType.STORED_VALUE
    ) -> Application:
        """A vehicle application for the counter's customer (binding its bank card at a bank outlet)."""
        typed = None if self.bank_card is None else (self.bank_card, self.bank_card)
        return await applications.create_application(
            self.uow,
            keys=self.keys,
            operator=self.operator,
            customer_id=self.customer_id,
            vehicle=vehicle or car(),
            card_type=card_type,
            bank_card=typed,
            actor=self.actor,
        )

    async def read(self, application: Application) -> cards.CardRead:
        """读卡 for an application (the card already in the slot)."""
        return await cards.read_card(
            self.uow,
            context=self.context,
            operator=self.operator,
            application_id=application.id,
            actor=self.actor,
        )

    async def register(
        self, application: Application, number: str, **overrides: object
    ) -> cards.CardRegistered:
        """注册 the card read (at a bank outlet with its bank card typed twice)."""
        typed = None if self.bank_card is None else (self.bank_card, self.bank_card)
        arguments: dict[str, object] = {"bank_card": typed, "mode": IssuanceMode.NEW}
        arguments.update(overrides)
        return await cards.register_card(
            self.uow,
            context=self.context,
            keys=self.keys,
            ledger=self.ledger,
            operator=self.operator,
            application_id=application.id,
            card_number=number,
            actor=self.actor,
            **arguments,  # type: ignore[arg-type]
        )

    async def issue_card(
        self, vehicle: Vehicle | None = None, card_type: CardType = CardType.STORED_VALUE
    ) -> tuple[Application, str]:
        """A whole user card issuance: stock, application, insert, read, register; answers both."""
        (number,) = await self.stock(ChipKind.CARD, card_type=card_type)
        application = await self.apply(vehicle, card_type)
        self.insert_card(number)
        await self.read(application)
        await self.register(application, number)
        return application, number


async def counter(
    pool: AsyncConnectionPool,
    keys: Keys,
    ledger: Ledger,
    settings: Settings,
    directory: Path,
    *,
    bank: bool = False,
    role: Role | None = None,
) -> Counter:
    """A counter at a fresh outlet (a bank outlet of 兰州银行 with ``bank``), with a fresh operator and a
    customer opened there from real-name data."""
    uow = UnitOfWork(pool)
    async with pool.connection() as conn:
        place = await staff.create_outlet(
            conn,
            code=f"I-{secrets.token_hex(5)}",
            name="发行测试网点",
            kind="bank" if bank else "self_operated",
            bank="lanzhou_bank" if bank else None,
        )
        member = await staff.create_staff(
            conn,
            username=f"iss.{secrets.token_hex(5)}",
            display_name="发行员",
            password="Staff-pass-2026!",
            role=role or (Role.BANK_OPERATOR if bank else Role.OUTLET_OPERATOR),
            outlet_id=place.id,
        )
    operator = OutletOperator(member.id, place.id)
    name, id_number = "张三丰", new_resident_id()
    customer = await outlet_customers.create_at_outlet(
        uow=uow,
        keys=keys,
        operator=operator,
        phone=new_phone(),
        name=name,
        id_type="resident_id",
        id_number=id_number,
        client=CLIENT,
    )
    actor = Actor("staff", str(member.id), CLIENT.ip, CLIENT.user_agent, str(place.id))
    return Counter(
        pool=pool,
        uow=uow,
        keys=keys,
        context=issuance_context(settings, directory),
        outlet=place,
        operator=operator,
        actor=actor,
        customer_id=customer.customer.id,
        customer_name=name,
        customer_id_number=id_number,
        ledger=ledger,
        bank_card=bank_card_number("622202") if bank else None,
    )
