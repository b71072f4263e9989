"""The drift-ack ledger: parsing with file:line errors, matching, expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dualdc.loader import TopologyError, load_environment
from dualdc.model import Layer
from dualdc.ops.ack import load_ledger
from dualdc.reports.drift import DriftItem, ItemStatus

TODAY = dt.date(2025, 6, 1)


def item(item_id: str) -> DriftItem:
    host = item_id.partition(":")[2].split("/", 1)[0]
    return DriftItem(
        id=item_id, layer=Layer.HOSTS, target=host, status=ItemStatus.DRIFT, summary="changed", host=host
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drift-ack.yaml"
    path.write_text(text, encoding="utf-8")
    return path


LEDGER = """\
acknowledgements:
- target: "host:gj-log-01/base : Configure journald"
  reason: The vendor agent rewrites journald.conf until CHG-1234 ships.
  owner: ops-kim
  expires: 2025-06-30
  reference: CHG-1234
- target: "host:jj-ntp-01/*"
  reason: chrony is being migrated by hand on this host this week.
  owner: ops-lee
  expires: 2025-05-31
"""


def test_acknowledged_expired_and_unacknowledged_items(tmp_path: Path) -> None:
    ledger = load_ledger(write(tmp_path, LEDGER), load_environment("lab"))
    items = [
        item("host:gj-log-01/base : Configure journald"),
        item("host:jj-ntp-01/time_sync : Configure chrony"),
        item("host:gj-log-01/base : Configure sshd"),
    ]
    acks = ledger.apply(items, TODAY)
    assert [i.status for i in items] == [ItemStatus.ACKNOWLEDGED, ItemStatus.ACK_EXPIRED, ItemStatus.DRIFT]
    assert items[0].acknowledged_by == "host:gj-log-01/base : Configure journald"
    assert items[2].acknowledged_by is None
    assert [(a.expired, a.matched) for a in acks] == [
        (False, ["host:gj-log-01/base : Configure journald"]),
        (True, ["host:jj-ntp-01/time_sync : Configure chrony"]),
    ]
    assert acks[0].location.endswith("drift-ack.yaml:2") and acks[1].location.endswith("drift-ack.yaml:7")
    assert acks[0].reference == "CHG-1234"
    # The expiry day itself still holds; the day after does not.
    again = [item("host:gj-log-01/base : Configure journald")]
    ledger.apply(again, dt.date(2025, 7, 1))
    assert again[0].status is ItemStatus.ACK_EXPIRED


def test_a_valid_entry_wins_over_an_expired_one(tmp_path: Path) -> None:
    ledger = load_ledger(
        write(
            tmp_path,
            LEDGER
            + """\
- target: "host:jj-ntp-01/time_sync : *"
  reason: Renewed for the chrony migration, see CHG-1300.
  owner: ops-lee
  expires: 2025-06-15
""",
        )
    )
    items = [item("host:jj-ntp-01/time_sync : Configure chrony")]
    ledger.apply(items, TODAY)
    assert items[0].status is ItemStatus.ACKNOWLEDGED
    assert items[0].acknowledged_by == "host:jj-ntp-01/time_sync : *"


def test_missing_or_empty_ledger_is_empty(tmp_path: Path) -> None:
    assert load_ledger(tmp_path / "drift-ack.yaml").entries == []
    assert load_ledger(write(tmp_path, "# nothing acknowledged\n")).entries == []


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        (
            "acknowledgements:\n- target: host:gj-log-01/x\n  owner: ops-kim\n  expires: 2025-01-01\n",
            ":2:3: acknowledgements[0].reason",
            "required field is missing",
        ),
        (
            "acknowledgements:\n- target: host:gj-log-01/x\n  reason: a good reason here\n  owner: ops\n"
            "  expires: 2025-01-01\n  approved: yes\n",
            ":6:13: acknowledgements[0].approved",
            "unknown field",
        ),
        (
            "acknowledgements:\n- target: model:NS-01/segment:x\n  reason: a good reason here\n  owner: ops\n"
            "  expires: 2025-01-01\n",
            ":2:11: acknowledgements[0].target",
            "waived in the topology",
        ),
        (
            "acknowledgements:\n- target: 'host:*'\n  reason: a good reason here\n  owner: ops\n"
            "  expires: 2025-01-01\n",
            ":2:11: acknowledgements[0].target",
            "every host drift",
        ),
        (
            "acknowledgements:\n- target: vm:x\n  reason: a good reason here\n  owner: ops\n"
            "  expires: 2025-01-01\n",
            ":2:11: acknowledgements[0].target",
            "starts with one of host:, stack:, lab:",
        ),
        (
            "acknowledgements:\n- target: host:gj-log-01/x\n  reason: a good reason here\n  owner: ops\n"
            "  expires: next week\n",
            ":5:12: acknowledgements[0].expires",
            "valid date",
        ),
        (
            "acknowledgements:\n- target: host:gj-log-01/x\n  target: host:gj-log-01/y\n",
            ":3:3:",
            "duplicate key 'target'",
        ),
        ("acknowledgements: [\n", ":2:1:", "invalid YAML"),
        ("acknowledgements:\n- &a {target: x}\n- *a\n", ":", "anchors and aliases are not allowed"),
    ],
)
def test_problems_name_file_line_and_field(tmp_path: Path, text: str, where: str, expected: str) -> None:
    with pytest.raises(TopologyError) as raised:
        load_ledger(write(tmp_path, text))
    message = str(raised.value)
    assert f"drift-ack.yaml{where}" in message, message
    assert expected in message, message


def test_unknown_host_is_an_error_with_the_line(tmp_path: Path) -> None:
    text = LEDGER.replace("host:jj-ntp-01/*", "host:jj-ntp-09/*")
    with pytest.raises(TopologyError) as raised:
        load_ledger(write(tmp_path, text), load_environment("lab"))
    assert "drift-ack.yaml:7:11: acknowledgements[1].target: no host 'jj-ntp-09'" in str(raised.value)


def test_the_topology_loader_skips_the_ledger(tmp_path: Path) -> None:
    env = tmp_path / "lab"
    env.mkdir()
    for source in Path("inventories/lab").glob("*.yaml"):
        (env / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    (env / "drift-ack.yaml").write_text(LEDGER, encoding="utf-8")
    assert len(load_environment("lab", tmp_path).hosts) == len(load_environment("lab").hosts)
