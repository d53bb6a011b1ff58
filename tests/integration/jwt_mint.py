"""Minting JWTs for the tests, with python3-cryptography (Debian's).

Keys are made once per process (RSA generation is slow); tokens are signed
the way RFC 7515/7518/8037 say, ECDSA signatures as raw R || S.
"""
import base64
import hashlib
import hmac
import json
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"]
HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
CURVE = {"ES256": (ec.SECP256R1, "P-256", 32), "ES384": (ec.SECP384R1, "P-384", 48),
         "ES512": (ec.SECP521R1, "P-521", 66)}
SECRET = b"s3cret-for-hmac-tests-0123456789abcdef"  # 38 bytes


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))


class Keys:
    """One key per kind: rsa, ec per curve, ed25519; and their JWKS."""

    def __init__(self, prefix="k"):
        self.prefix = prefix
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = {alg: ec.generate_private_key(c[0]()) for alg, c in CURVE.items()}
        self.ed = ed25519.Ed25519PrivateKey.generate()

    def kid(self, alg):
        kind = "rsa" if alg[0] in "RP" else "ed" if alg == "EdDSA" else alg.lower()
        return "%s-%s" % (self.prefix, kind)

    def jwks(self):
        pub = self.rsa.public_key().public_numbers()
        keys = [{"kty": "RSA", "kid": self.kid("RS256"), "use": "sig",
                 "n": _int_b64(pub.n), "e": _int_b64(pub.e)}]
        for alg, (_, crv, size) in CURVE.items():
            nums = self.ec[alg].public_key().public_numbers()
            keys.append({"kty": "EC", "kid": self.kid(alg), "crv": crv,
                         "x": _int_b64(nums.x, size), "y": _int_b64(nums.y, size)})
        raw = self.ed.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        keys.append({"kty": "OKP", "kid": self.kid("EdDSA"), "crv": "Ed25519", "x": b64(raw)})
        return {"keys": keys}

    def rsa_public_pem(self):
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, alg, data, secret=SECRET):
        if alg.startswith("HS"):
            return hmac.new(secret, data, getattr(hashlib, "sha" + alg[2:])).digest()
        if alg.startswith("RS"):
            return self.rsa.sign(data, padding.PKCS1v15(), HASH[alg[2:]]())
        if alg.startswith("PS"):
            h = HASH[alg[2:]]()
            return self.rsa.sign(data, padding.PSS(mgf=padding.MGF1(h),
                                                   salt_length=h.digest_size), h)
        if alg.startswith("ES"):
            der = self.ec[alg].sign(data, ec.ECDSA(HASH[alg[2:]]()))
            r, s = decode_dss_signature(der)
            size = CURVE[alg][2]
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if alg == "EdDSA":
            return self.ed.sign(data)
        raise ValueError(alg)

    def token(self, alg, claims, header=None, secret=SECRET, kid=True):
        hdr = {"alg": alg, "typ": "JWT"}
        if kid and not alg.startswith("HS"):
            hdr["kid"] = self.kid(alg)
        hdr.update(header or {})
        signing = (b64(json.dumps(hdr).encode()) + "." +
                   b64(json.dumps(claims).encode())).encode()
        return signing.decode() + "." + b64(self.sign(alg, signing, secret))


def claims(iss="https://idp.test/", sub="user-1", lifetime=3600, now=None, **more):
    now = int(time.time()) if now is None else now
    c = {"iss": iss, "sub": sub, "iat": now, "exp": now + lifetime}
    c.update(more)
    return c


def unsigned(claims_, alg="none"):
    """alg none: an empty signature."""
    return (b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." +
            b64(json.dumps(claims_).encode()) + ".")
