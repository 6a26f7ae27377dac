"""Image sizes: "WxH" strings, the rules a model's free sizes follow, and the price classes they fall in."""

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

AUTO = "auto"
# Price classes by megapixel count (Black Forest Labs bills per started megapixel of 1024 × 1024).
MEGAPIXEL = 1024 * 1024


def size_parse(size: str) -> tuple[int, int] | None:
    """(width, height) of a "WxH" size, or None when it is not one."""
    width, sep, height = size.partition("x")
    if not sep or not width.isascii() or not height.isascii() or not width.isdigit() or not height.isdigit():
        return None
    if len(width) > 6 or len(height) > 6:
        return None
    return int(width), int(height)


@dataclass(frozen=True)
class SizeRule:
    """What any WxH a model accepts must satisfy; each bound is optional."""

    multiple_of: int = 1
    min_edge: int = 1
    max_edge: int | None = None
    max_aspect_ratio: Fraction | None = None
    min_pixels: int = 0
    max_pixels: int | None = None

    @classmethod
    def of(cls, spec: dict[str, Any]) -> "SizeRule | None":
        """The rule a catalog entry's `size_rule` describes; None when it has none."""
        if not spec:
            return None
        ratio = spec.get("max_aspect_ratio")
        return cls(
            multiple_of=int(spec.get("multiple_of", 1)),
            min_edge=int(spec.get("min_edge", 1)),
            max_edge=int(spec["max_edge"]) if spec.get("max_edge") else None,
            max_aspect_ratio=Fraction(str(ratio)) if ratio else None,
            min_pixels=int(spec.get("min_pixels", 0)),
            max_pixels=int(spec["max_pixels"]) if spec.get("max_pixels") else None,
        )

    def allows(self, width: int, height: int) -> bool:
        long, short = max(width, height), min(width, height)
        return (
            short >= self.min_edge
            and width % self.multiple_of == 0
            and height % self.multiple_of == 0
            and (self.max_edge is None or long <= self.max_edge)
            and (self.max_aspect_ratio is None or long <= short * self.max_aspect_ratio)
            and width * height >= self.min_pixels
            and (self.max_pixels is None or width * height <= self.max_pixels)
        )

    def describe(self) -> str:
        """The rule in words, for refusals and docs."""
        parts = []
        if self.multiple_of > 1:
            parts.append(f"both edges must be multiples of {self.multiple_of}")
        if self.min_edge > 1:
            parts.append(f"the shortest edge at least {self.min_edge}")
        if self.max_edge is not None:
            parts.append(f"the longest edge at most {self.max_edge}")
        if self.max_aspect_ratio is not None:
            parts.append(f"the aspect ratio within {_ratio(self.max_aspect_ratio)}")
        if self.min_pixels and self.max_pixels is not None:
            parts.append(f"the total pixels between {self.min_pixels:,} and {self.max_pixels:,}")
        elif self.max_pixels is not None:
            parts.append(f"the total pixels at most {self.max_pixels:,}")
        elif self.min_pixels:
            parts.append(f"the total pixels at least {self.min_pixels:,}")
        if len(parts) > 1:
            return ", ".join(parts[:-1]) + " and " + parts[-1]
        return parts[0] if parts else "any size"

    def nearest(self, width: int, height: int) -> tuple[int, int]:
        """The allowed size closest to (width, height) in shape and area, for translating a retired model's size."""
        ratio = Fraction(width, height)
        if self.max_aspect_ratio is not None:
            ratio = min(max(ratio, 1 / self.max_aspect_ratio), self.max_aspect_ratio)
        pixels = min(max(width * height, self.min_pixels), self.max_pixels or width * height)
        step = self.multiple_of
        best: tuple[int, int, Fraction] | None = None
        # Walk heights near the ideal one; the first few candidates either side always hold an allowed size.
        ideal_height = (pixels / ratio) ** 0.5
        for offset in range(-64, 65):
            h = (round(ideal_height / step) + offset) * step
            w = round(h * ratio / step) * step
            if h <= 0 or w <= 0 or not self.allows(w, h):
                continue
            score = abs(w * h - pixels) + abs(Fraction(w, h) - ratio) * pixels
            if best is None or score < best[2]:
                best = (w, h, score)
        if best is None:
            raise ValueError(f"no size allowed by the rule ({self.describe()}) is near {width}x{height}")
        return best[0], best[1]


def _ratio(value: Fraction) -> str:
    return f"{value.numerator}:{value.denominator}"


def size_class(classes: list[dict[str, Any]], width: int, height: int) -> str | None:
    """The first class (by ascending `max_pixels`) a size fits in; None when it is larger than all of them."""
    pixels = width * height
    for entry in sorted(classes, key=lambda item: int(item["max_pixels"])):
        if pixels <= int(entry["max_pixels"]):
            return str(entry["name"])
    return None


def megapixel_classes(largest: int) -> list[dict[str, Any]]:
    """Classes "1mp" … "<largest>mp", each up to that many megapixels of 1024 × 1024."""
    return [{"name": f"{count}mp", "max_pixels": count * MEGAPIXEL} for count in range(1, largest + 1)]
