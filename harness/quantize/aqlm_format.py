"""AQLM-format checkpoints for the reference model, made by this project's simplified additive quantizer.

Whose is what:

- The `aqlm` package (ISTA-DASLab) is the *runtime*: `aqlm.QuantizedLinear` and its kernels (numba on
  CPU for 8-bit codebooks, CUDA/Triton on GPU), which transformers' AQLM integration (`AqlmConfig`)
  puts in place of `nn.Linear` when it loads a checkpoint whose config says `quant_method: aqlm`. It
  runs AQLM models but cannot make them; hub models use published pre-quantized AQLM checkpoints.
- This module is the *quantizer* for the reference model. It writes weights in exactly that format,
  but it is NOT the AQLM paper's algorithm (beam-search code assignment, codebook fine-tuning by
  Adam, end-to-end calibration). It is plain additive quantization done simply:

  1. per output row a scale s_r (the row's importance-weighted RMS), the row divided by it;
  2. the row cut into groups of 8 consecutive input weights (`in_group_size=8`, `out_group_size=1`);
  3. `bits` codebooks of 256 entries (`nbits_per_codebook=8`), so each group of 8 weights costs
     bits x 8 bits, i.e. `bits` bits per weight (2 -> 2x8, 3 -> 3x8, 4 -> 4x8; codebooks and scales
     are extra). Kx8 is the layout the `aqlm` CPU kernel (`numba_gemm_lut`) serves; 1x16 would fall
     back to dequantize-then-matmul on CPU;
     (The hub's 2-bit AQLM checkpoints are 1x16; on CPU that layout has no kernel of its own.)
  4. residual k-means: codebook 1 is fitted to the groups by a few Lloyd iterations (on a random
     sample of the groups, then one step on all), codebook 2 to what codebook 1 left over, and so on;
     then one round refits each codebook against the others' reconstruction. Greedy: no joint beam
     search over codes. Seeded from `recipe.seed`, so a recipe reproduces its checkpoint;
  5. data-aware: the squared error of input column j is weighted by E[x_j^2], the mean squared input
     activation of that column over calibration text, i.e. we minimise ||(W - W_hat) diag(sqrt(E[x^2]))||_F,
     the layer's output error under a diagonal approximation of the input covariance. The statistic
     comes from forward hooks over at most MAX_STAT_SEQUENCES of the recipe's calibration sequences;
  6. finally each row's scale is refitted by weighted least squares given its codes.

Every `nn.Linear` except the output head is quantized (for Llama: all projections in the decoder
layers); `lm_head` and the embeddings stay in float32 and are listed in `linear_weights_not_to_quantize`.
The checkpoint is float32 because the `aqlm` CPU kernel accepts only float32.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from .base import QuantError, QuantRecipe

IN_GROUP_SIZE = 8  # input weights per code group (AQLM's usual 8; the CPU and CUDA Kx8 kernels take it)
NBITS_PER_CODEBOOK = 8  # 256-entry codebooks: the layout with a numba CPU kernel
CODEBOOK_SIZE = 2 ** NBITS_PER_CODEBOOK
LLOYD_ITERATIONS = 8  # per codebook, on the sample below
REFINE_ROUNDS = 1  # passes refitting each codebook against all the others (warm-started)
KMEANS_SAMPLE = 64 * CODEBOOK_SIZE  # vectors the Lloyd iterations see: 64 per centroid
MAX_STAT_SEQUENCES = 32  # E[x^2] per column is a diagonal statistic: a few dozen sequences pin it down
_DIST_BLOCK = 1 << 22  # cap on distance-matrix entries held at once (vectors x 256), 16 MiB


def quantize(base_dir: Path, recipe: QuantRecipe, calib, out_dir: Path, log: Callable[[str], None]) -> None:
    from transformers import AqlmConfig, AutoModelForCausalLM, AutoTokenizer

    if recipe.bits not in (4, 3, 2):
        raise QuantError(f"aqlm supports 4, 3 and 2 bits (4x8, 3x8, 2x8 codebooks), not {recipe.bits}")
    if recipe.group_size not in (None, IN_GROUP_SIZE):
        raise QuantError(f"aqlm codes groups of {IN_GROUP_SIZE} input weights; "
                         f"--group-size {recipe.group_size} is not supported")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    targets = _target_linears(model)
    for name, linear in targets.items():
        if linear.in_features % IN_GROUP_SIZE:
            raise QuantError(f"aqlm needs input widths divisible by {IN_GROUP_SIZE}; "
                             f"{name} has {linear.in_features}")

    importance = input_second_moments(model, tokenizer, calib, targets, recipe.max_seq_length,
                                      min(recipe.num_calibration_samples, MAX_STAT_SEQUENCES), log)
    log(f"aqlm: {len(targets)} linear layers, {recipe.bits}x{NBITS_PER_CODEBOOK} codebooks, "
        f"groups of {IN_GROUP_SIZE} ({recipe.bits} bits/weight), seed {recipe.seed}")
    generator, started = torch.Generator().manual_seed(recipe.seed), time.monotonic()
    total_err = total_norm = 0.0
    for name, linear in targets.items():
        weight = linear.weight.detach()
        codes, codebooks, scales = additive_quantize(weight, recipe.bits, importance[name], generator)
        err = (weight - dequantize(codes, codebooks, scales)).pow(2).sum().item()
        total_err, total_norm = total_err + err, total_norm + weight.pow(2).sum().item()
        model.set_submodule(name, _aqlm_linear(linear, codes, codebooks, scales))
    log(f"aqlm: relative weight error ||W - W_hat|| / ||W|| = {(total_err / total_norm) ** 0.5:.4f} over all "
        f"layers ({time.monotonic() - started:.1f} s)")

    keep = sorted({name for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) or m is model.get_input_embeddings()})
    model.config.quantization_config = AqlmConfig(
        in_group_size=IN_GROUP_SIZE, out_group_size=1, num_codebooks=recipe.bits,
        nbits_per_codebook=NBITS_PER_CODEBOOK,
        # Module names: transformers 5 matches this list against module paths (`lm_head`), so the hub's
        # `lm_head.weight` spelling alone would not keep the head in float.
        linear_weights_not_to_quantize=keep,
    ).to_dict()
    model.config.dtype = torch.float32
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _target_linears(model) -> dict[str, torch.nn.Linear]:
    head = model.get_output_embeddings()
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}


@torch.no_grad()
def input_second_moments(model, tokenizer, calib, targets: dict[str, torch.nn.Linear], max_seq_length: int,
                         max_sequences: int, log: Callable[[str], None]) -> dict[str, torch.Tensor]:
    """E[x_j^2] of each target layer's input columns over calibration tokens (forward hooks)."""
    dataset = calib.tokenized(tokenizer, max_seq_length)
    rows = [r["input_ids"] for r in dataset.select(range(min(max_sequences, len(dataset)))) if r["input_ids"]]
    if not rows:
        raise QuantError("aqlm needs calibration text; the calibration set tokenized to nothing")
    sums = {name: torch.zeros(m.in_features, dtype=torch.float64) for name, m in targets.items()}
    tokens = 0

    def hook(name: str):
        def accumulate(_module, inputs, _output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1])
            sums[name] += x.double().pow(2).sum(0)
        return accumulate

    handles = [m.register_forward_hook(hook(name)) for name, m in targets.items()]
    try:
        model.eval()
        for ids in rows:  # one sequence at a time: no padding to mask out of the statistic
            model(input_ids=torch.tensor([ids]), logits_to_keep=1)
            tokens += len(ids)
    finally:
        for h in handles:
            h.remove()
    log(f"aqlm: input statistics from {len(rows)} calibration sequences ({tokens} tokens, tier {calib.tier})")
    return {name: (s / tokens).float() for name, s in sums.items()}


