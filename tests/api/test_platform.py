from __future__ import annotations

from tests.api.conftest import Api


async def test_root_is_a_plain_ready_line(api: Api) -> None:
    r = await api.client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith("clave ")
    assert "ready" in r.text


async def test_api_names_the_service(api: Api) -> None:
    r = await api.client.get("/api")
    assert r.json()["name"] == "clave"
    assert r.json()["version"]


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).json() == {"status": "ok"}
    await api.domain.store.close()
    r = await api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["failing"] == {"verify": "StoreError"}
    await api.domain.store.open()


async def test_openapi_document_and_docs_page(api: Api) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    for path in (
        "/api/verifications",
        "/api/verifications/check",
        "/api/verifications/{verification_id}",
        "/api/verifications/{verification_id}/cancel",
        "/api/messages/send-code",
        "/api/messages/verify-code",
    ):
        assert path in doc["paths"], path
    create = doc["paths"]["/api/verifications"]["post"]
    assert create["security"] == [{"bearer": []}]
    assert "bearer" in doc["components"]["securitySchemes"]
    docs = await api.client.get("/docs/")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_dev_inbox_page_escapes_content(api: Api) -> None:
    await api.domain.tenants.update_policy(
        "default",
        api.domain.settings.default_policy.__class__(friendly_name="<b>Acme</b>"),
    )
    api.domain.tenants._cache.clear()
    await api.send("+14155552671")
    await api.inbox("+14155552671")
    page = await api.client.get("/dev/inbox")
    assert page.status_code == 200
    assert "&lt;b&gt;Acme&lt;/b&gt;" in page.text
    assert "<b>Acme</b>" not in page.text


async def test_docs_assets_answer_a_bad_path_as_not_found(api: Api) -> None:
    found = await api.client.get("/docs/assets/swagger-ui-bundle.js")
    assert found.status_code == 200
    for path in (
        "/docs/assets/x%00.js",
        "/docs/assets/%00",
        "/docs/assets/nothing.js",
        "/docs/assets/" + "a" * 300 + ".js",  # longer than a file name may be
        "/docs/assets/swagger-ui.css/x",  # a file taken for a folder
    ):
        got = await api.client.get(path)
        assert got.status_code == 404, (path, got.text)
