"""Object identifiers and media types, declared once.

Every OID or media type the project puts on the wire or checks is named here
with the document that assigns it, so the rest of the code never spells a
dotted string or a MIME type by hand.
"""

from __future__ import annotations

from cryptography.x509.oid import ObjectIdentifier

__all__ = [
    "ID_AA_CERT_REQ_INFO_TEMPLATE",
    "ID_AA_EXTENSION_REQ_TEMPLATE",
    "ID_CT_ANIMA_CBOR_VOUCHER",
    "ID_CT_ANIMA_JSON_VOUCHER",
    "ID_DATA",
    "ID_EXTENSION_REQUEST",
    "ID_KP_CMC_RA",
    "ID_ON_HARDWARE_MODULE_NAME",
    "ID_PE_MASA_URL",
    "ID_PE_MUD_URL",
    "ID_SIGNED_DATA",
    "MT_CSRATTRS",
    "MT_JSON",
    "MT_OCSP_REQUEST",
    "MT_OCSP_RESPONSE",
    "MT_PKCS7_CERTS_ONLY",
    "MT_PKCS7_MIME",
    "MT_PKCS10",
    "MT_PKIX_CRL",
    "MT_PROBLEM_JSON",
    "MT_VOUCHER_CMS_JSON",
    "MT_VOUCHER_COSE_CBOR",
    "MT_VOUCHER_COSE_DRAFT",
    "MT_VOUCHER_JWS_JSON",
    "VOUCHER_MEDIA_ALIASES",
    "VOUCHER_MEDIA_TYPES",
]

# RFC 5652 section 4 / 5.1
ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
# RFC 8366 section 5.3 (eContentType of a CMS-signed JSON voucher)
ID_CT_ANIMA_JSON_VOUCHER = "1.2.840.113549.1.9.16.1.40"
# draft-ietf-anima-constrained-voucher (CBOR voucher in CMS, rarely used)
ID_CT_ANIMA_CBOR_VOUCHER = "1.2.840.113549.1.9.16.1.44"
# RFC 8995 section 2.3.2: MASA URI extension in the IDevID
ID_PE_MASA_URL = ObjectIdentifier("1.3.6.1.5.5.7.1.32")
# RFC 8520 section 10: id-pe-mud-url, MUDURLSyntax ::= IA5String.
ID_PE_MUD_URL = ObjectIdentifier("1.3.6.1.5.5.7.1.25")
# RFC 6402 section 2.10: id-kp-cmcRA, required on the registrar's
# voucher-request signing certificate (RFC 8995 section 5.5.4)
ID_KP_CMC_RA = ObjectIdentifier("1.3.6.1.5.5.7.3.28")
# RFC 4108 section 5: HardwareModuleName otherName, the 802.1AR way of naming
# a device serial in a SubjectAltName
ID_ON_HARDWARE_MODULE_NAME = ObjectIdentifier("1.3.6.1.5.5.7.8.4")

# RFC 2985 section 5.4.2: pkcs-9-at-extensionRequest (RFC 7030 section 4.5.2,
# RFC 9908 section 3.2: the one csrattrs attribute that carries extensions)
ID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
# RFC 9908 section 3.4 / IANA: CSR template attributes for /csrattrs
ID_AA_CERT_REQ_INFO_TEMPLATE = "1.2.840.113549.1.9.16.2.61"
ID_AA_EXTENSION_REQ_TEMPLATE = "1.2.840.113549.1.9.16.2.62"

# RFC 8366 section 8.3 / RFC 8995 section 8.3
MT_VOUCHER_CMS_JSON = "application/voucher-cms+json"
# draft-ietf-anima-constrained-voucher, section 9
MT_VOUCHER_COSE_CBOR = "application/voucher-cose+cbor"
# draft-ietf-anima-jws-voucher
MT_VOUCHER_JWS_JSON = "application/voucher-jws+json"
VOUCHER_MEDIA_TYPES = (MT_VOUCHER_CMS_JSON, MT_VOUCHER_COSE_CBOR, MT_VOUCHER_JWS_JSON)
# draft-ietf-anima-constrained-voucher-31 section 6/9 names the same COSE_Sign1
# format application/voucher+cose (CoAP content-format 836); accepted as input.
MT_VOUCHER_COSE_DRAFT = "application/voucher+cose"
# Other names a peer may use -> the media type this project answers with.
VOUCHER_MEDIA_ALIASES = {MT_VOUCHER_COSE_DRAFT: MT_VOUCHER_COSE_CBOR}

# RFC 7030 section 4
MT_PKCS10 = "application/pkcs10"
MT_PKCS7_MIME = "application/pkcs7-mime"
MT_PKCS7_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
MT_CSRATTRS = "application/csrattrs"
# RFC 2585 section 4.2 (CRL over HTTP); RFC 6960 Appendix A.1 / C (OCSP over HTTP).
MT_PKIX_CRL = "application/pkix-crl"
MT_OCSP_REQUEST = "application/ocsp-request"
MT_OCSP_RESPONSE = "application/ocsp-response"

MT_JSON = "application/json"
# RFC 9457
MT_PROBLEM_JSON = "application/problem+json"
