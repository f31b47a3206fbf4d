"""The torch-free estimate: hardware detection, the memory model, speed and its calibration cache,
and refusals that say what to change."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.data.stats import DatasetStats, StatsBuilder
from tuneforge.hardware import GPU, Hardware, detect_hardware, parse_nvidia_smi
from tuneforge.models.catalog import CatalogEntry, catalog
from tuneforge.training.estimate import (
    CalibrationCache,
    Timings,
    decoder_linear_parameters,
    device_for,
    embedding_parameters,
    estimate,
    lora_parameters,
    resolve_precision,
)
from tuneforge.training.estimate.memory import LOGITS_CHUNK
from tuneforge.training.estimate.throughput import REFERENCE_TOKENS_PER_SECOND
from tuneforge.training.spec import SFTSpec

GB = 10**9


def cpu(available: float = 21.8, bf16: bool = True, cores: int = 2) -> Hardware:
    return Hardware(
        cpu_model="Test CPU",
        cores=cores,
        memory_total_bytes=int(24 * GB),
        memory_available_bytes=int(available * GB),
        cpu_bf16=bf16,
    )


def gpu(
    free: float = 39.0, name: str = "NVIDIA A100-SXM4-40GB", capability: str = "8.0"
) -> Hardware:
    return cpu().model_copy(
        update={
            "gpus": [
                GPU(
                    name=name,
                    memory_total_bytes=int((free + 1) * GB),
                    memory_free_bytes=int(free * GB),
                    compute_capability=capability,
                    bf16=float(capability) >= 8,
                )
            ]
        }
    )


def model(model_id: str) -> CatalogEntry:
    entry = catalog().get(model_id)
    assert entry is not None, model_id
    return entry


def stats(rows: int = 1000, mean_prompt: int = 180, mean_answer: int = 120) -> DatasetStats:
    """Real statistics (the same builder as processing) of synthetic lengths."""
    rng = random.Random(0)
    prompts = [max(5, int(rng.expovariate(1 / mean_prompt))) for _ in range(rows)]
    answers = [max(2, int(rng.expovariate(1 / mean_answer))) for _ in range(rows)]
    builder = StatsBuilder()
    train = rows * 9 // 10
    for split, part in (("train", slice(0, train)), ("test", slice(train, rows))):
        p, a = prompts[part], answers[part]
        builder.add_lengths(split, p, a, [2] * len(p), [f"{split}{i}" for i in range(len(p))])
    return builder.finish()


def spec(**values: object) -> SFTSpec:
    return SFTSpec(**{"base_model": "gemma-3-270m", "dataset_id": "d", **values})  # type: ignore[arg-type]


def peak(entry: CatalogEntry, hardware: Hardware | None = None, **values: object) -> int:
    result = estimate(spec(**values), entry, stats(), 900, hardware or cpu())
    return result.peak_memory_bytes


# -- hardware ------------------------------------------------------------------------------------


def test_detect_hardware_sees_this_machine_and_caches_it() -> None:
    first = detect_hardware()
    assert first.cores >= 1 and first.cpu_model
    assert 0 < first.memory_available_bytes <= first.memory_total_bytes
    assert detect_hardware() is first  # within the cache's minute
    assert detect_hardware(max_age=0) is not first
    assert detect_hardware(max_age=0).fingerprint == first.fingerprint


def test_fingerprint_follows_compute_not_free_memory() -> None:
    assert cpu(available=3).fingerprint == cpu(available=20).fingerprint
    assert cpu().fingerprint != cpu(cores=8).fingerprint
    assert cpu().fingerprint != gpu().fingerprint
    assert len(cpu().fingerprint) == 16


def test_nvidia_smi_output_is_parsed() -> None:
    output = "NVIDIA A100-SXM4-40GB, 40960, 40000, 8.0\nTesla T4, 15360, [N/A], 7.5\n"
    a100, t4 = parse_nvidia_smi(output)
    assert a100.name == "NVIDIA A100-SXM4-40GB" and a100.bf16
    assert a100.memory_total_bytes == 40960 * 2**20 and a100.memory_free_bytes == 40000 * 2**20
    assert not t4.bf16 and t4.memory_free_bytes == t4.memory_total_bytes
    (old,) = parse_nvidia_smi("Tesla K80, 11441, 11000\n", with_capability=False)
    assert not old.bf16 and old.compute_capability is None


def test_precision_and_device() -> None:
    assert resolve_precision("auto", cpu(bf16=True), "lora") == "bf16"
    assert resolve_precision("auto", cpu(bf16=False), "lora") == "fp32"
    assert resolve_precision("auto", gpu(), "full") == "bf16"
    assert resolve_precision("auto", gpu(name="Tesla T4", capability="7.5"), "qlora") == "fp16"
    assert resolve_precision("fp32", gpu(), "lora") == "fp32"
    assert (device_for(cpu()), device_for(gpu())) == ("cpu", "cuda")


# -- the memory model ----------------------------------------------------------------------------


def test_architecture_numbers_add_up_to_the_catalog_parameters() -> None:
    for entry in catalog().models:
        if entry.family != "gemma-3" or entry.modality != "text":
            continue
        counted = decoder_linear_parameters(entry.architecture) + embedding_parameters(
            entry.architecture
        )
        assert counted == pytest.approx(entry.parameters, rel=2e-3), entry.id


def test_lora_parameters_match_peft() -> None:
    """r x (in + out) per adapted layer, checked against PEFT on Gemma 3 built on the meta
    device from each Gemma 3 decoder architecture in the catalog."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    architectures = {e.architecture.model_dump_json(): e for e in catalog().models}
    for entry in architectures.values():
        if entry.family != "gemma-3":
            continue  # Gemma 3n has further linear layers (AltUp, LAuReL) the estimate skips
        a = entry.architecture
        config = Gemma3TextConfig(
            vocab_size=a.vocab_size,
            hidden_size=a.hidden_size,
            intermediate_size=a.intermediate_size,
            num_hidden_layers=a.layers,
            num_attention_heads=a.attention_heads,
            num_key_value_heads=a.kv_heads,
            head_dim=a.head_dim,
        )
        for targets in (["all-linear"], ["q_proj", "v_proj"]):
            with torch.device("meta"):
                base = Gemma3ForCausalLM(config)
            target: str | list[str] = "all-linear" if targets == ["all-linear"] else targets
            adapted = peft.get_peft_model(base, peft.LoraConfig(r=8, target_modules=target))
            counted = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
            assert lora_parameters(a, 8, targets) == counted, (entry.id, targets)


