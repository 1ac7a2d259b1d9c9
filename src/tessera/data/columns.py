"""Typed columns of the shard format: how each kind of value is turned into bytes and back.

A column type is a short string such as ``"int"``, ``"str"``, ``"ndarray:float32:28,28"``,
``"tokens:uint16"`` or ``"image:png"``. Fixed-size columns (scalars, arrays with a declared shape)
take the same number of bytes in every sample; the others are variable-size and get a length in
the sample's size table (see docs/data/format.md).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from tessera.core.errors import DataError

SCALAR_DTYPES = {
    "int": "<i8",
    "float": "<f8",
    "bool": "|b1",
    "int8": "|i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "|u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "float16": "<f2",
    "float32": "<f4",
    "float64": "<f8",
}
ARRAY_DTYPES = {k: v for k, v in SCALAR_DTYPES.items() if k not in ("int", "float")}
TOKEN_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "int64")
IMAGE_FORMATS = ("png", "jpeg", "webp", "bmp", "tiff")
COLUMN_TYPES_HELP = (
    "bytes, str, json, int, float, bool, a numpy scalar name (int8 ... uint64, float16 ... "
    "float64), ndarray, ndarray:<dtype>, ndarray:<dtype>:<d0,d1,...>, tokens:<dtype> "
    f"(dtype one of {', '.join(TOKEN_DTYPES)}) or image:<format> (format one of "
    f"{', '.join(IMAGE_FORMATS)})"
)


class Column:
    """One column: its name, type string, encoder and decoder.

    `size` is the byte size of every value for fixed-size columns, else None.
    """

    def __init__(self, name: str, kind: str):
        self.name = name
        self.kind = kind
        self.size: int | None = None
        self.encode: Callable[[Any], bytes]
        self.decode: Callable[[memoryview], Any]
        self._build(kind)

    def _build(self, kind: str) -> None:
        head, _, rest = kind.partition(":")
        if kind == "bytes":
            self.encode, self.decode = _encode_bytes, bytes
        elif kind == "str":
            self.encode, self.decode = _encode_str, _decode_str
        elif kind == "json":
            self.encode, self.decode = _encode_json, _decode_json
        elif kind in SCALAR_DTYPES:
            self._scalar(np.dtype(SCALAR_DTYPES[kind]))
        elif head == "ndarray":
            self._ndarray(rest)
        elif head == "tokens" and rest in TOKEN_DTYPES:
            dtype = np.dtype(ARRAY_DTYPES[rest])
            self.encode = lambda value: _encode_tokens(value, dtype)
            self.decode = lambda view: np.frombuffer(view, dtype=dtype).copy()
        elif head == "image" and rest in IMAGE_FORMATS:
            self.encode = lambda value: _encode_image(value, rest)
            self.decode = decode_image
        else:
            raise DataError(
                f"Column {self.name!r} has type {kind!r}, which the shard format cannot encode. "
                f"Accepted column types: {COLUMN_TYPES_HELP}."
            )

    def _scalar(self, dtype: np.dtype) -> None:
        self.size = dtype.itemsize
        if dtype.itemsize == 8 and dtype.kind in "iuf":
            pack = struct.Struct("<" + {"i": "q", "u": "Q", "f": "d"}[dtype.kind])
            python_type = float if dtype.kind == "f" else int
            self.encode = lambda value: pack.pack(python_type(value))
            self.decode = lambda view: pack.unpack(view)[0]
        else:
            self.encode = lambda value: np.asarray(value, dtype=dtype).tobytes()
            self.decode = lambda view: np.frombuffer(view, dtype=dtype)[0].item()

    def _ndarray(self, rest: str) -> None:
        if not rest:
            self.encode, self.decode = _encode_any_array, _decode_any_array
            return
        dtype_name, _, shape_text = rest.partition(":")
        if dtype_name not in ARRAY_DTYPES:
            raise DataError(
                f"Column {self.name!r} has array dtype {dtype_name!r}; accepted dtypes: "
                f"{', '.join(ARRAY_DTYPES)}."
            )
        dtype = np.dtype(ARRAY_DTYPES[dtype_name])
        if not shape_text:
            self.encode = lambda value: _encode_shaped(value, dtype)
            self.decode = lambda view: _decode_shaped(view, dtype)
            return
        try:
            shape = tuple(int(d) for d in shape_text.split(","))
        except ValueError:
            raise DataError(
                f"Column {self.name!r} has array shape {shape_text!r}; write it as "
                "comma-separated integers, e.g. ndarray:float32:3,224,224."
            ) from None
        self.size = int(np.prod(shape)) * dtype.itemsize
        self.encode = lambda value: _encode_fixed(value, dtype, shape, self.name)
        self.decode = lambda view: np.frombuffer(view, dtype=dtype).reshape(shape).copy()


def parse_columns(columns: dict[str, str]) -> list[Column]:
    """Column objects for a ``{name: type}`` mapping, in the mapping's order."""
    if not isinstance(columns, dict) or not columns:
        raise DataError(
            f"Columns must be a non-empty mapping of column name to type, got {columns!r}. "
            'Example: {"image": "image:png", "label": "int"}.'
        )
    return [Column(str(name), str(kind)) for name, kind in columns.items()]


