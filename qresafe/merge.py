"""Saving the patch: Q = Q0 + Quant(M * B A) on integer grids, an adapter beside the base otherwise.

Integer grids (compressed-tensors `pack-quantized`: rtn, gptq, awq, llm-qat). Each quantized layer is
stored as packed integers q with a scale s (per group of `group_size` inputs, or per channel) and, for
asymmetric schemes, a zero point z; it dequantizes to s * (q - z). The patch Delta = M * s_lora * B A
is merged *under the existing scales*: q' = clamp(q + round(Delta / s), q_min, q_max), everything else
(scales, zero points, unquantized tensors, config) byte-for-byte as it was, so the result is the same
format, loads the same way (transformers, vLLM) and costs the same memory. Since Q0 sits on the grid,
q + round(Delta / s) is exactly Quant(Q0 + Delta) with the scales held fixed, the paper's Q0 + Quant(.).
The cost of that choice is the grid's resolution: entries of Delta smaller than s/2 round away, and
`MergeStats` reports how many entries moved and how many hit the grid's ends.

M is the trainer's: under the block decomposition (snip.py) the update s B A already lives in the rows x
columns block, so the merge adds it as it is; with the exact mask (`masks=`, PatchRecipe.mask = "exact") the
factors trained unmasked and the merge adds M_Q * s B A, zero outside M_Q exactly (`masked_delta`), and
reports how many of M_Q's entries moved and how much of the update's mass the mask dropped.

We rewrite the safetensors directly (compressed-tensors' own `unpack_from_int32` / `pack_to_int32`)
instead of decompressing a model and re-saving it: no dense copy of the model, no re-derived scales, and
the round trip is exact (tested per format).

Other formats (bitsandbytes int8/NF4/FP4, AQLM, qlora): their weights cannot take a delta without
requantizing the blocks (new absmax and codes; new codebook assignments), which would undo small updates;
the patch is kept as a PEFT adapter in `<variant>/adapter/`, which the harness's loader and lm-eval's `hf`
model (`peft=`) apply on top. For qlora that one adapter is the variant's own adapter concatenated with the
patch (bases.py).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import PatchError


@dataclass
class MergeStats:
    layers: int = 0
    entries: int = 0
    changed: int = 0  # quantized entries whose integer moved
    clamped: int = 0  # entries whose move was cut at the grid's end
    dense_tensors_replaced: list[str] = field(default_factory=list)
    # with an exact mask M_Q (merge_into_compressed's `masks`): its entries, those of them that moved, and the
    # L1 mass of s B A before the mask and outside it (what the mask dropped)
    masked: bool = False
    mask_entries: int = 0
    mask_changed: int = 0
    update_mass: float = 0.0
    mass_dropped: float = 0.0

    def as_dict(self) -> dict:
        out = {"layers": self.layers, "entries": self.entries, "changed": self.changed, "clamped": self.clamped,
               "changed_fraction": self.changed / self.entries if self.entries else 0.0,
               "dense_tensors_replaced": len(self.dense_tensors_replaced)}
        if self.masked:
            out.update(mask_entries=self.mask_entries, mask_changed=self.mask_changed,
                       mask_changed_fraction=self.mask_changed / self.mask_entries if self.mask_entries else 0.0,
                       changed_outside_mask=self.changed - self.mask_changed,
                       update_mass_dropped_fraction=self.mass_dropped / self.update_mass if self.update_mass else 0.0)
        return out


def masked_delta(delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """M_Q * delta, exactly zero outside the mask (a select, not a product: no -0.0, and no NaN * 0)."""
    return torch.where(mask.to(delta.device), delta, torch.zeros((), dtype=delta.dtype, device=delta.device))


@dataclass(frozen=True)
class GridScheme:
    num_bits: int
    symmetric: bool
    strategy: str  # group | channel | tensor
    group_size: int | None

    @property
    def q_min(self) -> int:
        return -(1 << (self.num_bits - 1))

    @property
    def q_max(self) -> int:
        return (1 << (self.num_bits - 1)) - 1


def grid_scheme(variant_dir: Path) -> GridScheme:
    """The integer-grid scheme of a compressed-tensors checkpoint, or PatchError if it has none we merge into."""
    config = json.loads((Path(variant_dir) / "config.json").read_text()).get("quantization_config") or {}
    if config.get("quant_method") != "compressed-tensors":
        raise PatchError(f"{variant_dir.name} is not a compressed-tensors checkpoint; its patch stays an adapter")
    groups = list((config.get("config_groups") or {}).values())
    formats = {config.get("format")} | {g.get("format") for g in groups if g.get("format")}
    if formats != {"pack-quantized"} or len(groups) != 1:
        raise PatchError(f"merging needs one pack-quantized group; {variant_dir.name} has {sorted(map(str, formats))}")
    weights = groups[0]["weights"]
    if weights.get("type") != "int" or weights.get("actorder") not in (None, "static"):
        raise PatchError("merging needs integer weights without activation reordering (actorder)")
    return GridScheme(num_bits=int(weights["num_bits"]), symmetric=bool(weights["symmetric"]),
                      strategy=weights["strategy"], group_size=weights.get("group_size"))


def expand_to_weight(per_group: torch.Tensor, shape: tuple[int, int], scheme: GridScheme) -> torch.Tensor:
    """A per-group (out, in/g) or per-channel (out, 1) tensor repeated to the weight's (out, in) shape."""
    if scheme.strategy == "group":
        return per_group.repeat_interleave(scheme.group_size, dim=1)[:, : shape[1]]
    return per_group.expand(shape) if per_group.dim() == 2 else per_group.reshape(1, 1).expand(shape)


