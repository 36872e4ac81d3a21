"""Reconciliation: ordered vs tested vs provisioned vs refused vs revoked, computed from ledger entries alone.

Pure: it reads decoded entries (as in an export), so an auditor can recompute any report from an
export and compare; every serial it lists carries the ledger index of the entry that proves it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# A test record: the server's, and a site agent's folded at sync (its gate passed the unit there, and its log came
# home verified: service/agent/sync.py keeps it apart from the server's own records under ``agent.``).
TEST_RECORDED = ("test.recorded", "agent.test.recorded")


@dataclass(frozen=True)
class Scope:
    order_id: str | None = None
    site_id: str | None = None
    since: str | None = None  # RFC 3339 UTC, compared as text (entries use one fixed format)
    until: str | None = None

    def in_period(self, at: str) -> bool:
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)

    def describe(self) -> str:
        parts = [f"order {self.order_id}" if self.order_id else "", f"site {self.site_id}" if self.site_id else ""]
        if self.since or self.until:
            parts.append(f"from {self.since or 'the start'} until {self.until or 'now'}")
        return ", ".join(p for p in parts if p) or "everything"


@dataclass
class Reconciliation:
    scope: Scope
    tree_size: int = 0
    orders: dict[str, int] = field(default_factory=dict)
    provisioned: list[tuple[str, int]] = field(default_factory=list)
    refused: list[tuple[str | None, str, int]] = field(default_factory=list)
    revoked: list[tuple[str, int]] = field(default_factory=list)
    tests: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    leased: dict[str, int] = field(default_factory=dict)  # lease id -> units it took from the order
    lease_ends: dict[str, tuple[int, int]] = field(default_factory=dict)  # closed lease id -> (made, returned)

    def lease_figures(self) -> dict[str, int]:
        """Quota leases in scope (ADR 0022): the units they took, of the closed ones the units their agents made
        and those returned, and the units of leases still open (taken from the order, not yet accounted)."""
        ends = self.lease_ends.values()
        return {
            "units": sum(self.leased.values()),
            "made": sum(made for made, _ in ends),
            "returned": sum(returned for _, returned in ends),
            "open": sum(units for lease, units in self.leased.items() if lease not in self.lease_ends),
        }

    def figures(self) -> dict[str, Any]:
        tested_serials = self.tests
        final = {s: rec[-1][0] for s, rec in tested_serials.items()}
        provisioned = {s for s, _ in self.provisioned}
        passed_untaken = sorted(s for s, o in final.items() if o == "PASS" and s not in provisioned)
        untested = sorted(s for s in provisioned if final.get(s) != "PASS")
        records = sum(len(v) for v in tested_serials.values())
        return {
            "ordered": sum(self.orders.values()),
            "orders": dict(sorted(self.orders.items())),
            "tested": {
                "units": len(tested_serials),
                "records": records,
                "retests": records - len(tested_serials),
                "passed_first_time": sum(1 for rec in tested_serials.values() if rec[0][0] == "PASS"),
                "failed_at_least_once": sum(1 for rec in tested_serials.values() if any(o != "PASS" for o, _ in rec)),
                "final_pass": sum(1 for o in final.values() if o == "PASS"),
                "final_fail": sum(1 for o in final.values() if o != "PASS"),
            },
            "provisioned": len(self.provisioned),
            "refused": dict(sorted(Counter(code for _, code, _ in self.refused).items())),
            "refused_total": len(self.refused),
            "revoked": len(self.revoked),
            "remaining": max(sum(self.orders.values()) - len(self.provisioned), 0),
            # Only where a lease is in scope: a report without one reads (and verifies) as before leases closed.
            **({"leases": self.lease_figures()} if self.leased or self.lease_ends else {}),
            "exceptions": {
                "passed_but_not_provisioned": passed_untaken,
                "provisioned_without_a_passing_test": untested,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": {k: v for k, v in vars(self.scope).items() if v is not None},
            "tree_size": self.tree_size,
            "figures": self.figures(),
            "evidence": {
                "provisioned": [{"serial": s, "entry": i} for s, i in self.provisioned],
                "refused": [{"serial": s, "code": c, "entry": i} for s, c, i in self.refused],
                "revoked": [{"serial": s, "entry": i} for s, i in self.revoked],
                "tests": [
                    {"serial": s, "outcome": o, "entry": i} for s, rec in sorted(self.tests.items()) for o, i in rec
                ],
            },
        }


def reconcile(entries: Iterable[dict[str, Any]], scope: Scope) -> Reconciliation:
    """One pass over entries in index order."""
    result = Reconciliation(scope)
    order_sites: dict[str, str] = {}
    tests_by_serial: dict[str, list[tuple[str, int]]] = defaultdict(list)
    test_sites: dict[str, set[str]] = defaultdict(set)
    attempted: set[str] = set()
    for e in entries:
        result.tree_size = max(result.tree_size, int(e["index"]) + 1)
        kind, detail, index = e["kind"], e.get("detail") or {}, int(e["index"])
        if kind == "order.created":
            order_sites[e["order_id"]] = detail.get("site_id", "")
            if _order_in_scope(scope, e["order_id"], order_sites):
                result.orders[e["order_id"]] = int(detail.get("quota", 0))
        elif kind == "order.quota_changed" and e["order_id"] in result.orders:
            result.orders[e["order_id"]] = int(detail.get("to", result.orders[e["order_id"]]))
        elif kind in TEST_RECORDED and e.get("serial"):
            if scope.in_period(e["at"]):
                tests_by_serial[e["serial"]].append((str(detail.get("outcome")), index))
                test_sites[e["serial"]].add(str(detail.get("site_id")))
        elif kind in ("unit.provisioned", "unit.refused"):
            # A site's attempts are those its fixtures made (on any order: a stray order is itself a finding).
            if scope.order_id is not None and e.get("order_id") != scope.order_id:
                continue
            if scope.site_id is not None and detail.get("site_id") != scope.site_id:
                continue
            if not scope.in_period(e["at"]):
                continue
            if e.get("serial"):
                attempted.add(e["serial"])
            if kind == "unit.provisioned":
                result.provisioned.append((e["serial"], index))
            else:
                result.refused.append((e.get("serial"), str(e.get("code")), index))
        elif kind in ("lease.issued", "lease.closed"):
            _lease(result, scope, e, order_sites)
        elif (
            kind == "unit.revoked"
            and scope.in_period(e["at"])
            and _order_in_scope(scope, e.get("order_id"), order_sites)
        ):
            result.revoked.append((e["serial"], index))
    for serial, records in tests_by_serial.items():
        if scope.order_id is not None:
            if serial not in attempted:
                continue
        elif scope.site_id is not None and scope.site_id not in test_sites[serial]:
            continue
        result.tests[serial] = records
    return result


def _order_in_scope(scope: Scope, order_id: str | None, order_sites: dict[str, str]) -> bool:
    if scope.order_id is not None and order_id != scope.order_id:
        return False
    return not (scope.site_id is not None and order_id is not None and order_sites.get(order_id) != scope.site_id)


def _lease(result: Reconciliation, scope: Scope, e: dict[str, Any], order_sites: dict[str, str]) -> None:
    """A lease issued (its units leave the order) or closed (its unused units come back), in scope."""
    if not (scope.in_period(e["at"]) and _order_in_scope(scope, e.get("order_id"), order_sites)):
        return
    detail = e.get("detail") or {}
    lease_id = str(detail.get("lease_id"))
    if e["kind"] == "lease.issued":
        result.leased[lease_id] = int(detail.get("units", 0))
    else:
        result.lease_ends[lease_id] = (int(detail.get("made", 0)), int(detail.get("returned", 0)))