def _encode_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected bytes, got {type(value).__name__}")


def _encode_str(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"expected str, got {type(value).__name__}")


def _decode_str(view: memoryview) -> str:
    return str(view, "utf-8")


def _encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _decode_json(view: memoryview) -> Any:
    return json.loads(str(view, "utf-8"))


def _encode_tokens(value: Any, dtype: np.dtype) -> bytes:
    array = np.asarray(value)
    if array.ndim != 1:
        raise TypeError(f"expected a 1-D token array, got shape {array.shape}")
    if array.dtype != dtype:
        if array.size and (array.min() < np.iinfo(dtype).min or array.max() > np.iinfo(dtype).max):
            raise TypeError(f"token values out of range for {dtype.name}")
        array = array.astype(dtype)
    return array.tobytes()


def _encode_fixed(value: Any, dtype: np.dtype, shape: tuple[int, ...], name: str) -> bytes:
    array = np.asarray(value)
    if array.shape != shape:
        raise TypeError(f"expected an array of shape {shape}, got {array.shape}")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


_DIMS = struct.Struct("<B")


def _encode_shaped(value: Any, dtype: np.dtype) -> bytes:
    array = np.ascontiguousarray(np.asarray(value), dtype=dtype)
    return _DIMS.pack(array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape) + array.tobytes()


def _decode_shaped(view: memoryview, dtype: np.dtype) -> np.ndarray:
    ndim = view[0]
    shape = struct.unpack_from(f"<{ndim}I", view, 1)
    return np.frombuffer(view[1 + 4 * ndim :], dtype=dtype).reshape(shape).copy()


def _encode_any_array(value: Any) -> bytes:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected a numeric array, got dtype {array.dtype}")
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = dtype.str.encode()
    return _DIMS.pack(len(code)) + code + _encode_shaped(array, dtype)


def _decode_any_array(view: memoryview) -> np.ndarray:
    length = view[0]
    dtype = np.dtype(bytes(view[1 : 1 + length]).decode())
    return _decode_shaped(view[1 + length :], dtype)


def _encode_image(value: Any, image_format: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    image_module = _pillow()
    if isinstance(value, np.ndarray):
        value = image_module.fromarray(value)
    if not isinstance(value, image_module.Image):
        raise TypeError(
            f"expected encoded image bytes, a PIL image or a uint8 array, got {value!r}"
        )
    out = io.BytesIO()
    value.save(out, format=image_format.upper())
    return out.getvalue()


def decode_image(view: memoryview | bytes) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, ...) to a uint8 array of shape (H, W) or (H, W, C)."""
    image_module = _pillow()
    with image_module.open(io.BytesIO(view)) as image:
        return np.array(image)  # a writable copy: torch warns about read-only arrays


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "Image columns need Pillow to encode or decode images: "
            "pip install 'tessera-train[images]' (or pip install pillow)."
        ) from None
    return Image
