"""JWT authentication and the whole RBAC table (every action x every role)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from commands.catalog import COMMAND_TYPES
from config.settings import Settings
from domain.rbac import PERMISSIONS, AuthError, Principal, Role, authorize
from infra.auth import authenticate, issue_token

DS, MLE, APP, AUD, ADM = "data_scientist", "ml_engineer", "approver", "auditor", "admin"
SVC = "service"  # Veritas's own processes: sagas and step workers

# Written out by hand from DESIGN and seed 004; deliberately not derived from PERMISSIONS.
EXPECTED: dict[str, set[str]] = {
    "RegisterModel": {DS, MLE, ADM, SVC},
    "UpdateModelMetadata": {DS, MLE, ADM, SVC},
    "RegisterDataset": {DS, MLE, ADM, SVC},
    "RegisterModelVersion": {DS, MLE, ADM, SVC},
    "TransitionStage": {MLE, ADM},
    "RollbackProduction": {MLE, ADM},
    "ArchiveModelVersion": {MLE, ADM, SVC},
    "SubmitForApproval": {DS, MLE, ADM, SVC},
    "ApproveSubmission": {APP},
    "RejectSubmission": {APP},
    "StartTraining": {DS, MLE, ADM, SVC},
    "CancelTraining": {DS, MLE, ADM, SVC},
    "DispatchStep": {SVC},
    "RecordStepResult": {SVC},
    "RecordStepTimeout": {SVC},
    "ScheduleRetry": {SVC},
    "RecordTrainingProgress": {SVC},
    "BeginCompensation": {SVC},
    "FinishTraining": {SVC},
    "SetMonitoringPolicy": {MLE, ADM},
    "RecordDriftCheck": {SVC},
    "RecordAccuracy": {SVC},
    "StartDeployment": {MLE, ADM},
    "PromoteCanary": {MLE, ADM, SVC},
    "RollBackCanary": {MLE, ADM, SVC},
    "AbortDeployment": {MLE, ADM, SVC},
    "RecordLoadRefused": {SVC},
    "RecordServedVersion": {SVC},
    "RecordCanaryMeasurement": {SVC},
    "RecordScaleOut": {SVC},
    "read:serving": {DS, MLE, APP, AUD, ADM, SVC},
    "read:monitoring": {DS, MLE, APP, AUD, ADM, SVC},
    "read:registry": {DS, MLE, APP, AUD, ADM, SVC},
    "read:audit": {AUD, ADM},
}
ROLES = [DS, MLE, APP, AUD, ADM, SVC]

SECRET = "unit-test-secret-0123456789-abcdefghijklmnop"


def settings(**kw: Any) -> Settings:
    return Settings(jwt_secret=SECRET, **kw)


def test_expected_table_covers_every_action_and_role() -> None:
    assert set(EXPECTED) == set(PERMISSIONS), "update EXPECTED when the RBAC table changes"
    assert set(COMMAND_TYPES) <= set(PERMISSIONS), "every command type needs an RBAC row"
    assert {r.value for r in Role} == set(ROLES)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_rbac_table(action: str, role: str) -> None:
    principal = Principal("someone", frozenset({Role(role)}))
    if role in EXPECTED[action]:
        authorize(principal, action)
    else:
        with pytest.raises(AuthError) as exc:
            authorize(principal, action)
        assert exc.value.reason_code == "forbidden"
        assert action in exc.value.message


def test_any_one_permitted_role_is_enough() -> None:
    authorize(Principal("p", frozenset({Role.AUDITOR, Role.APPROVER})), "ApproveSubmission")


def test_no_roles_and_unknown_actions_are_forbidden() -> None:
    with pytest.raises(AuthError) as exc:
        authorize(Principal("p", frozenset()), "RegisterModel")
    assert exc.value.reason_code == "forbidden"
    with pytest.raises(AuthError) as exc:
        authorize(Principal("p", frozenset(Role)), "DropEverything")
    assert exc.value.reason_code == "forbidden"


# --- authentication ------------------------------------------------------------------------------


def test_valid_token_gives_subject_and_roles() -> None:
    s = settings()
    p = authenticate(s, f"Bearer {issue_token(s, 'alice', [DS, APP])}")
    assert p == Principal("alice", frozenset({Role.DATA_SCIENTIST, Role.APPROVER}))


def test_scheme_is_case_insensitive_and_token_is_stripped() -> None:
    s = settings()
    assert authenticate(s, f"bearer  {issue_token(s, 'alice', [DS])} ").subject == "alice"


def test_issue_token_refuses_unknown_roles() -> None:
    with pytest.raises(ValueError, match="overlord"):
        issue_token(settings(), "alice", ["overlord"])


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "roles": [DS], "iat": now, "exp": now + 600, **over}


def _unauthenticated(s: Settings, header: str | None) -> AuthError:
    with pytest.raises(AuthError) as exc:
        authenticate(s, header)
    assert exc.value.reason_code == "unauthenticated"
    return exc.value


def test_expired_token() -> None:
    tok = jwt.encode(_claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    assert "expired" in _unauthenticated(settings(), f"Bearer {tok}").message


def test_forged_token_signed_with_another_secret() -> None:
    tok = jwt.encode(
        _claims(roles=[ADM]), "another-secret-of-sufficient-length-000", algorithm="HS256"
    )
    _unauthenticated(settings(), f"Bearer {tok}")


def test_unsigned_alg_none_token() -> None:
    tok = jwt.encode(_claims(roles=[ADM]), None, algorithm="none")
    _unauthenticated(settings(), f"Bearer {tok}")


def test_tampered_claims() -> None:
    s = settings()
    header, _, sig = issue_token(s, "alice", [DS]).split(".")
    other = jwt.encode(_claims(roles=[ADM]), "x" * 40, algorithm="HS256").split(".")[1]
    _unauthenticated(s, f"Bearer {header}.{other}.{sig}")


@pytest.mark.parametrize("header", [None, ""], ids=["none", "empty"])
def test_missing_header(header: str | None) -> None:
    _unauthenticated(settings(), header)


@pytest.mark.parametrize("scheme", ["Basic", "Token", "JWT"])
def test_wrong_scheme(scheme: str) -> None:
    s = settings()
    _unauthenticated(s, f"{scheme} {issue_token(s, 'alice', [DS])}")


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Bearer    ", "not-a-jwt", "Bearer not.a.jwt"]
)
def test_malformed_header(header: str) -> None:
    _unauthenticated(settings(), header)


@pytest.mark.parametrize("drop", ["sub", "exp"])
def test_required_claims(drop: str) -> None:
    claims = _claims()
    del claims[drop]
    _unauthenticated(settings(), f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}")


@pytest.mark.parametrize("over", [{"sub": ""}, {"sub": 42}, {"roles": "admin"}])
def test_malformed_claims(over: dict[str, Any]) -> None:
    tok = jwt.encode(_claims(**over), SECRET, algorithm="HS256")
    _unauthenticated(settings(), f"Bearer {tok}")


def test_unknown_roles_in_a_token_grant_nothing() -> None:
    s = settings()
    tok = jwt.encode(_claims(roles=["overlord", APP]), SECRET, algorithm="HS256")
    p = authenticate(s, f"Bearer {tok}")
    assert p.roles == frozenset({Role.APPROVER})
    with pytest.raises(AuthError):
        authorize(p, "RegisterModel")


# --- RS256 ----------------------------------------------------------------------------------------


def _key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def rsa_settings() -> Settings:
    private, public = _key_pair()
    return settings(jwt_algorithm="RS256", jwt_public_key=public, jwt_private_key=private)


def test_rs256_roundtrip(rsa_settings: Settings) -> None:
    tok = issue_token(rsa_settings, "carol", [APP])
    assert jwt.get_unverified_header(tok)["alg"] == "RS256"
    p = authenticate(rsa_settings, f"Bearer {tok}")
    assert p == Principal("carol", frozenset({Role.APPROVER}))
    authorize(p, "ApproveSubmission")


def test_rs256_rejects_a_token_from_another_key(rsa_settings: Settings) -> None:
    other_private, _ = _key_pair()
    tok = jwt.encode(_claims(roles=[ADM]), other_private, algorithm="RS256")
    _unauthenticated(rsa_settings, f"Bearer {tok}")


def test_rs256_rejects_hs256_tokens_even_with_the_shared_secret(rsa_settings: Settings) -> None:
    tok = jwt.encode(_claims(roles=[ADM]), SECRET, algorithm="HS256")
    _unauthenticated(rsa_settings, f"Bearer {tok}")


def test_rs256_expired(rsa_settings: Settings) -> None:
    assert rsa_settings.jwt_private_key is not None
    tok = jwt.encode(
        _claims(exp=int(time.time()) - 5),
        rsa_settings.jwt_private_key.get_secret_value(),
        algorithm="RS256",
    )
    assert "expired" in _unauthenticated(rsa_settings, f"Bearer {tok}").message


def test_rs256_verifier_without_private_key_cannot_issue(rsa_settings: Settings) -> None:
    verifier = settings(jwt_algorithm="RS256", jwt_public_key=rsa_settings.jwt_public_key)
    with pytest.raises(ValueError, match="PRIVATE_KEY"):
        issue_token(verifier, "alice", [DS])
    # but it verifies tokens issued by the holder of the private key
    assert (
        authenticate(verifier, f"Bearer {issue_token(rsa_settings, 'alice', [DS])}").subject
        == "alice"
    )
