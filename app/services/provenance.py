"""Provenance: what every output PNG says about where it came from, and checking what an image says.

An output PNG carries, beside the ``parameters`` and ``studio`` text chunks (``services.metadata``):

- XMP (an iTXt chunk ``XML:com.adobe.xmp``) with the IPTC ``DigitalSourceType``:
  ``trainedAlgorithmicMedia``, or ``compositeWithTrainedAlgorithmicMedia`` where an uploaded
  picture went into it (an inpainted upload, a style job over an uploaded content image);
- a C2PA manifest (Content Credentials, a ``caBX`` chunk written by ``c2pa-python``): the action
  (``c2pa.created``, or ``c2pa.opened`` + ``c2pa.edited`` over a source image), the model and the
  studio as its software agent, and the source, mask and style images as ingredients. It is
  signed with an ES256 key whose certificate chains to a root the studio makes on first start in
  its data dir (``STUDIO_C2PA_KEY_FILE`` / ``STUDIO_C2PA_CERT_FILE`` name a key and chain of your own);
- with ``STUDIO_WATERMARK=1``, an invisible watermark in the pixels (``services.watermark``), which
  survives a JPEG re-save where the manifest does not.

The manifest signs the final bytes, so those bytes are what the content-addressed store keeps and
hashes. Signing costs a couple of milliseconds: the manifest carries no thumbnails.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import struct
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

from PIL import Image

from app.config import Settings
from app.services import imageio
from app.services.watermark import add_watermark, has_watermark

STUDIO_NAME = "Painting Studio"
STUDIO_VERSION = "0.1.0"
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
XMP_KEY = "XML:com.adobe.xmp"

Role = Literal["source", "mask", "style"]


@dataclass(frozen=True)
class Ingredient:
    """An input picture of a generation, as stored (PNG bytes)."""

    role: Role
    title: str
    png: bytes


@dataclass(frozen=True)
class Origin:
    """What made an output: the model, the kind of step, its inputs."""

    model: str
    mode: str
    title: str
    source_type: str = TRAINED
    ingredients: tuple[Ingredient, ...] = ()

    @property
    def edited(self) -> bool:
        return any(ingredient.role == "source" for ingredient in self.ingredients)


def source_type_for(mode: str, *, source_is_upload: bool) -> str:
    """The IPTC digital source type: composite where an uploaded picture is part of the output."""
    if mode == "inpaint" or source_is_upload:
        return COMPOSITE
    return TRAINED


# -- XMP ------------------------------------------------------------------------------------------


def xmp_packet(origin: Origin) -> str:
    """An XMP packet naming the IPTC digital source type and the tool that made the picture."""
    tool = escape(f"{STUDIO_NAME} {STUDIO_VERSION} ({origin.model})")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        f'    Iptc4xmpExt:DigitalSourceType="{escape(origin.source_type)}"\n'
        f'    xmp:CreatorTool="{tool}"/>\n'
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    )


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def with_xmp(png: bytes, packet: str) -> bytes:
    """``png`` with an uncompressed iTXt ``XML:com.adobe.xmp`` chunk before its first IDAT.

    Written by hand because Pillow would store an ASCII value as tEXt, and XMP readers look for
    iTXt; every other chunk is kept byte for byte.
    """
    idat = png.find(b"IDAT")
    if not png.startswith(b"\x89PNG\r\n\x1a\n") or idat < 12:
        raise ValueError("not a PNG with image data")
    body = XMP_KEY.encode("latin-1") + b"\x00\x00\x00" + b"\x00" + b"\x00" + packet.encode("utf-8")
    start = idat - 4  # the IDAT chunk starts with its length
    return png[:start] + _chunk(b"iTXt", body) + png[start:]


# -- signing identity -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningIdentity:
    """An ES256 private key and its certificate chain (signer first, then up to the root), in PEM."""

    key_pem: bytes
    chain_pem: bytes

    @property
    def root_pem(self) -> bytes:
        """The last certificate of the chain: the anchor our own checks trust."""
        marker = b"-----BEGIN CERTIFICATE-----"
        return self.chain_pem[self.chain_pem.rindex(marker) :]


def _new_identity() -> SigningIdentity:
    # c2pa refuses a self-signed signer: the signing certificate must be an end-entity (CA:false)
    # with digitalSignature, an allowed extended key usage (emailProtection here) and an authority
    # key identifier, issued by a CA certificate. So a root is made and the signer issued under it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, STUDIO_NAME),
            ]
        )

    def usage(*, signs: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=signs,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=not signs,
            crl_sign=not signs,
            encipher_only=False,
            decipher_only=False,
        )

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=3650)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(name(f"{STUDIO_NAME} Root"))
        .issuer_name(name(f"{STUDIO_NAME} Root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(signs=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(name(f"{STUDIO_NAME} Signer"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(signs=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    # The root's key is thrown away: nothing else is ever issued under it.
    return SigningIdentity(
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        chain_pem=signer.public_bytes(serialization.Encoding.PEM) + root.public_bytes(serialization.Encoding.PEM),
    )


def load_or_create_identity(
    directory: Path, *, key_file: Path | None = None, cert_file: Path | None = None
) -> SigningIdentity:
    """The configured key and chain, or the studio's own, made in ``directory`` on first use.

    Key and chain live in one file (``signing.pem``) so they always match. Web processes and
    workers may start at once: each writes a complete file under a temporary name and links it
    into place, which fails when another got there first; everyone then reads the one winner.
    """
    if key_file is not None or cert_file is not None:
        if key_file is None or cert_file is None:
            raise ValueError("STUDIO_C2PA_KEY_FILE and STUDIO_C2PA_CERT_FILE are set together or not at all")
        return SigningIdentity(key_pem=key_file.read_bytes(), chain_pem=cert_file.read_bytes())
    path = directory / "signing.pem"
    if not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        made = _new_identity()
        descriptor, temp_name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pem")
        try:
            with os.fdopen(descriptor, "wb") as temp:
                temp.write(made.key_pem + made.chain_pem)
                temp.flush()
                os.fsync(temp.fileno())
            os.chmod(temp_name, 0o600)
            os.link(temp_name, path)
        except FileExistsError:
            pass  # another process made it first; read theirs
        finally:
            Path(temp_name).unlink(missing_ok=True)
    text = path.read_bytes()
    split = text.index(b"-----BEGIN CERTIFICATE-----")
    return SigningIdentity(key_pem=text[:split], chain_pem=text[split:])


def identity_for(settings: Settings) -> SigningIdentity:
    """The signing identity of this studio: from settings, or its own in ``data_dir/c2pa``."""
    return load_or_create_identity(
        settings.data_dir / "c2pa", key_file=settings.c2pa_key_file, cert_file=settings.c2pa_cert_file
    )


# -- C2PA -----------------------------------------------------------------------------------------


def _manifest(origin: Origin) -> dict[str, Any]:
    agent = {"name": f"{STUDIO_NAME} {STUDIO_VERSION}", "model": origin.model}
    made: dict[str, Any] = {
        "action": "c2pa.edited" if origin.edited else "c2pa.created",
        "digitalSourceType": origin.source_type,
        "softwareAgent": agent,
        "parameters": {"description": f"{origin.mode} with {origin.model}"},
    }
    actions: list[dict[str, Any]] = [made]
    if origin.edited:
        # C2PA wants an edit to start by opening its parent ingredient.
        actions.insert(0, {"action": "c2pa.opened", "parameters": {"ingredientIds": ["source"]}})
    return {
        "claim_generator_info": [{"name": STUDIO_NAME, "version": STUDIO_VERSION}],
        "title": origin.title,
        "format": "image/png",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            {
                "label": "org.paintingstudio.generator",
                "data": {"model": origin.model, "mode": origin.mode, "studio": STUDIO_NAME},
            },
        ],
    }


def _ingredient_json(ingredient: Ingredient, number: int) -> dict[str, Any]:
    relationship = "parentOf" if ingredient.role == "source" else "inputTo"
    label = "source" if ingredient.role == "source" else f"{ingredient.role}-{number}"
    return {"title": ingredient.title, "relationship": relationship, "label": label, "description": ingredient.role}


@dataclass
class Provenance:
    """One per process: the signer (made once) and whether outputs get the watermark."""

    identity: SigningIdentity
    watermark: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _signer: Any = field(default=None, repr=False)
    _context: Any = field(default=None, repr=False)

    def output_png(self, image: Image.Image, *, text_chunks: dict[str, str], origin: Origin) -> bytes:
        """The bytes to store for an output: pixels (watermarked if asked), text chunks, XMP, signed."""
        if self.watermark:
            image = add_watermark(image)
        png = with_xmp(imageio.encode_png(image, text_chunks), xmp_packet(origin))
        return self.sign(png, origin)

    def sign(self, png: bytes, origin: Origin) -> bytes:
        import c2pa

        # Worker threads (one per device) share this signer; the native signer is used by one at
        # a time, which costs nothing next to painting.
        with self._lock:
            if self._signer is None:
                info = c2pa.C2paSignerInfo(
                    c2pa.C2paSigningAlg.ES256, self.identity.chain_pem, self.identity.key_pem, None
                )
                self._signer = c2pa.Signer.from_info(info)
                # Thumbnails would cost ~100 ms and ~60 kB per image; the picture is its own.
                settings = c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}})
                self._context = c2pa.Context(settings)
            builder = c2pa.Builder(_manifest(origin), self._context)
            for number, ingredient in enumerate(origin.ingredients):
                builder.add_ingredient(_ingredient_json(ingredient, number), "image/png", io.BytesIO(ingredient.png))
            signed = io.BytesIO()
            builder.sign(self._signer, "image/png", io.BytesIO(png), signed)
            return signed.getvalue()


def provenance_for(settings: Settings) -> Provenance:
    """A worker's provenance writer; makes the studio's signing key on first start."""
    return Provenance(identity_for(settings), watermark=settings.watermark)


# -- checking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedIngredient:
    title: str
    relationship: str
    role: str | None


@dataclass(frozen=True)
class CheckReport:
    """What an image says about its origin, and whether that can be believed."""

    format: str
    has_manifest: bool
    valid: bool
    ours: bool
    validation_state: str | None
    generator: str | None
    model: str | None
    source_type: str | None
    ingredients: list[CheckedIngredient]
    problems: list[str]
    watermark: bool


_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def _reader_context(identity: SigningIdentity | None) -> Any:
    import c2pa

    if identity is None:
        return None
    # Our root as a trust anchor: our own manifests then read as "Trusted", anyone else's as
    # "Valid" at best.
    settings = {"trust": {"user_anchors": identity.root_pem.decode("ascii")}, "verify": {"verify_trust": True}}
    return c2pa.Context(c2pa.Settings.from_dict(settings))


def read_manifest(data: bytes, *, mime: str, identity: SigningIdentity | None = None) -> dict[str, Any] | None:
    """The manifest store as c2pa's reader gives it (with ``validation_state``), or None if there is none."""
    import c2pa

    try:
        context = _reader_context(identity)
        reader = (
            c2pa.Reader(mime, io.BytesIO(data), context=context) if context else c2pa.Reader(mime, io.BytesIO(data))
        )
    except c2pa.C2paError as error:
        if "ManifestNotFound" in type(error).__name__ or "not found" in str(error).lower():
            return None
        return {"error": str(error)}
    with reader:
        store: dict[str, Any] = json.loads(reader.json())
        store.setdefault("validation_state", reader.get_validation_state())
    return store


