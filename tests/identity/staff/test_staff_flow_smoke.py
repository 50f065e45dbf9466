from etcwallet.identity.authz import Role


async def test_finance_can_use_ledger_admin_cannot(client, make_staff):
    fin = await make_staff(Role.FINANCE)
    adm = await make_staff(Role.ADMINISTRATOR)
    body = {"currency": "CNY", "code": "general", "owner": "t"}
    r = await client.post("/api/v1/ledger/accounts", json=body, headers=fin)
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/ledger/accounts", json=body, headers=adm)
    assert r.status_code == 403, r.text
    r = await client.post("/api/v1/ledger/accounts", json=body)
    assert r.status_code == 401, r.text