def test_memory_grows_with_batch_length_and_rank() -> None:
    entry = model("gemma-3-270m")
    no_stats = cpu(available=1000)

    def at(**values: object) -> int:
        return estimate(spec(**values), entry, None, 900, no_stats).peak_memory_bytes

    assert at(batch_size=1) < at(batch_size=2) < at(batch_size=8)
    assert at(max_length=256) < at(max_length=512) < at(max_length=2048)
    assert at(lora_r=8) < at(lora_r=64) < at(lora_r=256)
    assert at(gradient_checkpointing=True) < at(gradient_checkpointing=False)
    assert at(precision="bf16") < at(precision="fp32")


def test_full_needs_more_than_lora_which_needs_more_than_qlora() -> None:
    for model_id in ("gemma-3-270m", "gemma-3-4b"):
        entry = catalog().get(model_id)
        if entry is None:
            continue
        full, lora, qlora = (peak(entry, gpu(), method=m) for m in ("full", "lora", "qlora"))
        assert full > lora > qlora, model_id


def test_bigger_models_need_more() -> None:
    entries = sorted(
        (e for e in catalog().models if e.family == "gemma-3" and not e.test_only),
        key=lambda e: e.parameters,
    )
    peaks = [peak(e, gpu()) for e in entries]
    assert peaks == sorted(peaks)


def test_an_impossible_run_is_refused_with_what_to_change() -> None:
    biggest = max(catalog().models, key=lambda e: e.parameters)
    result = estimate(
        spec(base_model=biggest.id, method="full", batch_size=64, max_length=8192),
        biggest,
        None,
        10_000,
        cpu(available=21.8),
    )
    assert not result.fits
    assert result.peak_memory_bytes > result.available_memory_bytes
    assert result.refusal is not None
    assert result.refusal.startswith("Needs about ")
    assert "this machine has 21.8 GB free" in result.refusal
    assert "LoRA" in result.refusal and "smaller model" in result.refusal


