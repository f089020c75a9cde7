"""Explain, step by step, why an APIv3 notification is accepted or refused.

``diagnose_notification`` runs every check the verifier runs, but never stops at the
first failure: a stale notification is still checked for its signature, an unknown serial
is still tried against every configured key, a bad signature is retried against the
usual ways a body gets altered in transit. The report names the likely cause in words a
developer with a failing callback can act on, and never shows personal data in the clear.
The ``wxpaykit doctor notification`` command prints it.
"""

from __future__ import annotations

from wxpaykit.doctor.checks import diagnose_notification
from wxpaykit.doctor.report import DiagnosisReport, DiagnosisStep, mask_personal_data

__all__ = ["DiagnosisReport", "DiagnosisStep", "diagnose_notification", "mask_personal_data"]
