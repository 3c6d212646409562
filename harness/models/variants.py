"""Quantized variants, built on demand and kept in the store.

    <home>/variants/<spec id>-<base weights hash>/   a Hugging Face model directory
        qresafe_recipe.yaml     how it was made (round-trips into QuantRecipe)
        adapter/        LoRA adapter, for variants that carry one (qlora)

A variant is built into a temporary sibling directory and renamed into place when complete, so an
interrupted build leaves nothing that looks finished; the temporary directory of a build killed outright
(no Python cleanup ran) is removed by the next build of the same variant.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from ..core.spec import VariantSpec
from ..quantize.base import QuantError, QuantRecipe, check_memory, check_supported, method_info
from ..store import atomic_write_text, stable_hash
from .resolved import RegistryError, ResolvedModel

CALIBRATION_SIZE = 128  # sequences: llm-compressor's examples use 256-512 for 7B models; 128 suffices for small ones


def default_calib(method: str) -> str:
    """The tier a method uses when the user names none: benign for methods that need data."""
    return "none" if method_info(method).data == "none" else "benign"


def recipe_for(spec: VariantSpec) -> QuantRecipe:
    info = check_supported(spec.quant, spec.bits)
    if info.data != "none" and spec.calib == "none":
        raise QuantError(f"{spec.quant} needs data to {'calibrate' if info.data == 'text' else 'train'} on: "
                         "add --calib benign, indirect or direct")
    if info.data == "none" and spec.calib != "none":
        raise QuantError(f"{spec.quant} uses no calibration data; drop --calib {spec.calib}")
    if spec.group_size is not None and info.default_group_size is None and spec.quant != "bnb-int8":
        raise QuantError(f"{spec.quant} has no group size; drop --group-size")
    return QuantRecipe(method=spec.quant, bits=spec.bits, group_size=spec.group_size, calib=spec.calib,
                       num_calibration_samples=CALIBRATION_SIZE)


def prompts_from(base: ResolvedModel) -> str:
    """Where a model's calibration and patch prompts come from: the reference model keeps its own template
    lexicon; every other model's come from public sets."""
    return "reference" if base.source == "zoo" else "public"


def variant_dir(home: Path, spec: VariantSpec, base: ResolvedModel) -> Path:
    return home / "variants" / f"{spec.id}-{stable_hash(base.fingerprint, 8)}"


def is_complete(path: Path) -> bool:
    return (path / "qresafe_recipe.yaml").is_file() and (path / "config.json").is_file()


def ensure_variant(spec: VariantSpec, base: ResolvedModel, *, home: Path, data_dir: str | None,
                   log: Callable[[str], None] = print, build: bool = True) -> ResolvedModel:
    """The variant's directory, quantizing the base model first if the store does not have it."""
    recipe = recipe_for(spec)
    path = variant_dir(home, spec, base)
    if not is_complete(path):
        if not build:
            raise QuantError(f"{spec.slug} is not built yet: run `qresafe-bench quantize` with the same options")
        _build(spec, recipe, base, path, home=home, data_dir=data_dir, log=log)
    return _as_variant(spec, base, path)


def patched_variant(spec: VariantSpec, base: ResolvedModel, *, home: Path) -> ResolvedModel:
    """A patched variant (spec.patch = its label, e.g. "qresafe"): built only by `qresafe-bench patch`
    into its own directory (and so its own store key), found here like any variant."""

    if spec.quant == "none":
        raise RegistryError(f"--patch {spec.patch} needs the quantized variant it patches: add --quant and --bits")
    path = variant_dir(home, spec, base)
    if not is_complete(path):
        raise RegistryError(f"{spec.slug} is not built yet: run `qresafe-bench patch` with the same --model/--quant/"
                            f"--bits/--calib options and the settings that give the label {spec.patch!r}")
    return _as_variant(spec, base, path)


def _as_variant(spec: VariantSpec, base: ResolvedModel, path: Path) -> ResolvedModel:
    """The base model's entry pointed at a built variant directory (its adapter, if it carries one)."""
    adapter = path / "adapter"
    return replace(base, name=spec.slug, location=str(path), source="variant", dtype=base.dtype,
                   fingerprint=f"variant:{path.name}", base_fingerprint=base.fingerprint,
                   adapter=str(adapter) if adapter.is_dir() else None)


# Suffixes of the files that decide what a variant answers: weights, configs, tokenizer, chat template. The
# records beside them (qresafe_* recipes and reports, pairs.jsonl, an unmerged adapter kept for inspection) do not.
ANSWERING_SUFFIXES = (".safetensors", ".json", ".jinja", ".model", ".txt")


def answering_files(path: Path) -> list[str]:
    """The files of a variant directory that decide its answers, relative to it (adapter/ included)."""
    names = [p.name for p in path.iterdir()
             if p.is_file() and p.suffix in ANSWERING_SUFFIXES and not p.name.startswith("qresafe_")]
    adapter = path / "adapter"
    if adapter.is_dir():
        names += [f"adapter/{p.name}" for p in adapter.iterdir() if p.is_file()]
    return sorted(names)


def unchanged_parent(spec: VariantSpec, model: ResolvedModel) -> tuple[VariantSpec, str] | None:
    """(spec, fingerprint) of the quantized variant a patched variant is a byte-for-byte copy of, when its patch
    changed nothing (its report says so, and every file that decides its answers is identical to the parent's);
    None for any other variant. Such a variant answers every request exactly as its parent, so its evaluation
    reads the parent's stored generations rather than producing the same answers again."""
    if spec.patch == "none" or model.source != "variant":
        return None
    path = Path(model.location)
    try:
        report = json.loads((path / "qresafe_report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not report.get("changes_nothing") or not report.get("quantized_variant"):
        return None
    parent = path.parent / Path(report["quantized_variant"]).name
    if not is_complete(parent):
        return None
    files = answering_files(path)
    if files != answering_files(parent) or not all(filecmp.cmp(path / f, parent / f, shallow=False) for f in files):
        return None  # e.g. a zero patch stacked onto an adapter: equal in value, not in bytes; evaluated as it is
    return replace(spec, patch="none"), f"variant:{parent.name}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


@contextlib.contextmanager
def building(path: Path) -> Iterator[Path]:
    """A fresh temporary sibling of `path` to build a variant into. When the block completes it is renamed
    into place (replacing an incomplete entry: an older or interrupted layout); on any failure, including
    ^C, it is removed. So nothing that looks finished is ever half-written."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a build killed outright (SIGTERM, kill -9)
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build(spec: VariantSpec, recipe: QuantRecipe, base: ResolvedModel, path: Path, *, home: Path,
           data_dir: str | None, log: Callable[[str], None]) -> None:
    from ..data.calibration import build_tier

    info = check_supported(spec.quant, spec.bits)
    check_memory(info, Path(base.location))  # before any calibration data is generated
    calib = None
    if info.data != "none":
        calib = build_tier(spec.calib, base_dir=Path(base.location), n=recipe.num_calibration_samples,
                           seed=recipe.seed, data_dir=data_dir, cache_dir=home / "calibration",
                           prompts_from=prompts_from(base), log=log)
    with building(path) as tmp:
        log(f"quantizing {base.name} with {info.library}: {spec.slug}")
        # Quantizer libraries print progress to stdout; stdout is reserved for results (--json).
        with contextlib.redirect_stdout(sys.stderr):
            info.implementation()(Path(base.location), recipe, calib, tmp, log)
        if not (tmp / "qresafe_recipe.yaml").exists():  # a quantizer may record resolved values itself
            atomic_write_text(tmp / "qresafe_recipe.yaml", recipe.to_yaml())
