"""llama.cpp for a LoRA fine-tune without an export: the base as a GGUF, the adapter as a GGUF
LoRA adapter loaded on top of it, checked once against transformers + PEFT before it is used.

A fine-tune trained with LoRA would otherwise chat through transformers in fp32, several times
slower than llama.cpp on a CPU. `prepare` makes what llama.cpp needs, once:

* the base as a GGUF, shared by every fine-tune of it: the bundled Gemma 3 270M's own GGUF (its
  transformers weights are that file's, dequantized), any other base converted once into
  `{models_dir}/fast-path/` (in f32 up to `FULL_PRECISION_PARAMETERS`, so a small model answers
  exactly as transformers' fp32; in f16 above, where f32 would double the memory). Answers
  decoded together (`batch`: evaluations) spend their time reading prompts, which llama.cpp
  does 1.65x faster in f16 than in the bundled file's Q4_K_M on a CPU (measured on an AVX2
  EPYC; an evaluation of 200 reviews took 16.1 s instead of 27.1): for them the bundled base
  is its transformers weights converted once to f16, which answers at least as close to
  transformers as the Q4_K_M file the check below ran on;
* the adapter as a GGUF LoRA adapter, and the verdict of the check: llama.cpp's greedy tokens
  against transformers + PEFT on fixed prompts, near ties excused, as GGUF exports are checked
  (`MIN_AGREEMENT` of the steps). Both live in `{data_dir}/cache/fast-path/{name}/` and are
  deleted with the model (`forget`).

The verdict is kept: a fine-tune that failed its check (or whose adapter llama.cpp cannot
express, such as DoRA) is served by transformers, and every answer says why. The work runs under
a file lock per fine-tune, so the inference server and an evaluation worker never do it twice.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from filelock import FileLock

from tuneforge.export.gguf_check import Check, check_adapter
from tuneforge.inference.params import ModelRef, adapter_name
from tuneforge.models.catalog import CatalogEntry

#: A fine-tune's llama.cpp answers must pick transformers' token at this share of the checked
#: steps (near ties excused), as an f16 GGUF export must.
MIN_AGREEMENT = 0.9
#: Bases up to this size are converted in f32 (exact), larger ones in f16.
FULL_PRECISION_PARAMETERS = 600_000_000
#: Greedy tokens compared per prompt.
CHECK_TOKENS = 16
VERDICT = "verdict.json"

Report = Callable[[str], None]


@dataclass(frozen=True)
class Verdict:
    """Whether llama.cpp serves the fine-tune, and if not, why (sentences for its answers)."""

    ok: bool
    reason: str = ""


def candidate(ref: ModelRef, entry: CatalogEntry) -> bool:
    """Whether `ref` is a LoRA fine-tune llama.cpp could serve on the fast path: text requests
    to a Gemma whose GGUF TuneForge writes, llama.cpp installed, and no GGUF export (llama.cpp
    serves an export directly)."""
    from tuneforge.export.spec import gguf_refusal

    return (
        ref.kind == "adapter"
        and ref.artifact_key is not None
        and ref.gguf is None
        and not ref.images
        and ref.engine in ("auto", "llama.cpp")
        and gguf_refusal(entry) is None
        and importlib.util.find_spec("llama_cpp") is not None
    )


def folder(artifact_key: str, data_dir: Path) -> Path:
    """Where a fine-tune's GGUF adapter and verdict are kept."""
    return data_dir.expanduser() / "cache" / "fast-path" / adapter_name(artifact_key)


def adapter_gguf(artifact_key: str, data_dir: Path) -> Path:
    return folder(artifact_key, data_dir) / "adapter.gguf"


def verdict(artifact_key: str, data_dir: Path) -> Verdict | None:
    """The kept verdict for the fine-tune under `artifact_key` (None: not checked yet)."""
    path = folder(artifact_key, data_dir) / VERDICT
    try:
        return Verdict(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def forget(artifact_key: str, data_dir: Path) -> None:
    """Delete a fine-tune's GGUF adapter and verdict (its model is deleted)."""
    shutil.rmtree(folder(artifact_key, data_dir), ignore_errors=True)


def base_gguf(
    entry: CatalogEntry, models_dir: Path, report: Report | None = None, *, batch: bool = False
) -> Path:
    """The base model as a GGUF llama.cpp loads, made once (see the module docstring);
    `batch`: for answers decoded together, as evaluations decode them."""
    from tuneforge.models.loading import model_dir
    from tuneforge.models.tokenizer import ensure_gguf, publish_once

    models_dir = models_dir.expanduser()
    outtype: Literal["f32", "f16"]
    if entry.source == "gguf-package":
        if not batch:
            return ensure_gguf(models_dir)
        outtype = "f16"
    else:
        outtype = "f32" if entry.parameters <= FULL_PRECISION_PARAMETERS else "f16"
    target = models_dir / "fast-path" / entry.id.replace("/", "--") / f"model-{outtype}.gguf"
    if target.exists():
        return target
    source = model_dir(entry, models_dir, progress=report)
    vocab = None if (source / "tokenizer.model").is_file() else ensure_gguf(models_dir)

    def build(out: Path) -> None:
        from tuneforge.export.gguf import convert

        if report is not None:
            report(f"Converting {entry.name} to GGUF for llama.cpp (once)…")
        convert(source, out, outtype, name=entry.name, vocab_gguf=vocab)

    return publish_once(target, build)


def prepare(
    ref: ModelRef,
    entry: CatalogEntry,
    adapter_dir: Path,
    models_dir: Path,
    data_dir: Path,
) -> Verdict:
    """The verdict for `ref`'s fine-tune (its PEFT files in `adapter_dir`), making the GGUF
    files and running the check the first time (see the module docstring)."""
    from tuneforge.export.gguf_header import GgufConversionError
    from tuneforge.export.gguf_lora import convert_adapter
    from tuneforge.models.loading import model_dir

    assert ref.artifact_key is not None
    place = folder(ref.artifact_key, data_dir)
    place.mkdir(parents=True, exist_ok=True)
    with FileLock(place / ".lock"):
        found = verdict(ref.artifact_key, data_dir)
        if found is not None:
            return found
        base = base_gguf(entry, models_dir)
        base_dir = model_dir(entry, models_dir)
        adapter = place / "adapter.gguf"
        try:
            convert_adapter(adapter_dir, base_dir, adapter)
        except GgufConversionError as exc:
            found = Verdict(False, str(exc))
        else:
            found = _judge(check_adapter(base, adapter, base_dir, adapter_dir, n=CHECK_TOKENS))
        _write(place / VERDICT, found)
    return found


def _judge(check: Check) -> Verdict:
    steps = check.n * len(check.forced)
    agreed = sum(check.forced)
    if agreed >= MIN_AGREEMENT * steps:
        return Verdict(True)
    return Verdict(
        False,
        f"Its llama.cpp answers differ from transformers + PEFT (the same token at {agreed} of "
        f"{steps} checked steps; {MIN_AGREEMENT:.0%} needed).",
    )


def _write(path: Path, found: Verdict) -> None:
    """Write the verdict atomically: a reader sees the old file or the new one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".verdict-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(asdict(found), out)
    os.replace(temporary, path)
