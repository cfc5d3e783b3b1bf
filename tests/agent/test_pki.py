"""fleet/pki.py: certificates chain to the CA with the right identity and
usage, files are never silently overwritten, the CSR flow grants a device
certificate and nothing more, and the ACL binds each identity."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from fleet.cli import main as fleet_main
from fleet.pki import (
    DeviceGrant,
    PkiError,
    init_ca,
    issue,
    make_csr,
    new_key,
    render_acl,
    sign_csr,
)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def eku(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    init_ca(tmp_path / "ca", "test CA")
    return tmp_path / "ca"


def test_ca_is_a_self_signed_leaf_only_ca_with_a_private_key(ca_dir: Path) -> None:
    ca = load(ca_dir / "ca.crt")
    ca.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("role", "name", "usage"),
    [
        ("device", "cam-01", ExtendedKeyUsageOID.CLIENT_AUTH),
        ("subscriber", "central", ExtendedKeyUsageOID.CLIENT_AUTH),
        ("operator", "fleet-ops", ExtendedKeyUsageOID.CLIENT_AUTH),
        ("auditor", "egress-audit", ExtendedKeyUsageOID.CLIENT_AUTH),
        ("server", "broker", ExtendedKeyUsageOID.SERVER_AUTH),
    ],
)
def test_issued_cert_chains_to_the_ca_with_cn_and_one_usage(
    ca_dir: Path, tmp_path: Path, role: str, name: str, usage
) -> None:
    cert_path, key_path = issue(ca_dir, name, tmp_path / "out", role)
    cert = load(cert_path)
    cert.verify_directly_issued_by(load(ca_dir / "ca.crt"))
    assert cn(cert) == name
    assert eku(cert) == [usage]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_server_cert_passes_a_full_path_check_and_a_device_cert_does_not(
    ca_dir: Path, tmp_path: Path
) -> None:
    """The RFC 5280 path check a TLS client does, not just a signature.
    (Client certs are checked by the real broker in the integration tests:
    cryptography's client verifier wants a SAN, which mosquitto ignores.)"""
    store = Store([load(ca_dir / "ca.crt")])
    server = load(issue(ca_dir, "broker", tmp_path, "server")[0])
    device = load(issue(ca_dir, "cam-01", tmp_path, "device")[0])
    for subject in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        PolicyBuilder().store(store).build_server_verifier(subject).verify(server, [])
    # A device certificate can never pose as the broker.
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("localhost")).verify(device, [])


def test_existing_files_are_never_overwritten_without_force(ca_dir: Path, tmp_path: Path) -> None:
    ca_before = (ca_dir / "ca.key").read_bytes()
    with pytest.raises(PkiError, match="refusing to overwrite"):
        init_ca(ca_dir, "again")
    assert (ca_dir / "ca.key").read_bytes() == ca_before

    cert_path, key_path = issue(ca_dir, "cam-01", tmp_path / "out")
    key_before = key_path.read_bytes()
    with pytest.raises(PkiError, match="refusing to overwrite"):
        issue(ca_dir, "cam-01", tmp_path / "out")
    assert key_path.read_bytes() == key_before

    issue(ca_dir, "cam-01", tmp_path / "out", force=True)
    assert key_path.read_bytes() != key_before
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", ["", "a/b", "cam+", "cam#", "$SYS", "has space", "groups", "x" * 65])
def test_ids_unsafe_as_username_or_topic_level_are_refused(ca_dir: Path, tmp_path: Path, bad: str) -> None:
    with pytest.raises(PkiError):
        issue(ca_dir, bad, tmp_path)
    assert not any(tmp_path.glob("*.key"))


def test_issue_without_a_ca_says_so(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="no CA in"):
        issue(tmp_path / "nope", "cam-01", tmp_path)