def test_a_refusal_names_the_changes_that_are_enough_in_order_of_effect() -> None:
    entry, data, small = model("gemma-3-270m"), stats(), cpu(available=8)
    result = estimate(spec(batch_size=16, max_length=1024), entry, data, 900, small)
    assert not result.fits and result.refusal
    assert result.refusal.startswith("Needs about ")
    assert "this machine has 8.0 GB free: lower the batch size from 16 to " in result.refusal
    assert result.refusal.endswith(", or turn on gradient checkpointing.")
    size = int(result.refusal.split("lower the batch size from 16 to ")[1].split()[0])
    assert f"(with gradient accumulation {16 // size} to keep 16 examples per step)" in (
        result.refusal
    )
    peaks = []
    for change in ({"batch_size": size}, {"gradient_checkpointing": True}):
        changed = estimate(spec(**{"batch_size": 16, **change}), entry, data, 900, small)
        assert changed.fits, f"{change} is not enough alone"
        peaks.append(changed.peak_memory_bytes)
    assert peaks == sorted(peaks), "the change that saves the most comes first"
    bigger = spec(batch_size=size * 2, max_length=1024)
    assert not estimate(bigger, entry, data, 900, small).fits, "the largest that fits"


def test_when_no_single_change_is_enough_they_are_combined() -> None:
    entry, data, tiny_ram = model("gemma-3-270m"), stats(), cpu(available=3)
    result = estimate(spec(batch_size=16, max_length=1024), entry, data, 900, tiny_ram)
    assert result.refusal
    assert "no single change is enough: turn on gradient checkpointing, and lower the batch " in (
        result.refusal
    )
    size = int(result.refusal.split("lower the batch size from 16 to ")[1].split()[0])
    combined = spec(batch_size=size, gradient_accumulation=16 // size, gradient_checkpointing=True)
    assert estimate(combined, entry, data, 900, tiny_ram).fits


def test_qlora_without_cuda_is_refused() -> None:
    result = estimate(spec(method="qlora"), model("gemma-3-270m"), stats(), 900, cpu())
    assert not result.fits
    assert result.refusal == (
        "QLoRA needs a CUDA GPU with bitsandbytes; this machine has none: choose LoRA."
    )
    assert estimate(spec(method="qlora"), model("gemma-3-270m"), stats(), 900, gpu()).fits


def test_vision_models_say_images_are_not_trained() -> None:
    vision = next((e for e in catalog().models if e.modality == "vision"), None)
    assert vision is not None, "the catalog has vision models (Gemma 3 4B/12B/27B)"
    result = estimate(spec(base_model=vision.id), vision, stats(), 900, gpu(free=79))
    assert any("text only" in message for message in result.messages)


def test_stats_as_model_or_as_json_give_the_same_estimate() -> None:
    entry, data = model("gemma-3-270m"), stats()
    from_model = estimate(spec(), entry, data, 900, cpu())
    from_json = estimate(spec(), entry, json.loads(data.model_dump_json()), 900, cpu())
    assert from_model == from_json


def test_sane_numbers_for_gemma_3_270m_lora_on_this_kind_of_cpu() -> None:
    """A typical dataset: 900 training examples of ~300 tokens, 3 epochs, LoRA r=16, bf16,
    batch 4 x 4, on a 2-core AVX-512-BF16 CPU (this machine: 165 tokens/s measured)."""
    data = stats()
    result = estimate(
        spec(batch_size=4, gradient_accumulation=4), model("gemma-3-270m"), data, 900, cpu()
    )
    assert result.fits and result.refusal is None
    assert (result.device, result.precision) == ("cpu", "bf16")
    assert result.trainable_parameters == 3_796_992  # what PEFT reports for r=16, all-linear
    assert result.total_parameters == 268_098_176
    assert result.steps == 171  # ceil(900 / 16) x 3
    assert result.tokens == pytest.approx(900 * 3 * data.total_tokens.mean, rel=0.02)
    assert 1 * GB < result.peak_memory_bytes < 10 * GB
    assert 80 < result.tokens_per_second < 300
    assert result.training_seconds == pytest.approx(result.tokens / result.tokens_per_second, 0.01)
    assert result.duration_seconds == pytest.approx(result.phases.total, abs=0.5)
    assert result.duration_seconds > result.training_seconds + 10  # starting and saving count
    assert not result.calibrated
    assert result.memory.total_bytes == result.peak_memory_bytes


def test_max_steps_decides_the_length_of_the_run() -> None:
    result = estimate(
        spec(max_steps=10, batch_size=2, gradient_accumulation=4),
        model("gemma-3-270m"),
        stats(),
        900,
        cpu(),
    )
    assert result.steps == 10
    assert result.tokens == pytest.approx(10 * 8 * stats().total_tokens.mean, rel=0.02)


def test_the_cpu_speed_is_scaled_to_the_measurement() -> None:
    """The reference workload gives 165 tokens/s; more cores are faster, fp32 slower."""
    reference = SFTSpec(base_model="gemma-3-270m", dataset_id="d", batch_size=4, max_length=256)
    entry = model("gemma-3-270m")
    lengths = {
        "rows": {"train": 100},
        "total_tokens": {"count": 100, "mean": 256, "p50": 256, "p90": 256, "p95": 256, "max": 256},
        "answer_tokens": {"mean": 64},
    }
    result = estimate(reference, entry, lengths, 100, cpu())
    assert result.tokens_per_second == pytest.approx(REFERENCE_TOKENS_PER_SECOND, rel=0.02)
    assert estimate(reference, entry, lengths, 100, cpu(cores=8)).tokens_per_second > 600
    fp32 = reference.model_copy(update={"precision": "fp32"})
    assert estimate(fp32, entry, lengths, 100, cpu()).tokens_per_second < 100


def test_logit_chunk_matches_the_loss_component() -> None:
    loss = pytest.importorskip("tuneforge.training.components.loss")
    assert loss.CHUNK == LOGITS_CHUNK


# -- calibration ---------------------------------------------------------------------------------


def test_calibration_cache_round_trip(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "calibration.json")
    key = cache.key("abc", "gemma-3-270m", "lora", "bf16", False, True)
    assert cache.get(key) is None
    cache.record(key, 100.0, 3 * GB)
    cache.record(key, 200.0, None)
    got = cache.get(key)
    assert got is not None
    assert (got.tokens_per_second, got.peak_memory_bytes, got.samples) == (150.0, 3 * GB, 2)
    for speed in range(1, 11):
        cache.record(key, float(speed))
    got = cache.get(key)
    assert got is not None and got.samples == CalibrationCache.KEEP
    assert (
        got.tokens_per_second == sum(range(11 - CalibrationCache.KEEP, 11)) / CalibrationCache.KEEP
    )
    other = cache.key("abc", "gemma-3-270m", "lora", "bf16", True, True)
    assert other != key and cache.get(other) is None
    # Each trainer has its own measurements; SFT's keep the key they had before trainers.
    assert cache.key("abc", "gemma-3-270m", "lora", "bf16", False, True, "sft") == key
    dpo = cache.key("abc", "gemma-3-270m", "lora", "bf16", False, True, "dpo")
    assert dpo != key and cache.get(dpo) is None
    assert CalibrationCache(tmp_path / "calibration.json").get(key) == got  # it is on disk
    with pytest.raises(ValueError):
        cache.record(key, 0.0)


def test_a_broken_cache_file_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text("{not json")
    cache = CalibrationCache(path)
    key = cache.key("abc", "m", "lora", "bf16", False, True)
    assert cache.get(key) is None
    cache.record(key, 5.0)
    assert json.loads(path.read_text())["entries"][key]["tokens_per_second"] == [5.0]


WRITER = """
import sys
from tuneforge.training.estimate import CalibrationCache
cache = CalibrationCache(sys.argv[1])
for i in range(int(sys.argv[3])):
    cache.record(cache.key("fp", f"model-{sys.argv[2]}", "lora", "bf16", False, True), 1.0 + i)
    cache.record(cache.key("fp", "shared", "lora", "bf16", False, True), 1.0 + i, 10 + i)
"""


def test_concurrent_writers_lose_nothing_and_never_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), "8"]) for w in range(4)
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0] * 4
    entries = json.loads(path.read_text())["entries"]
    cache = CalibrationCache(path)
    for w in range(4):
        got = cache.get(cache.key("fp", f"model-{w}", "lora", "bf16", False, True))
        assert got is not None and got.samples == CalibrationCache.KEEP, "a measurement was lost"
    shared = cache.get(cache.key("fp", "shared", "lora", "bf16", False, True))
    assert shared is not None and shared.samples == CalibrationCache.KEEP
    assert len(entries) == 5
    assert not list(tmp_path.glob("*.tmp")), "a temporary file was left behind"


