"""The lab's internal CA, host certificates and database secrets (made at lab.up; no lab needed)."""

from __future__ import annotations

import ipaddress
import stat
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dualdc.lab.pki import ensure_lab_pki


def test_lab_pki_is_made_once_and_signs_each_db_and_backup_host(topology_copy: Any, tmp_path: Any) -> None:
    folder = tmp_path / "pki"
    topology_copy.env["pki"] = {"ca_name": "test CA", "directory": str(folder)}
    topo = topology_copy.load()
    made = ensure_lab_pki(topo)
    hosts = [h for h in topo.hosts if h.role.value in ("db", "backup")]
    assert made == 1 + len(hosts) + len(topo.host_databases())
    assert ensure_lab_pki(topo) == 0  # idempotent
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for host in hosts:
        cert = x509.load_pem_x509_certificate((folder / f"{host.name}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == host.name
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(sans.get_values_for_type(x509.IPAddress)) == {ipaddress.IPv4Address(i.address)
                                                                 for i in host.interfaces}
        assert stat.S_IMODE((folder / f"{host.name}.key").stat().st_mode) == 0o600
    secrets = sorted(p.name for p in folder.glob("replication-*.secret"))
    assert secrets == ["replication-jb-core-banking.secret", "replication-kj-core-banking.secret"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.glob("*.secret"))
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600
    assert not (folder / "gj-ntp-01.crt").exists()


def test_an_environment_without_pki_gets_nothing(topology_copy: Any) -> None:
    del topology_copy.env["pki"]
    assert ensure_lab_pki(topology_copy.load()) == 0


def test_a_restarted_host_starts_only_the_daemons_a_converge_configured(tmp_path: Any) -> None:
    import subprocess

    from dualdc.lab.hosts import services_script

    root = tmp_path / "root"
    for folder in ("init.d", "cron.d", "chrony"):
        (root / "etc" / folder).mkdir(parents=True)
    started = tmp_path / "started"
    for service in ("chrony", "postgresql", "dualdc-pgbackrest", "cron"):
        script = root / "etc" / "init.d" / service
        script.write_text(f"#!/bin/sh\necho {service} $1 >> {started}\n", encoding="utf-8")
        script.chmod(0o755)
    (root / "etc" / "cron.d" / "dualdc-pgbackrest").write_text("", encoding="utf-8")
    # the package's chrony.conf, not the role's: chrony is not configured yet
    chrony_conf = root / "etc" / "chrony" / "chrony.conf"
    chrony_conf.write_text("pool 2.debian.pool.ntp.org iburst\n", encoding="utf-8")
    # no PostgreSQL cluster marker: postgresql is not one of them; no rsyslog init script either
    script = services_script(str(root))
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "2"
    assert started.read_text(encoding="utf-8").splitlines() == ["dualdc-pgbackrest start", "cron start"]
    # once the time_sync role wrote its chrony.conf, a restart starts chronyd too
    chrony_conf.write_text("# Managed by dualdc (Ansible)\nserver 10.0.0.1 iburst\n", encoding="utf-8")
    started.unlink()
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "3"
    assert started.read_text(encoding="utf-8").splitlines()[0] == "chrony start"