def merge_into_compressed(variant_dir: Path, deltas: dict[str, torch.Tensor], out_dir: Path,
                          dense_updates: dict[str, torch.Tensor] | None = None,
                          masks: dict[str, torch.Tensor] | None = None) -> MergeStats:
    """Write `variant_dir` to `out_dir` with each named layer's integers moved by round(delta / scale).

    `deltas` maps layer names (`model.layers.0.self_attn.q_proj`) to (out, in) weight deltas;
    `dense_updates` maps names of unquantized tensors (norms, embeddings) to new values (full fine-tunes);
    `masks` maps every name in `deltas` to a bool (out, in) M_Q: only its entries take the delta.
    """
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32, unpack_from_int32
    from safetensors import safe_open
    from safetensors.torch import save_file

    variant_dir, out_dir = Path(variant_dir), Path(out_dir)
    scheme = grid_scheme(variant_dir)
    dense_updates = dense_updates or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in variant_dir.iterdir():
        if item.is_file() and item.suffix != ".safetensors":
            shutil.copy2(item, out_dir / item.name)
    stats = MergeStats(masked=masks is not None)
    if masks is not None and set(deltas) - set(masks):
        raise PatchError(f"no mask for {', '.join(sorted(set(deltas) - set(masks))[:3])}")
    pending = dict(deltas)
    for path in sorted(variant_dir.glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        for name in [n for n in pending if f"{n}.weight_packed" in tensors]:
            delta = pending.pop(name).detach().float().cpu()
            shape = tuple(int(d) for d in tensors[f"{name}.weight_shape"].tolist())
            if tuple(delta.shape) != shape:
                raise PatchError(f"delta for {name} has shape {tuple(delta.shape)}, the layer {shape}")
            mask = None
            if masks is not None:
                mask = masks[name].to(device="cpu", dtype=torch.bool)
                if tuple(mask.shape) != shape:
                    raise PatchError(f"mask for {name} has shape {tuple(mask.shape)}, the layer {shape}")
                magnitude = delta.abs()
                stats.update_mass += float(magnitude.sum(dtype=torch.float64))
                stats.mass_dropped += float(magnitude.masked_fill(mask, 0.0).sum(dtype=torch.float64))
                delta = masked_delta(delta, mask)
            scale = expand_to_weight(tensors[f"{name}.weight_scale"].float(), shape, scheme)
            q = unpack_from_int32(tensors[f"{name}.weight_packed"], scheme.num_bits, torch.Size(shape)).to(torch.int32)
            wanted = q + torch.round(delta / scale).to(torch.int32)
            moved = wanted.clamp(scheme.q_min, scheme.q_max)
            stats.layers += 1
            stats.entries += q.numel()
            stats.changed += int((moved != q).sum())
            stats.clamped += int((moved != wanted).sum())
            if mask is not None:
                stats.mask_entries += int(mask.sum())
                stats.mask_changed += int((moved != q)[mask].sum())
            tensors[f"{name}.weight_packed"] = pack_to_int32(moved.to(torch.int8), scheme.num_bits).contiguous()
        for name, value in dense_updates.items():
            if name in tensors:
                tensors[name] = value.detach().to(tensors[name].dtype).cpu().contiguous()
                stats.dense_tensors_replaced.append(name)
        save_file(tensors, str(out_dir / path.name), metadata=metadata)
    if pending:
        raise PatchError(f"no quantized weights for {', '.join(sorted(pending)[:3])} in {variant_dir.name}")
    return stats


def grid_tensors(variant_dir: Path, names: list[str] | None = None
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]]:
    """(q, scale, zero point, (q_min, q_max)) of each quantized layer, expanded to the weight's shape (fp32)."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from safetensors import safe_open

    scheme = grid_scheme(Path(variant_dir))
    out = {}
    for path in sorted(Path(variant_dir).glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            keys = set(handle.keys())
            for key in sorted(k for k in keys if k.endswith(".weight_packed")):
                name = key.removesuffix(".weight_packed")
                if names is not None and name not in names:
                    continue
                shape = tuple(int(d) for d in handle.get_tensor(f"{name}.weight_shape").tolist())
                q = unpack_from_int32(handle.get_tensor(key), scheme.num_bits, torch.Size(shape)).float()
                scale = expand_to_weight(handle.get_tensor(f"{name}.weight_scale").float(), shape, scheme)
                zero = torch.zeros_like(q)
                if not scheme.symmetric and f"{name}.weight_zero_point" in keys:
                    packed_zero = handle.get_tensor(f"{name}.weight_zero_point")
                    n_groups = handle.get_tensor(f"{name}.weight_scale").shape[-1]
                    zero = expand_to_weight(unpack_from_int32(packed_zero, scheme.num_bits, torch.Size(
                        (shape[0], n_groups)), packed_dim=0).float(), shape, scheme)
                out[name] = (q, scale, zero, (scheme.q_min, scheme.q_max))
    return out


def dequantized_weights(variant_dir: Path, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """s * (q - z) of each quantized layer of a pack-quantized checkpoint (fp32), straight from the file."""
    return {name: scale * (q - zero) for name, (q, scale, zero, _) in grid_tensors(variant_dir, names).items()}


def save_adapter_variant(quantized_dir: Path, peft_model, out_dir: Path) -> None:
    """The quantized base's files (hard links where the filesystem allows) plus the adapter in `adapter/`."""
    quantized_dir, out_dir = Path(quantized_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in quantized_dir.iterdir():
        if item.is_file():
            try:
                os.link(item, out_dir / item.name)  # the base is read-only here: share its bytes
            except OSError:
                shutil.copy2(item, out_dir / item.name)
    # only the trained adapter: a qlora patch run also holds the variant's own adapter as "ref" (bases.py)
    peft_model.save_pretrained(out_dir / "adapter", selected_adapters=["default"])
