"""The lab layer from the reachability probe's results (the lab tests run the probe for real)."""

from __future__ import annotations

from dualdc.lab.verify import Probe, Report, Result
from dualdc.loader import load_environment
from dualdc.ops.labprobe import layer_from_report, probe_id
from dualdc.reports.drift import LayerStatus, TargetStatus


def probe(
    n: int, kind: str, category: str, *, src: tuple[str, str], dst: tuple[str, str], port: int
) -> Probe:
    """A probe from (host, address) to (host, address)."""
    return Probe(
        f"p{n:04d}",
        kind,
        category,
        f"{category} reason",
        ("host", src[0]),
        src[1],
        ("host", dst[0]),
        dst[1],
        "tcp",
        port,
    )


def test_unexpected_results_are_drift_and_probes_not_run_are_unverified() -> None:
    lab = load_environment("lab")
    web, core = lab.host("gj-dmz-wk-01"), lab.host("gj-core-wk-01")
    web_ip = str(web.interfaces[-1].address)
    core_ip = str(core.interfaces[-1].address)
    jj = lab.host("jj-dmz-wk-01")
    report = Report(
        results=[
            Result(
                probe(
                    1,
                    "declared",
                    "flow kj-ib-to-api",
                    src=(web.name, web_ip),
                    dst=(core.name, core_ip),
                    port=9443,
                ),
                "open",
                True,
            ),
            Result(
                probe(
                    2,
                    "forbidden",
                    "dmz-to-internal",
                    src=(web.name, web_ip),
                    dst=(core.name, core_ip),
                    port=22,
                ),
                "open",
                False,
            ),
            Result(
                probe(
                    3,
                    "declared",
                    "flow kj-api-to-core",
                    src=(core.name, core_ip),
                    dst=(web.name, web_ip),
                    port=8443,
                ),
                "timeout",
                False,
            ),
            Result(
                probe(
                    4,
                    "declared",
                    "flow jj",
                    src=(jj.name, str(jj.interfaces[-1].address)),
                    dst=(core.name, core_ip),
                    port=443,
                ),
                "not run",
                False,
                "source jj-dmz-wk-01 is not running",
            ),
        ],
        seconds=3.2,
    )
    layer = layer_from_report(lab, report, ["gwangju", "jeonju"])
    assert layer.status is LayerStatus.DRIFT
    ids = [i.id for i in layer.items]
    assert ids == [
        f"lab:probe/forbidden:{web.name}->{core.name}:{core_ip}:22/tcp",
        f"lab:probe/declared:{core.name}->{web.name}:{web_ip}:8443/tcp",
    ]
    assert "forbidden connection is open" in layer.items[0].summary
    assert "declared flow is blocked" in layer.items[1].summary
    status = {t.name: t.status for t in layer.checked}
    assert status["forbidden:dmz-to-internal"] is TargetStatus.DRIFT
    assert status["declared:flow kj-ib-to-api"] is TargetStatus.CLEAN
    assert status["declared:flow jj"] is TargetStatus.NOT_CHECKED
    assert probe_id(report.results[0]) == f"lab:probe/declared:{web.name}->{core.name}:{core_ip}:9443/tcp"
    # only jeonju: the gwangju-only probes are left out, the jeonju one could not run
    only_jj = layer_from_report(lab, report, ["jeonju"])
    assert [t.name for t in only_jj.checked] == ["declared:flow jj"]
    assert only_jj.status is LayerStatus.UNVERIFIED
