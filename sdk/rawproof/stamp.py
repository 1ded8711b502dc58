"""``rawproof timestamp``: add an RFC 3161 time stamp to an image that was signed offline.

The command-line face of :func:`rawproof.provenance.add_time_stamp`::

    rawproof timestamp photo.jpg -o photo_ts.jpg --sign-cert chain.pem --sign-key key.pem --tsa http://tsa.example/

Run it once the device (or a trusted service) is online and before the signing
certificate expires; the capture's signature then stays valid after the certificate
expires (docs/provenance.md, "Time stamps").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rawproof.errors import SigningError

__all__ = ["register"]


def _run_cli(args: argparse.Namespace) -> int:
    from rawproof.develop import ImageEncoding
    from rawproof.provenance import Signer, add_time_stamp

    src = Path(args.image)
    try:
        data = src.read_bytes()
    except OSError as e:
        raise SigningError(f"cannot read {src}: {e}") from e
    mime = ImageEncoding.from_path(src).mime
    with Signer.from_files(args.sign_cert, args.sign_key, alg=args.sign_alg, tsa_url=args.tsa) as signer:
        out = add_time_stamp(data, mime, signer)
    dst = Path(args.out) if args.out else src.with_name(f"{src.stem}_timestamped{src.suffix}")
    dst.write_bytes(out)
    print(f"{dst}: time stamp from {args.tsa} added in an update manifest signed by {signer.subject}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof timestamp IMAGE [-o OUT] --sign-cert --sign-key --tsa URL``."""
    p = subparsers.add_parser("timestamp", help="time-stamp an image signed offline (C2PA update manifest)",
                              description=(__doc__ or "").strip().splitlines()[0])
    p.add_argument("image", help="signed JPEG/PNG")
    p.add_argument("-o", "--out", help="output file (default: IMAGE_timestamped with the same suffix)")
    p.add_argument("--sign-cert", required=True, help="certificate chain PEM of the update's signer (the device, or a trusted service)")
    p.add_argument("--sign-key", required=True, help="its private key PEM")
    p.add_argument("--sign-alg", default="es256", help="signature algorithm (default es256)")
    p.add_argument("--tsa", required=True, metavar="URL", help="RFC 3161 time-stamp authority")
    p.set_defaults(func=_run_cli)
