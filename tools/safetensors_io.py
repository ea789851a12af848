"""Minimal safetensors reader/writer with the standard library only (json + struct).

Layout: 8-byte little-endian header length N, N bytes of JSON
{name: {"dtype": "F32"|"F64"|"I64"|"BOOL", "shape": [...], "data_offsets": [begin, end]}, ...,
 "__metadata__": {str: str}}, then the raw little-endian tensor data. Used by the fixture
scripts under tests/fixtures and by tools/export_torch.py.
"""
import json
import struct

_FORMATS = {"F32": ("f", 4), "F64": ("d", 8), "I64": ("q", 8), "BOOL": ("?", 1)}


def save(path, tensors, metadata=None):
    """tensors: dict name -> (dtype, shape, flat list of values), or a torch tensor / numpy-free
    object exposing .dtype/.shape/.flatten().tolist() (see from_torch)."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, values) in tensors.items():
        fmt, size = _FORMATS[dtype]
        n = 1
        for d in shape:
            n *= d
        if len(values) != n:
            raise ValueError(f"{name}: {len(values)} values for shape {shape}")
        blob = struct.pack("<%d%s" % (n, fmt), *values)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load(path):
    """Returns (dict name -> (dtype, shape, flat list), metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        fmt, size = _FORMATS[info["dtype"]]
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], list(struct.unpack("<%d%s" % ((e - b) // size, fmt), data[b:e])))
    return out, meta


def from_torch(t, dtype="F64"):
    """(dtype, shape, values) from a torch tensor, converted to float64 by default."""
    if dtype == "F64":
        t = t.detach().double()
    elif dtype == "F32":
        t = t.detach().float()
    elif dtype == "I64":
        t = t.detach().long()
    elif dtype == "BOOL":
        t = t.detach().bool()
    return (dtype, list(t.shape), t.contiguous().flatten().tolist())
