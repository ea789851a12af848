#!/usr/bin/env python3
"""Writes the committed seed corpus for the safetensors fuzz target (tests/fuzz/corpus/).

Small valid files (a plain state_dict, a training checkpoint, every dtype, scalars and empty
tensors) and broken ones (truncated, header length past the end, a terabyte tensor, overlapping
and out-of-range offsets, unknown dtype, non-JSON, deep nesting, bad escapes, duplicates).
The valid ones use the names of the small model in fuzz_safetensors.cpp ("fc.weight" [2, 3],
"fc.bias" [2]) so the fuzzer also reaches the checkpoint validation. Stdlib only:
    python3 tests/fuzz/make_corpus.py [out_dir]
"""
import base64
import json
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
FMT = {"F32": "f", "F64": "d", "I64": "q", "BOOL": "?"}


def raw(header_bytes, data=b"", length=None):
    n = len(header_bytes) if length is None else length
    return struct.pack("<Q", n) + header_bytes + data


def build(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, values)."""
    header, data = {}, b""
    for name, dtype, shape, values in tensors:
        blob = struct.pack("<%d%s" % (len(values), FMT[dtype]), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return raw(text, data)


def fc(dtype="F32"):
    return [("fc.weight", dtype, [2, 3], [0.5, -1.0, 2.0, 0.25, 3.0, -0.75]), ("fc.bias", dtype, [2], [0.1, -0.2])]


# libstdc++'s text form of std::mt19937_64: 312 state words then the position.
RNG = " ".join(str((i * 0x9E3779B97F4A7C15) % (1 << 64)) for i in range(312)) + " 312 0 0x0p+0"

files = {
    "valid_fc_f32": build(fc("F32"), {"format": "pt"}),
    "valid_fc_f64": build(fc("F64")),
    "valid_training": build(
        fc("F32")
        + [("optimizer.step", "F64", [], [3.0]), ("optimizer.lr", "F64", [], [1e-3]),
           ("optimizer.0.exp_avg", "F32", [2, 3], [0.0] * 6), ("optimizer.0.exp_avg_sq", "F32", [2, 3], [0.0] * 6),
           ("optimizer.1.exp_avg", "F32", [2], [0.0] * 2), ("optimizer.1.exp_avg_sq", "F32", [2], [0.0] * 2)],
        {"attn.format": "training-checkpoint-v1", "rng_state": RNG, "epoch": "2"}),
    "valid_dtypes": build([("i", "I64", [3], [1, -2, 3]), ("b", "BOOL", [2, 2], [True, False, False, True]),
                           ("s", "F64", [], [3.5]), ("z", "F32", [0, 3], []), ("x", "F32", [1, 1, 1, 1], [7.0])]),
    "valid_empty": raw(b"{}      "),
    "valid_metadata_only": build([], {"a": "b", "note": "\u00e9\n"}),
    "valid_unpadded": build(fc("F32"), pad=False),
    "wrong_shape": build([("fc.weight", "F32", [3, 2], [0.0] * 6), ("fc.bias", "F32", [2], [0.0] * 2)]),
    "extra_tensor": build(fc("F32") + [("fc.extra", "F32", [1], [1.0])]),
    "too_short": b"\x08\x00\x00",
    "header_past_end": raw(b'{"a":1}', length=1 << 40),
    "terabyte_tensor": raw(b'{"w":{"dtype":"F32","shape":[1048576,262144],"data_offsets":[0,1099511627776]}}'),
    "offsets_out_of_range": raw(b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}', b"\0" * 8),
    "offsets_overlap": raw(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                           b'"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', b"\0" * 12),
    "bad_dtype": raw(b'{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4),
    "not_json": raw(b"this is not json", b"\0" * 4),
    "deep_nesting": raw(b"[" * 40 + b"]" * 40),
    "escapes": raw(b'{"a\\u00e9\\n\\"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"k\\\\":"\\uZZZZ"}}',
                   b"\0" * 4),
    "duplicate_names": raw(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                           b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
    "bad_numbers": raw(b'{"a":{"dtype":"F32","shape":[-1,1.5,1e400],"data_offsets":[-0,4e0]}}', b"\0" * 4),
}

# Many entries aliasing one range: before the fix each allocated its own copy before the
# overlap check ran (see the git log of include/attn/io/safetensors.hpp).
files["aliasing_entries"] = raw(("{" + ",".join('"t%d":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}' % i
                                                for i in range(50)) + "}").encode(), b"\0" * 64)
# Found by libFuzzer in the first seconds: a \u escape followed by non-hex bytes made std::stoul
# throw std::invalid_argument out of the reader (fixed; kept as a regression input).
files["fuzz_found_bad_u_escape"] = base64.b64decode(
    "MAAAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJhIjoiYiIsIm5vdGUiOiJcdf////////////////////////////////////8w"
    "MGU5XG4AAHsiIjoifX0gICAg")
# A truncated valid file: cut inside the data section.
files["truncated"] = files["valid_fc_f32"][:-5]

os.makedirs(OUT, exist_ok=True)
for name, blob in sorted(files.items()):
    with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
        f.write(blob)
print("wrote %d files to %s" % (len(files), OUT))
