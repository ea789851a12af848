#!/usr/bin/env python3
"""Export a PyTorch model's state_dict to a safetensors file that attn::load() reads.

Only the standard library is needed to write the file (json + struct, via safetensors_io.py);
torch is needed only to read the model or the .pt file you export from.

As a module:
    import sys; sys.path.insert(0, "tools")
    from export_torch import export_state_dict
    export_state_dict(model, "model.safetensors")              # float32 (default)
    export_state_dict(model.state_dict(), "m.safetensors", dtype="f64", metadata={"epoch": "10"})

As a program (the .pt file holds a state_dict, or a whole pickled nn.Module, or a dict with a
"state_dict" / "model_state_dict" entry):
    python3 tools/export_torch.py model.pt out.safetensors [--dtype f32|f64] [--meta key=value ...]

Names are PyTorch's (e.g. "0.weight", "lstm.weight_ih_l0"); attn modules use the same names.
Floating tensors are converted to the requested dtype; integer tensors (e.g. BatchNorm's
num_batches_tracked) are stored as I64 and bool tensors as BOOL.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402

_DTYPES = {"f32": "F32", "float32": "F32", "f64": "F64", "float64": "F64"}


def _state_dict(obj):
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        return obj
    raise TypeError("expected a torch.nn.Module or a state_dict, got %s" % type(obj).__name__)


def export_state_dict(model_or_state_dict, path, dtype="f32", metadata=None):
    """Writes model_or_state_dict (an nn.Module or a name -> tensor mapping) to `path`.
    dtype: "f32" (default) or "f64" for floating tensors. Returns the list of names written."""
    import torch

    if dtype not in _DTYPES:
        raise ValueError("dtype must be f32 or f64, got %r" % (dtype,))
    float_dtype = _DTYPES[dtype]
    tensors = {}
    for name, t in _state_dict(model_or_state_dict).items():
        if not isinstance(t, torch.Tensor):
            raise TypeError("%s: not a tensor (%s)" % (name, type(t).__name__))
        if name == "__metadata__":
            raise ValueError("the name __metadata__ is reserved by the format")
        if t.is_floating_point():
            kind = float_dtype
        elif t.dtype == torch.bool:
            kind = "BOOL"
        elif not t.is_complex():
            kind = "I64"
        else:
            raise TypeError("%s: complex tensors are not supported" % name)
        tensors[name] = st.from_torch(t.cpu(), kind)
    meta = {"format": "pt", "exported_by": "attn tools/export_torch.py"}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    tmp = path + ".tmp.%d" % os.getpid()
    try:  # like attn's writer: never leave a half-written file under the final name
        st.save(tmp, tensors, meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return list(tensors)


def main(argv=None):
    p = argparse.ArgumentParser(description="Export a PyTorch state_dict (.pt) to safetensors for attn.")
    p.add_argument("input", help="a .pt/.pth file from torch.save (state_dict or whole module)")
    p.add_argument("output", help="the .safetensors file to write")
    p.add_argument("--dtype", default="f32", choices=["f32", "f64"], help="dtype of floating tensors (default f32)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="extra metadata entries")
    args = p.parse_args(argv)
    import torch

    meta = {}
    for kv in args.meta:
        if "=" not in kv:
            p.error("--meta expects KEY=VALUE, got %r" % kv)
        k, v = kv.split("=", 1)
        meta[k] = v
    obj = torch.load(args.input, map_location="cpu")
    names = export_state_dict(obj, args.output, dtype=args.dtype, metadata=meta)
    print("wrote %d tensors to %s" % (len(names), args.output))


if __name__ == "__main__":
    main()