def test_csr_flow_gives_a_device_cert_for_the_boxs_own_key(ca_dir: Path) -> None:
    key = new_key()
    cert = x509.load_pem_x509_certificate(sign_csr(ca_dir, make_csr(key, "cam-07")))
    cert.verify_directly_issued_by(load(ca_dir / "ca.crt"))
    assert cn(cert) == "cam-07"
    assert cert.public_key() == key.public_key()
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_sign_csr_ignores_requested_extensions(ca_dir: Path) -> None:
    """A box asking to be a CA or a server gets a plain device cert."""
    key = ec.generate_private_key(ec.SECP256R1())
    greedy = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cam-08")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("broker.example")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert = x509.load_pem_x509_certificate(sign_csr(ca_dir, pem(greedy)))
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_sign_csr_refuses_garbage_and_unsafe_names(ca_dir: Path) -> None:
    with pytest.raises(PkiError, match="not a PEM CSR"):
        sign_csr(ca_dir, b"not a csr")
    # make_csr refuses this name; a hand-made CSR must be refused at the CA too.
    sneaky = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cam/../central")]))
        .sign(new_key(), hashes.SHA256())
    )
    with pytest.raises(PkiError, match="must match"):
        sign_csr(ca_dir, pem(sneaky))


def test_acl_binds_device_to_its_site_and_groups_only() -> None:
    text = render_acl(
        {"cam-a": DeviceGrant("s1", ("lobby",)), "cam-b": DeviceGrant("s2", ())},
        subscribers=["central"],
        operators=["ops"],
    )
    block_a = text.split("user cam-a\n")[1].split("\n\n")[0].splitlines()
    assert block_a == [
        "topic write edge/v1/s1/cam-a/events/#",
        "topic write edge/v1/s1/cam-a/status",
        "topic write edge/v1/s1/cam-a/health",
        "topic write edge/v1/s1/cam-a/ota/status",
        "topic read edge/v1/s1/cam-a/ota/#",
        "topic readwrite edge/v1/s1/cam-a/doctor",
        "topic read edge/v1/s1/groups/lobby/ota/#",
    ]
    assert "pattern" not in text  # see render_acl: patterns cannot bind the site
    assert "user central\ntopic read edge/v1/+/+/events/#" in text


def test_acl_refuses_an_identity_in_two_roles() -> None:
    with pytest.raises(PkiError, match="appears twice"):
        render_acl({"central": DeviceGrant("s1")}, subscribers=["central"])


def test_cli_round_trip_and_exit_code_2_on_refusal(tmp_path: Path, capsys) -> None:
    ca, out = tmp_path / "ca", tmp_path / "box"
    assert fleet_main(["pki", "init-ca", str(ca)]) == 0
    assert fleet_main(["pki", "issue", str(ca), "central", "--role", "subscriber", "--out", str(out)]) == 0
    assert fleet_main(["pki", "csr", "cam-09", "--out", str(out)]) == 0
    cert = tmp_path / "cam-09.crt"
    assert fleet_main(["pki", "sign-csr", str(ca), str(out / "cam-09.csr"), "-o", str(cert)]) == 0
    assert cn(load(cert)) == "cam-09"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("devices: {cam-09: {site: s1, groups: [lobby]}}\nsubscribers: [central]\n")
    assert fleet_main(["pki", "acl", str(inventory), "-o", str(tmp_path / "acl")]) == 0
    assert "user cam-09" in (tmp_path / "acl").read_text()

    with pytest.raises(SystemExit) as refused:
        fleet_main(["pki", "init-ca", str(ca)])
    assert refused.value.code == 2
    assert "refusing to overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(("inventory", "says"), [
    ("devices:\n  cam-01: {site: paris-01, groups: lobby}\n", "cam-01.groups: give a list of names, e.g. [lobby]"),
    ("operators: ops\n", "operators: give a list of names, e.g. [ops]"),
    ("subscribers: [central, yes]\n", "subscribers: True is not a name: quote"),
    ("operators: no\n", "operators: give a list of names"),
    ("devices:\n  cam-01: {site: on}\n", "cam-01.site: True is not a name"),
])  # fmt: skip
def test_an_inventory_name_that_is_not_in_a_list_is_refused_not_spelled_out(tmp_path: Path, capsys, inventory: str,
                                                                             says: str) -> None:
    # `operators: ops` once granted OTA writes to the identities o, p and s
    (tmp_path / "inv.yaml").write_text(inventory)
    with pytest.raises(SystemExit) as refused:
        fleet_main(["pki", "acl", str(tmp_path / "inv.yaml"), "-o", str(tmp_path / "acl")])
    assert refused.value.code == 2 and says in capsys.readouterr().err and not (tmp_path / "acl").exists()
