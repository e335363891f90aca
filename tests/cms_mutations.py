"""Structured mutations of a genuine CMS voucher, for the tests that compare
our verifier with itself (tests/unit/test_cms_paths.py) and with OpenSSL
(tests/e2e/test_cms_differential.py).

Random byte flips rarely get past the framing check; these keep the framing
valid and change the *structure* instead: an element inserted, removed or
duplicated at every position of every constructed element of the CMS layers
(not inside certificates or signed attributes, which have their own
checks), versions and algorithm identifiers swapped, BER re-encodings, and
a few byte flips for good measure. Each mutation is named, so a failure
says which one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from brski.asn1 import der_element, encode_length, encode_oid

__all__ = ["Node", "decode", "encode", "mutations"]


@dataclass
class Node:
    ident: int
    value: bytes | list[Node]

    def copy(self) -> Node:
        if isinstance(self.value, list):
            return Node(self.ident, [c.copy() for c in self.value])
        return Node(self.ident, self.value)


def decode(der: bytes, start: int = 0, end: int | None = None) -> list[Node]:
    """Every element in ``der[start:end]`` as a tree (plain DER, low tags)."""
    end = len(der) if end is None else end
    out: list[Node] = []
    pos = start
    while pos < end:
        ident, _, cs, ce = der_element(der, pos, end)
        value: bytes | list[Node] = decode(der, cs, ce) if ident & 0x20 else der[cs:ce]
        out.append(Node(ident, value))
        pos = ce
    return out


def encode(node: Node, *, indefinite: bool = False) -> bytes:
    if isinstance(node.value, list):
        body = b"".join(encode(c, indefinite=indefinite) for c in node.value)
        if indefinite:
            return bytes([node.ident]) + b"\x80" + body + b"\x00\x00"
        return bytes([node.ident]) + encode_length(len(body)) + body
    return bytes([node.ident]) + encode_length(len(node.value)) + node.value


Path = tuple[int, ...]


def _at(root: Node, path: Path) -> Node:
    node = root
    for index in path:
        assert isinstance(node.value, list)
        node = node.value[index]
    return node


def _known_names(root: Node) -> dict[Path, str]:
    known: dict[Path, str] = {
        (): "ContentInfo",
        (1,): "ContentInfo/[0]",
        (1, 0): "SignedData",
        (1, 0, 1): "SignedData/digestAlgorithms",
        (1, 0, 2): "SignedData/encapContentInfo",
        (1, 0, 2, 1): "SignedData/eContent[0]",
    }
    sd = _at(root, (1, 0))
    assert isinstance(sd.value, list)
    for i, child in enumerate(sd.value):
        if child.ident == 0xA0 and i >= 3:
            known[(1, 0, i)] = "SignedData/certificates"
        if child.ident == 0x31 and i >= 3:
            known[(1, 0, i)] = "SignedData/signerInfos"
            known[(1, 0, i, 0)] = "SignerInfo"
            signer_info = _at(root, (1, 0, i, 0))
            assert isinstance(signer_info.value, list)
            for j, field in enumerate(signer_info.value):
                if field.ident == 0xA0:
                    known[(1, 0, i, 0, j)] = "SignerInfo/signedAttrs"
                elif j == 1 and field.ident == 0x30:
                    known[(1, 0, i, 0, j)] = "SignerInfo/IssuerAndSerialNumber"
    return known


def _cms_paths(root: Node) -> list[tuple[Path, str]]:
    """Constructed nodes of the CMS layers, with a readable name each;
    certificates and signed attributes are not entered (checks of their own)."""
    known = _known_names(root)
    out: list[tuple[Path, str]] = []

    def visit(node: Node, path: Path, name: str) -> None:
        if not isinstance(node.value, list):
            return
        out.append((path, name))
        if name.endswith(("certificates", "signedAttrs")):
            return
        for i, child in enumerate(node.value):
            child_path = (*path, i)
            visit(child, child_path, known.get(child_path, f"{name}/{i}"))

    visit(root, (), "ContentInfo")
    return out


GARBAGE = {
    "null": Node(0x05, b""),
    "octets": Node(0x04, b"\x00"),
    "int": Node(0x02, b"\x01"),
    "ctx5": Node(0x85, b"\x00"),
    "empty-seq": Node(0x30, []),
    "oid": Node(0x06, encode_oid("1.2.3.4")[2:]),
}


def _structural(root: Node) -> Iterator[tuple[str, Node]]:
    for path, name in _cms_paths(root):
        node = _at(root, path)
        assert isinstance(node.value, list)
        count = len(node.value)
        for position in sorted({0, count // 2, count}):
            for label, garbage in GARBAGE.items():
                mutant = root.copy()
                target = _at(mutant, path)
                assert isinstance(target.value, list)
                target.value.insert(position, garbage.copy())
                yield f"insert {label} into {name} at {position}", mutant
        for index in range(count):
            mutant = root.copy()
            target = _at(mutant, path)
            assert isinstance(target.value, list)
            del target.value[index]
            yield f"delete {name}[{index}]", mutant
            mutant = root.copy()
            target = _at(mutant, path)
            assert isinstance(target.value, list)
            target.value.insert(index, target.value[index].copy())
            yield f"duplicate {name}[{index}]", mutant


def _signer_info_path(root: Node) -> Path:
    sd = _at(root, (1, 0))
    assert isinstance(sd.value, list)
    return (1, 0, len(sd.value) - 1, 0)


_DIGESTS = {
    "sha1": "1.3.14.3.2.26",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_SIGNATURES = {
    "ecdsa-sha256": "1.2.840.10045.4.3.2",
    "ecdsa-sha384": "1.2.840.10045.4.3.3",
    "ecdsa-sha512": "1.2.840.10045.4.3.4",
    "ecdsa-sha1": "1.2.840.10045.4.1",
    "ecPublicKey": "1.2.840.10045.2.1",
    "rsa-sha256": "1.2.840.113549.1.1.11",
}


def _alg(oid: str) -> Node:
    return Node(0x30, [Node(0x06, encode_oid(oid)[2:])])


def _values(root: Node) -> Iterator[tuple[str, Node]]:
    si_path = _signer_info_path(root)
    signer_info = _at(root, si_path)
    assert isinstance(signer_info.value, list)
    sig_index = next(i for i, f in enumerate(signer_info.value) if f.ident == 0x04) - 1
    for version in (b"\x00", b"\x02", b"\x03", b"\x04", b"\x05", b"\x7f", b"\xff", b"\x00\x01", b"\x01" * 9):
        for label, path in (("SignerInfo", (*si_path, 0)), ("SignedData", (1, 0, 0))):
            mutant = root.copy()
            _at(mutant, path).value = version
            yield f"{label} version {version.hex()}", mutant
    for name, oid in _DIGESTS.items():
        mutant = root.copy()
        _at(mutant, (*si_path, 2)).value = _alg(oid).value
        yield f"SignerInfo digestAlgorithm {name}", mutant
        mutant = root.copy()
        _at(mutant, (1, 0, 1)).value = [_alg(oid)]
        yield f"digestAlgorithms {{{name}}}", mutant
        mutant = root.copy()
        _at(mutant, (*si_path, 2)).value = _alg(oid).value
        _at(mutant, (1, 0, 1)).value = [_alg(oid)]
        yield f"both digest algorithms {name}", mutant
    mutant = root.copy()
    _at(mutant, (1, 0, 1)).value = []
    yield "digestAlgorithms empty", mutant
    for name, oid in _SIGNATURES.items():
        mutant = root.copy()
        _at(mutant, (*si_path, sig_index)).value = _alg(oid).value
        yield f"signatureAlgorithm {name}", mutant
    mutant = root.copy()
    _at(mutant, (*si_path, sig_index)).value = [*_alg(_SIGNATURES["ecdsa-sha256"]).value, Node(0x05, b"")]
    yield "signatureAlgorithm with NULL parameters", mutant
    for label, extra in (
        ("unsignedAttrs empty", Node(0xA1, [])),
        ("unsignedAttrs garbage", Node(0xA1, [Node(0x04, b"\x00")])),
        ("unsignedAttrs attribute without values", Node(0xA1, [Node(0x30, [Node(0x06, encode_oid("1.2.3")[2:]), Node(0x31, [])])])),
        ("unsignedAttrs well-formed", Node(0xA1, [Node(0x30, [Node(0x06, encode_oid("1.2.840.113549.1.9.6")[2:]), Node(0x31, [Node(0x04, b"x")])])])),
    ):
        mutant = root.copy()
        target = _at(mutant, si_path)
        assert isinstance(target.value, list)
        target.value.append(extra)
        yield label, mutant
    sd_path = (1, 0)
    for label, crls in (
        ("crls garbage", Node(0xA1, [Node(0x04, b"\x00")])),
        ("crls empty-sequence", Node(0xA1, [Node(0x30, [])])),
        ("crls empty", Node(0xA1, [])),
    ):
        mutant = root.copy()
        target = _at(mutant, sd_path)
        assert isinstance(target.value, list)
        target.value.insert(len(target.value) - 1, crls)
        yield label, mutant
    for label, cert in (
        ("certificates holds an attribute certificate tag", Node(0xA2, [Node(0x30, [])])),
        ("certificates holds an OCTET STRING", Node(0x04, b"\x00")),
        ("certificates holds an other-format [3]", Node(0xA3, [Node(0x06, encode_oid("1.2.3")[2:]), Node(0x05, b"")])),
    ):
        mutant = root.copy()
        sd = _at(mutant, sd_path)
        assert isinstance(sd.value, list)
        certs = next(c for c in sd.value[3:] if c.ident == 0xA0)
        assert isinstance(certs.value, list)
        certs.value.append(cert)
        yield label, mutant
    mutant = root.copy()
    eContent = _at(mutant, (1, 0, 2, 1))
    assert isinstance(eContent.value, list)
    eContent.value.append(eContent.value[0].copy())
    yield "eContent holds two OCTET STRINGs", mutant
    mutant = root.copy()
    eContent = _at(mutant, (1, 0, 2, 1))
    assert isinstance(eContent.value, list)
    inner = eContent.value[0]
    assert isinstance(inner.value, bytes)
    half = len(inner.value) // 2
    eContent.value[0] = Node(0x24, [Node(0x04, inner.value[:half]), Node(0x04, inner.value[half:])])
    yield "eContent as constructed OCTET STRING", mutant


def mutations(der: bytes, *, flips: int = 60, seed: int = 5652) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) for every mutation of the ContentInfo ``der``."""
    (root,) = decode(der)
    assert encode(root) == der, "not plain DER"
    for name, mutant in (*_structural(root), *_values(root)):
        yield name, encode(mutant)
    # BER: the same tree with every CMS layer indefinite (certificates stay DER).
    yield "BER indefinite outer layers", _ber_outer(root)
    # Flips outside the carried certificates: their contents are the chain
    # validator's business (brski.pki), not the CMS layer's.
    skip = _certificates_span(der)
    positions = [i for i in range(len(der)) if not skip[0] <= i < skip[1]]
    rng = random.Random(seed)
    for i in range(flips):
        blob = bytearray(der)
        index = rng.choice(positions)
        blob[index] ^= 1 << rng.randrange(8)
        yield f"flip {i} at {index}", bytes(blob)


def _certificates_span(der: bytes) -> tuple[int, int]:
    _, _, cs, ce = der_element(der, 0, len(der))
    _, _, cs, ce = der_element(der, der_element(der, cs, ce)[3], ce)  # [0] content
    _, _, cs, ce = der_element(der, cs, ce)  # SignedData
    pos = cs
    while pos < ce:
        ident, start, _, end = der_element(der, pos, ce)
        if ident == 0xA0:
            return start, end
        pos = end
    return 0, 0


def _ber_outer(root: Node) -> bytes:
    def enc(node: Node, depth: int) -> bytes:
        if not isinstance(node.value, list) or depth > 3:
            return encode(node)
        body = b"".join(enc(c, depth + 1) for c in node.value)
        return bytes([node.ident]) + b"\x80" + body + b"\x00\x00"

    return enc(root, 0)
