"""The etcd PKI: validity, renewal and the daily certificate check."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..reader import Section, systemd_calendar


@dataclass(frozen=True)
class PkiSpec:
    key_algorithm: str              # ECDSA (P-256) or RSA (2048)
    validity_hours: int
    early_renewal_hours: int
    organization: str
    rotation: str | None = None     # a label: changing it re-issues every leaf cert
    check_days: int = 30            # each node's hakube-cert-check fails this many days before an expiry
    check_calendar: str = "daily"   # when it runs (systemd OnCalendar=)


def _pki(s: Section) -> PkiSpec:
    algorithm = s.choice("keyAlgorithm", "ECDSA", ("ECDSA", "RSA"))
    validity = s.integer("validityHours", 8760, 24, 20 * 8760)
    renewal = s.integer("earlyRenewalHours", 720, 0, 20 * 8760)
    if isinstance(validity, int) and isinstance(renewal, int) and renewal >= validity:
        s.problems.add(s.key("earlyRenewalHours"), f"{renewal} must be less than validityHours "
                       f"({validity}), or every `pulumi up` would re-issue the certificates")
    check = s.section("check")
    # By default the check fails when `pulumi up` would re-issue (the early
    # renewal window): a stack nobody touches is told a month ahead.
    check_days = check.integer("days", max(1, renewal // 24) if isinstance(renewal, int) else 30, 1, 3650)
    check_calendar = systemd_calendar(check, "daily")
    check.finish()
    org = s.string("organization", "hakube")
    rotation = s.string("rotation", None)
    if rotation is not None and not re.match(r"^[A-Za-z0-9._-]{1,64}$", str(rotation)):
        s.problems.add(s.key("rotation"), f"{rotation!r}: use a short label such as 2026-11 "
                       "(letters, digits, . _ -); changing it re-issues every leaf certificate")
    s.finish()
    return PkiSpec(key_algorithm=algorithm, validity_hours=validity,
                   early_renewal_hours=renewal, organization=org, rotation=rotation,
                   check_days=check_days, check_calendar=check_calendar)
