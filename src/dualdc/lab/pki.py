"""The lab's internal CA and database secrets, made at ``lab.up`` (idempotent).

A real environment names its internal CA (``environment.pki``) and supplies the files; the
lab twin makes its own, in the folder its environment names (under ``.state/``, never
committed):

- ``ca.crt`` and ``ca.key`` (the CA key stays here: no role copies it anywhere);
- per db and backup host, ``HOST.crt`` and ``HOST.key``: a certificate for both TLS server
  and client use, with the host's name and every interface address as subject alternative
  names, IP and DNS (PostgreSQL and pgBackRest connect by address and verify it);
- per host database, ``replication-SERVICE.secret``: its replication password.

Every key and secret file is mode 0600 and written atomically.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dualdc.base.files import write_atomic
from dualdc.base.paths import project_root
from dualdc.lab.errors import LabError
from dualdc.model import HostRole, Topology

VALID_DAYS = 825


def _write(path: Path, data: bytes, mode: int) -> None:
    write_atomic(path, data, mode=mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dualdc lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def pki_directory(topology: Topology) -> Path | None:
    pki = topology.environment.pki
    return None if pki is None else project_root() / pki.directory


def ensure_lab_pki(topology: Topology) -> int:
    """Make whatever is missing of the lab's CA, host certificates and secrets; the count made."""
    folder = pki_directory(topology)
    pki = topology.environment.pki
    if folder is None or pki is None:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    made = 0
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_crt, ca_key_path = folder / "ca.crt", folder / "ca.key"
    if not (ca_crt.is_file() and ca_key_path.is_file()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(_name(pki.ca_name)).issuer_name(_name(pki.ca_name))
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=VALID_DAYS * 2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(
                  digital_signature=False, content_commitment=False, key_encipherment=False,
                  data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                  encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        _write(ca_key_path, _key_pem(ca_key), 0o600)
        _write(ca_crt, ca.public_bytes(serialization.Encoding.PEM), 0o644)
        for old in folder.glob("*.crt"):
            if old.name != "ca.crt":
                old.unlink()  # signed by a CA that is gone
        made += 1
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise LabError(f"the lab CA in {folder} cannot be read ({exc}); "
                       "remove the folder to make a new one") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise LabError(f"the lab CA key in {folder} is not an EC key; remove the folder to make a new one")
    for host in topology.hosts:
        if host.role not in (HostRole.DB, HostRole.BACKUP):
            continue
        crt, key_path = folder / f"{host.name}.crt", folder / f"{host.name}.key"
        if crt.is_file() and key_path.is_file():
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(host.name)]
        names += [x509.IPAddress(ipaddress.IPv4Address(i.address)) for i in host.interfaces]
        # also as DNS names: pgBackRest's client matches the host it connects to against DNS names
        names += [x509.DNSName(str(i.address)) for i in host.interfaces]
        cert = (x509.CertificateBuilder().subject_name(_name(host.name)).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(loaded, hashes.SHA256()))
        _write(key_path, _key_pem(key), 0o600)
        _write(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        made += 1
    for svc in topology.host_databases():
        secret = folder / f"replication-{svc.name}.secret"
        if not secret.is_file():
            _write(secret, (secrets.token_urlsafe(24) + "\n").encode(), 0o600)
            made += 1
    return made
