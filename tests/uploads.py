"""Images a test uploads for an edit, made for real with Pillow."""

import io

from PIL import Image

RED = (200, 40, 40)


def png(width: int = 1024, height: int = 1024, *, mode: str = "RGB", alpha_hole: bool = False) -> bytes:
    """A flat red PNG; `alpha_hole` makes an RGBA mask whose centre is fully transparent (the area to edit)."""
    picture = Image.new(mode, (width, height), (*RED, 255) if mode == "RGBA" else RED)
    if alpha_hole:
        picture.paste((0, 0, 0, 0), (width // 4, height // 4, width * 3 // 4, height * 3 // 4))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(width: int = 512, height: int = 512) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()