def test_a_measured_speed_replaces_the_guess(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "calibration.json")
    entry, hardware, run = model("gemma-3-270m"), cpu(), spec()
    guess = estimate(run, entry, stats(), 900, hardware, cache)
    assert not guess.calibrated
    key = cache.key(hardware.fingerprint, entry.id, "lora", "bf16", False, True)
    cache.record(key, 1000.0, 5 * GB)
    measured = estimate(run, entry, stats(), 900, hardware, cache)
    assert measured.calibrated and measured.tokens_per_second == 1000.0
    assert measured.training_seconds == pytest.approx(measured.tokens / 1000.0, rel=1e-3)
    assert measured.measured_peak_memory_bytes == 5 * GB
    assert not any("rough guess" in m for m in measured.messages)
    elsewhere = estimate(run, entry, stats(), 900, cpu(cores=8), cache)
    assert not elsewhere.calibrated, "another machine's measurement must not be used"


def test_measured_phase_timings_replace_the_first_run_constants(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "calibration.json")
    entry, hardware = model("tiny-random-gemma3"), cpu()
    run = spec(base_model=entry.id, max_steps=30, eval_every=10, checkpoint_every=10)
    guess = estimate(run, entry, stats(), 40, hardware, cache, test_rows=10)
    # first run: the constants of this machine; starting a worker alone takes seconds
    assert guess.phases.loading >= 10 and guess.phases.saving >= 1
    assert guess.phases.evaluating > 0 and guess.phases.sampling > 0
    assert guess.phases.checkpoints > 0  # at steps 10 and 20
    assert guess.duration_seconds == pytest.approx(guess.phases.total, abs=0.5)
    key = cache.key(hardware.fingerprint, entry.id, "lora", "bf16", False, True)
    timings = Timings(
        load_seconds=20.0,
        eval_seconds_per_token=0.001,
        sample_seconds_per_token=0.05,
        checkpoint_seconds=2.0,
        save_seconds=4.0,
    )
    cache.record(key, 500.0, None, timings)
    cache.record(key, 500.0, None, timings.model_copy(update={"load_seconds": 30.0}))
    assert cache.timings(key).load_seconds == 25.0  # the mean of the measurements
    measured = estimate(run, entry, stats(), 40, hardware, cache, test_rows=10)
    assert measured.phases.loading == 25.0
    assert measured.phases.checkpoints == 4.0  # 2 checkpoints of 2 s
    assert measured.phases.saving == 4.0
    # 4 evaluations (before, 10, 20, the end) of 3 sample prompts x 32 new tokens
    assert measured.phases.sampling == pytest.approx(4 * 3 * run.sample_max_new_tokens * 0.05, 0.01)
    assert measured.duration_seconds == pytest.approx(measured.phases.total, abs=0.5)


# -- weight --------------------------------------------------------------------------------------


def test_importing_the_estimate_never_loads_torch() -> None:
    code = (
        "import sys, tuneforge.hardware, tuneforge.training.estimate, "
        "tuneforge.training.recommend, tuneforge.training.presets; "
        "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_preference_pair_counts_two_sequences_and_its_reference_passes() -> None:
    from tuneforge.training.spec import DPOSpec, ORPOSpec

    entry = model("gemma-3-270m")
    settings = {"base_model": entry.id, "dataset_id": "d", "epochs": 1, "max_length": 512}
    sft = estimate(SFTSpec(**settings), entry, stats(), 900, cpu())
    dpo = estimate(DPOSpec(**settings), entry, stats(), 900, cpu())
    orpo = estimate(ORPOSpec(**settings), entry, stats(), 900, cpu())
    assert dpo.tokens == orpo.tokens == pytest.approx(2 * sft.tokens, abs=2)
    assert dpo.memory.activations_bytes > sft.memory.activations_bytes
    # ORPO trains the same tokens without a reference; DPO also scores both answers once.
    assert 2 * sft.training_seconds <= orpo.training_seconds < 2.6 * sft.training_seconds
    assert dpo.training_seconds > 1.2 * orpo.training_seconds