def check(data: bytes, *, max_pixels: int, identity: SigningIdentity | None = None) -> CheckReport:
    """Reads an uploaded picture's Content Credentials and watermark (``data`` is decoded safely first)."""
    picture = imageio.decode_upload(data, max_pixels=max_pixels)
    return _report(data, picture.format, identity=identity, watermark=has_watermark(picture.image))


def stored_credentials(png: bytes, *, identity: SigningIdentity) -> CheckReport:
    """The Content Credentials of one of our stored PNGs, for the pages that show them.

    The watermark is not looked for (it costs about a second on a large picture; the check page does it).
    """
    return _report(png, "PNG", identity=identity, watermark=False)


def _report(data: bytes, image_format: str, *, identity: SigningIdentity | None, watermark: bool) -> CheckReport:
    mime = _MIME[image_format]
    store = read_manifest(data, mime=mime, identity=identity)
    has_manifest = store is not None and "error" not in store
    manifest: dict[str, Any] = {}
    problems: list[str] = []
    state: str | None = None
    if store is not None and "error" in store:
        problems.append(str(store["error"]))
    elif store is not None:
        state = store.get("validation_state")
        manifest = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
        for status in store.get("validation_status", []) or []:
            problems.append(f"{status.get('code')}: {status.get('explanation', '')}".strip())
    generator, model, source_type = None, None, None
    for info in manifest.get("claim_generator_info", []) or []:
        generator = generator or info.get("name")
    for assertion in manifest.get("assertions", []) or []:
        if assertion.get("label", "").startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                agent = action.get("softwareAgent") or {}
                model = model or (agent.get("model") if isinstance(agent, dict) else None)
                source_type = source_type or action.get("digitalSourceType")
    ingredients = [
        CheckedIngredient(
            title=str(item.get("title", "")),
            relationship=str(item.get("relationship", "")),
            role=item.get("description"),
        )
        for item in manifest.get("ingredients", []) or []
    ]
    valid = has_manifest and state in ("Valid", "Trusted")
    # Trusted is only reachable through our own root (the reader's one anchor), so it means ours.
    ours = identity is not None and state == "Trusted"
    return CheckReport(
        format=image_format,
        has_manifest=has_manifest,
        valid=valid,
        ours=ours,
        validation_state=state,
        generator=generator,
        model=model,
        source_type=source_type,
        ingredients=ingredients,
        problems=problems,
        watermark=watermark,
    )