@torch.no_grad()
def additive_quantize(weight: torch.Tensor, num_codebooks: int, importance: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, iterations: int = LLOYD_ITERATIONS,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes [out, in/8, M] (int64, 0..255), codebooks [M, 256, 1, 8] and scales [out, 1, 1, 1] such
    that `dequantize(...)` approximates `weight` [out, in] in the norm weighted by `importance` [in]
    (None: uniform)."""
    out_features, in_features = weight.shape
    groups = in_features // IN_GROUP_SIZE
    weight = weight.float()
    d = torch.ones(in_features) if importance is None else importance.float().clone()
    # Normalise, and give dead columns a small floor so their weights are still coded deterministically.
    d = (d / d.mean().clamp_min(1e-30)).clamp_min(1e-4)
    w_group = d.view(groups, IN_GROUP_SIZE)  # the metric of each group position, shared by all rows
    generator = generator or torch.Generator().manual_seed(0)

    scales = ((weight.pow(2) * d).mean(1, keepdim=True) / d.mean()).sqrt().clamp_min(1e-12)  # [out, 1]
    target = (weight / scales).view(out_features, groups, IN_GROUP_SIZE)
    residual = target.clone()
    codes = torch.empty(out_features, groups, num_codebooks, dtype=torch.long)
    codebooks = torch.empty(num_codebooks, CODEBOOK_SIZE, IN_GROUP_SIZE)
    for m in range(num_codebooks):  # greedy: each codebook fits what the earlier ones left over
        codebooks[m], codes[:, :, m] = _weighted_kmeans(residual, w_group, generator, iterations)
        residual -= codebooks[m][codes[:, :, m]]
    for _ in range(REFINE_ROUNDS if num_codebooks > 1 else 0):
        # Greedy early codebooks never saw the later ones; refit each against the others' current
        # reconstruction (warm-started, so every step can only lower the weighted error).
        for m in range(num_codebooks):
            residual += codebooks[m][codes[:, :, m]]
            codebooks[m], codes[:, :, m] = _weighted_kmeans(residual, w_group, generator, 0,
                                                            init=codebooks[m])
            residual -= codebooks[m][codes[:, :, m]]

    # Given the codes, each row's best scale is a weighted least-squares fit of W_r onto its decoding.
    decoded = (target - residual).view(out_features, in_features)
    num = (weight * decoded * d).sum(1, keepdim=True)
    den = (decoded.pow(2) * d).sum(1, keepdim=True)
    scales = torch.where(den > 0, num / den.clamp_min(1e-30), scales)
    return codes, codebooks.unsqueeze(2), scales.view(out_features, 1, 1, 1)


def _weighted_kmeans(x: torch.Tensor, w: torch.Tensor, generator: torch.Generator, iterations: int,
                     init: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm on vectors x [rows, groups, 8] under the diagonal metric w [groups, 8] of each
    group position: returns centroids [256, 8] and assignments [rows, groups]. `init`: start from
    these centroids instead of random vectors.

    The Lloyd iterations run on a random sample of at most KMEANS_SAMPLE vectors (k-means on a sample,
    for speed on a few CPU cores); then every vector is assigned, the centroids take one update on all
    of them, and every vector is assigned again."""
    rows, groups, _ = x.shape
    w_full = w.expand_as(x).reshape(-1, IN_GROUP_SIZE)
    # [w*x, w] per vector serves both steps: the distance is sum_j w_j x_j^2 + [w*x, w] . [-2c, c^2]
    # (the first term does not depend on the centroid), and the update's sums are its column sums.
    lhs = torch.cat([w_full * x.reshape(-1, IN_GROUP_SIZE), w_full], 1)  # [n, 16]
    n = lhs.shape[0]
    sample = lhs[torch.randperm(n, generator=generator)[:KMEANS_SAMPLE]] if n > KMEANS_SAMPLE else lhs
    pick = (torch.randperm(len(sample), generator=generator)[:CODEBOOK_SIZE] if len(sample) >= CODEBOOK_SIZE
            else torch.randint(len(sample), (CODEBOOK_SIZE,), generator=generator))
    centroids = init if init is not None else sample[pick, :IN_GROUP_SIZE] / sample[pick, IN_GROUP_SIZE:]
    for _ in range(iterations):
        centroids = _update(centroids, _assign(sample, centroids), sample, generator)
    centroids = _update(centroids, _assign(lhs, centroids), lhs, generator)
    return centroids, _assign(lhs, centroids).view(rows, groups)


def _assign(lhs: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Nearest centroid of each vector under its own weighted metric (lhs = [w*x, w])."""
    rhs = torch.cat([-2 * centroids, centroids.pow(2)], 1).T  # [16, 256]
    out = torch.empty(lhs.shape[0], dtype=torch.long)
    step = _DIST_BLOCK // CODEBOOK_SIZE
    for start in range(0, lhs.shape[0], step):  # blocks bound memory on wide layers
        out[start:start + step] = (lhs[start:start + step] @ rhs).argmin(1)
    return out


def _update(centroids: torch.Tensor, assign: torch.Tensor, lhs: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
    """Weighted means c_kj = sum_i w_ij x_ij / sum_i w_ij over the vectors i assigned to k."""
    width = lhs.shape[1]
    # One flat bincount sums all 16 columns per cluster (faster than index_add_ on a busy CPU).
    slots = (assign[:, None] * width + torch.arange(width)).view(-1)
    sums = torch.bincount(slots, weights=lhs.reshape(-1), minlength=CODEBOOK_SIZE * width)
    num, den = sums.view(CODEBOOK_SIZE, width).to(centroids.dtype).split(IN_GROUP_SIZE, 1)
    empty = den[:, 0] == 0  # every w > 0, so a cluster is empty iff its first weight sum is 0
    new = torch.where(empty[:, None], centroids, num / den.clamp_min(1e-30))
    if empty.any():  # re-seed empty clusters on random vectors rather than waste codes
        pick = torch.randint(lhs.shape[0], (int(empty.sum()),), generator=generator)
        new[empty] = lhs[pick, :IN_GROUP_SIZE] / lhs[pick, IN_GROUP_SIZE:]
    return new


def dequantize(codes: torch.Tensor, codebooks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """W_hat [out, in] = scale_r * sum_m codebook_m[code], the decoding of aqlm's `_dequantize_weight`."""
    out_features, groups, num_codebooks = codes.shape
    cb = codebooks.squeeze(2)  # [M, 256, 8]
    decoded = sum(cb[m][codes[:, :, m]] for m in range(num_codebooks))  # [out, groups, 8]
    return decoded.reshape(out_features, -1) * scales.view(out_features, 1)


def _aqlm_linear(linear: torch.nn.Linear, codes: torch.Tensor, codebooks: torch.Tensor, scales: torch.Tensor):
    from aqlm import QuantizedLinear
    from aqlm.utils import pack_int_data

    q = QuantizedLinear(linear.in_features, linear.out_features, in_group_size=IN_GROUP_SIZE,
                        out_group_size=1, num_codebooks=codes.shape[-1],
                        nbits_per_codebook=NBITS_PER_CODEBOOK, bias=linear.bias is not None,
                        dtype=torch.float32)
    q.codes.data = pack_int_data(codes.clone(), NBITS_PER_CODEBOOK)  # 0..255 stored as int8, as aqlm does
    q.codebooks.data = codebooks.float().contiguous()
    q.scales.data = scales.float().contiguous()
    if linear.bias is not None:
        q.bias.data = linear.bias.detach().float().clone()
    return q
