"""Replicate's official Python client (the `replicate` package) running
models with an image input against the built-in simulator: the client
uploads a local file through the Files API on its own (as it does with
Replicate) and names it in the input; an image-to-image run and an upscale
of its output. Run by `tests/api/clients.rs` with REPLICATE_API_TOKEN and
REPLICATE_BASE_URL pointing at a test app's /sim; exits non-zero on any
difference.
"""

import io
import os
import struct
import sys
import tempfile
import urllib.request
import zlib

import replicate


def png(width: int, height: int, rgb: tuple) -> bytes:
    """A plain RGB PNG of one colour."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def size_of(data: bytes) -> tuple:
    """A PNG's width and height, from its header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {data[:16]!r}"
    return struct.unpack(">II", data[16:24])


def read(output) -> bytes:
    first = output[0] if isinstance(output, list) else output
    if isinstance(first, str):
        with urllib.request.urlopen(first) as response:
            return response.read()
    return first.read()


def main() -> None:
    client = replicate.Client(api_token=os.environ["REPLICATE_API_TOKEN"], base_url=os.environ["REPLICATE_BASE_URL"])

    with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as f:
        f.write(png(96, 64, (220, 30, 30)))
        path = f.name

    # An image-to-image run: the client uploads the open file through
    # POST /v1/files and puts the file's URL in the input.
    with open(path, "rb") as image:
        out = read(client.run("stability-ai/sdxl", input={"prompt": "a red barn", "image": image, "seed": 3}))
    width, height = size_of(out)
    assert width > height, f"the output keeps the input's landscape shape: {width}x{height}"
    files = client.files.list()
    assert files, "the upload is listed"
    assert files[0].content_type == "image/png", files[0].content_type
    assert files[0].urls["get"].endswith("/v1/files/" + files[0].id), files[0].urls
    assert client.files.get(files[0].id).size == os.path.getsize(path)

    # An upscale of a file made with files.create, named by its URL.
    uploaded = client.files.create(io.BytesIO(png(40, 30, (30, 30, 220))), filename="small.png")
    assert uploaded.expires_at, "files expire"
    out = read(client.run("nightmareai/real-esrgan", input={"image": uploaded.urls["get"], "scale": 2}))
    assert size_of(out) == (80, 60), f"twice the input's size: {size_of(out)}"
    assert client.files.delete(uploaded.id)
    print("replicate files: ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"replicate files: {e}", file=sys.stderr)
        sys.exit(1)
