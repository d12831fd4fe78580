"""/openapi.json documents the errors in the shapes clave sends them, and the form bodies of
the Twilio-compatible API (the fuzzing of tests/e2e/test_openapi_fuzz.py holds it to them)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api


def schema_ref(operation: dict[str, Any], status: str) -> str:
    return str(operation["responses"][status]["content"]["application/json"]["schema"]["$ref"])


async def test_errors_are_documented_in_the_shape_they_are_sent(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error"]
    assert set(schemas["TwilioError"]["required"]) == {"code", "message", "more_info", "status"}
    send = document["paths"]["/api/verifications"]["post"]
    assert set(send["responses"]) >= {"201", "400", "401", "413", "415", "422", "429", "503"}
    assert schema_ref(send, "401") == "#/components/schemas/Error"
    assert "Retry-After" in send["responses"]["429"]["headers"]
    # The original service's routes answer {"message"}; /v2 Twilio's shape.
    compat = document["paths"]["/api/messages/send-code"]["post"]
    assert schema_ref(compat, "400") == "#/components/schemas/MessageError"
    check = document["paths"]["/v2/Services/{sid}/VerificationCheck"]["post"]
    assert schema_ref(check, "404") == "#/components/schemas/TwilioError"
    # What the error really is, for a request the document says is wrong.
    r = await api.post("/api/verifications", {"to": "+14155552671"})
    assert r.status_code == 400
    assert set(r.json()) == {"error"}


async def test_twilio_form_bodies_are_documented(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    create = document["paths"]["/v2/Services/{sid}/Verifications"]["post"]
    form = create["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert set(form["required"]) == {"To", "Channel"}
    assert form["properties"]["Channel"]["enum"] == ["call", "email", "sms", "whatsapp"]
    update = document["paths"]["/v2/Services/{sid}/Verifications/{ref}"]["post"]
    status = update["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert status["properties"]["Status"]["enum"] == ["canceled", "approved"]


async def test_options_is_not_offered_and_allow_lists_the_documented_methods(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    documented = {m.upper() for m in document["paths"]["/api/verifications/{verification_id}"]}
    for method in ("OPTIONS", "PUT"):
        r = await api.client.request(method, "/api/verifications/VE" + "0" * 32)
        assert r.status_code == 405
        assert set(r.headers["allow"].replace(" ", "").split(",")) == documented
