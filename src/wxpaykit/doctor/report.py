"""The doctor's report: steps, likely causes, the masked resource and a one-line verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DiagnosisReport",
    "DiagnosisStep",
    "Recorder",
    "StepStatus",
    "build_report",
    "mask_personal_data",
]

StepStatus = Literal["ok", "warn", "fail", "skipped"]

# Verdict order: the reason the gateway would give first (its checks run in this order).
_PRIORITY = (
    "MISSING_HEADER",
    "UNSUPPORTED_SIGNATURE_TYPE",
    "SIGNATURE_PROBE",
    "UNKNOWN_SERIAL",
    "CERTIFICATE_NOT_VALID",
    "STALE_TIMESTAMP",
    "SIGNATURE_MISMATCH",
    "MALFORMED",
    "DECRYPTION_FAILED",
)
# Personal data in decrypted resources (§6.3, §6.4, §8); everything under these keys is masked.
_PERSONAL_KEYS = frozenset(
    {
        "openid",
        "sp_openid",
        "sub_openid",
        "user_received_account",
        "identity",
        "name",
        "real_name",
        "number",
        "bank_account",
        "mobile",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiagnosisStep:
    """One check: ``name`` (headers, body, key, clock, signature, decryption, resource)."""

    name: str
    status: StepStatus
    summary: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DiagnosisReport:
    """Every step, the likely causes of a failure, the masked resource and the verdict.

    ``verdict`` is one line: ``OK: ...`` or ``FAIL: <reason>: <explanation>``;
    ``reason_code`` is the matching :class:`~wxpaykit.errors.VerificationError` code
    (``STALE_TIMESTAMP``, ``SIGNATURE_MISMATCH``, ...) or ``None`` when all is well.
    """

    steps: tuple[DiagnosisStep, ...]
    likely_causes: tuple[str, ...]
    resource: dict[str, Any] | None = field(repr=False)
    verdict: str
    reason_code: str | None

    @property
    def ok(self) -> bool:
        """True when the notification would be accepted."""
        return self.reason_code is None

    def step(self, name: str) -> DiagnosisStep:
        """The step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


@dataclass(slots=True)
class Recorder:
    """Collects steps, failures and causes during one diagnosis; ``build_report`` ends it."""

    steps: list[DiagnosisStep] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (reason code, text)

    def add(self, name: str, status: StepStatus, summary: str, *details: str) -> None:
        """Record a step."""
        self.steps.append(DiagnosisStep(name=name, status=status, summary=summary, details=details))

    def fail(self, code: str, text: str) -> None:
        """Record a failure: its reason code and a one-line explanation."""
        self.failures.append((code, text))

    def cause(self, text: str) -> None:
        """Record a likely cause (once)."""
        if text not in self.causes:
            self.causes.append(text)


def mask_personal_data(value: Any, *, masked: bool = False) -> Any:
    """Copy of a decoded JSON value with personal data masked: ``oUpF****WeS6o``."""
    if isinstance(value, dict):
        return {
            key: mask_personal_data(item, masked=masked or key in _PERSONAL_KEYS)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_personal_data(item, masked=masked) for item in value]
    if masked and isinstance(value, str):
        return _mask(value)
    return value


def _mask(text: str) -> str:
    if len(text) >= 12:
        return f"{text[:4]}****{text[-5:]}"
    if len(text) >= 6:
        return f"{text[:2]}****{text[-2:]}"
    return "****"


def build_report(run: Recorder, what: str, resource: dict[str, Any] | None) -> DiagnosisReport:
    """The report of a finished run; ``what`` names the notification in an OK verdict."""
    if run.failures:
        ordered = sorted(run.failures, key=lambda failure: _PRIORITY.index(failure[0]))
        code, text = ordered[0]
        extra = [t for c, t in ordered[1:] if c != code]
        signature = next((s for s in run.steps if s.name == "signature"), None)
        if code == "STALE_TIMESTAMP" and signature is not None and signature.status == "ok":
            extra.append("the signature itself is valid")
        verdict = "FAIL: " + "; ".join([text, *extra])
    else:
        code = None
        verdict = f"OK: {what} is authentic and decrypts"
    return DiagnosisReport(
        steps=tuple(run.steps),
        likely_causes=tuple(run.causes),
        resource=resource,
        verdict=verdict,
        reason_code=code,
    )
