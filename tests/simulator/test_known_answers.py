"""Known answers for what the simulator signs, independent of the core's verifier.

Protocol reference §13 V5: with WeChat's published test key, timestamp 1554208460 and
nonce c5ac7061fccab6bf3e254dcf98995b8c, the response body
``{"code_url":"weixin://wxpay/bizpayurl?pr=JyC91EIz1"}`` and the empty 204 body have
fixed signatures (PKCS#1 v1.5 is deterministic). The simulator's own response path
must produce exactly those bytes.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.simulator.merchants import PlatformCertificateKey
from wxpaykit.simulator.responses import signed_response
from wxpaykit.testing.keys import generate_certificate
from wxpaykit.testing.simulator import FakeClock, new_merchant

V5_BODY_SIGNATURE = (
    "SCW7jJwBM7xxgkbAYO66wFRaKJ+W3l5apNorqgXf+sw7l6kL2tF+Dx2F79t1TDP/n9fkPOsrRtDbxk4aRk5CX1m4eRBX1P+r"
    "jLTMtI/mn9KXsoKQkpGvyngzxudVIfvVcHbMLqgupmd6nOPOS6iYBpcUaPjDBntnYjBTFq0UF5xCqsKuUCcedxRyuZaNrGW1"
    "gxOg/G+PYoenmIXnbdzbvIFr+GUHqw336sZvJ2c/n97kvwOjJ6p1ew5Zvo9vHrO2pQhSA45w4I92TWl5oOWFhEqQxFfiqp8l"
    "zOi09sYPxYOjpq0Mb1Ouweuvp0LpEgYYhq4zQzTvtBDor7SQFmGAQA=="
)
V5_EMPTY_SIGNATURE = (
    "oDjn4xiMBa3OqSKOKVpTFIx2ICSKlvMgd5kH8WlgKTEJp8s9MlID9clpfYmtynTJOUz8DSuc+jYIj7ZSjWP6Dh8rDbCp2X6w"
    "HJl2qyXFRHf7wSvkZalD+Y7O3AUxw6XX6XcrPQwgJgSpP04TR/bI/AIsD78Kg1i9W0/8sn/v+6hqqGtiVVK8Fri21p+XX8wL"
    "69bNOncN1/HJ/FTR9yHPLzS0NQa5LTrwXP8K2P6QFVKyy4h7XgAvW40jQ0gpk7pLBmGTJb6IU+0OpQKEPnRpDbJtvaBjP1Lx"
    "Pn/JUnYQrzh38+MmT+is9O9tdYevnwPwkHLYC5jf8P1BqByqMDAJ5w=="
)
TIMESTAMP = 1554208460
NONCE = "c5ac7061fccab6bf3e254dcf98995b8c"


def test_response_signatures_match_protocol_vector_v5(
    official_private_key: rsa.RSAPrivateKey,
) -> None:
    merchant = new_merchant("certificate", now=TIMESTAMP)
    certificate = generate_certificate("Tenpay.com Root CA", private_key=official_private_key)
    merchant.platform_certificates = [
        PlatformCertificateKey(
            certificate=certificate.certificate, private_key=official_private_key
        )
    ]
    clock = FakeClock(TIMESTAMP)
    body = signed_response(
        merchant, clock, document={"code_url": "weixin://wxpay/bizpayurl?pr=JyC91EIz1"}, nonce=NONCE
    )
    assert body.body == b'{"code_url":"weixin://wxpay/bizpayurl?pr=JyC91EIz1"}'
    assert body.headers["Wechatpay-Signature"] == V5_BODY_SIGNATURE
    assert body.headers["Wechatpay-Timestamp"] == str(TIMESTAMP)
    assert body.headers["Wechatpay-Serial"] == certificate.serial_no
    empty = signed_response(merchant, clock, document=None, status=204, nonce=NONCE)
    assert empty.body == b""
    assert empty.headers["Wechatpay-Signature"] == V5_EMPTY_SIGNATURE
    assert "content-type" not in empty.headers
