"""HF Trainer scripts as HF's docs teach them (hf_user_script.py), interrupted by real signals:
the best checkpoint under HF's metric names survives resumes, early stopping and the best
metric resume exactly, collate-time masking, fp16's GradScaler and an IterableDataset within
its first pass resume bitwise, and so do PEFT models (LoRA and the other verified adapter
types; test_frozen_base_e2e.py checks what their checkpoints hold); the setups that cannot resume
exactly are warned (data workers, a dispatched loader) or refused (an IterableDataset past its
first pass, DeepSpeed, FSDP, several PEFT adapters, an unverified adapter type, a quantized
base) with what to do.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    attempt_env,
    same_params,
    store_for,
    termination,
    torchrun,
    trainer_env,
)

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("hf_user_script.py")


def _run(
    env: dict[str, str], tmp: Path, log: Path, out: str, steps: int, errs: list[str] | None = None
) -> int:
    p = subprocess.run(
        [sys.executable, str(SCRIPT), str(log), str(steps), str(tmp / out), str(tmp / "hf-out")],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode in (0, 75, 78, -signal.SIGKILL), p.stderr[-3000:]
    if errs is not None:
        errs.append(p.stderr)
    return p.returncode


def _rows(log: Path, key: str) -> list[tuple[int, float]]:
    rows = map(json.loads, log.read_text().splitlines())
    return [(d["step"], d[key]) for d in rows if key in d]


def _interrupted(
    s3: Any,
    bucket: str,
    tmp: Path,
    stops: list[str],
    steps: int,
    errs: list[str] | None = None,
    /,
    **extra: str,
) -> list[int]:
    """Attempts 1.. of a job, each stopped as `stops` says ("T7": SIGTERM after step 7,
    "K7": SIGKILL after 7 once the saves committed, "": none); their exit codes (and
    stderrs, into `errs`)."""
    codes = []
    for attempt, stop in enumerate(stops, start=1):
        kind = {"T": "HF_USER_SIGTERM_AT", "K": "HF_USER_KILL_AT"}.get(stop[:1])
        signals = {kind: stop[1:]} if kind else {}
        env = attempt_env(s3, f"s3://{bucket}/int", tmp, attempt, **extra, **signals)
        codes.append(_run(env, tmp, tmp / "int.jsonl", "b.pt", steps, errs))
    return codes


def _reference(
    s3: Any, bucket: str, tmp: Path, steps: int, errs: list[str] | None = None, /, **extra: str
) -> Path:
    ref = tmp / "ref.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp, **extra)
    assert _run(env, tmp, ref, "a.pt", steps, errs) == 0
    return ref


def test_best_checkpoint_named_as_hf_names_it_survives_resumes(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """metric_for_best_model="accuracy" (results carry eval_accuracy), retention keeping one
    latest: commits of resumed processes before their first evaluation keep the best, and
    load_best loads it."""
    extra = {"LAZARUS_KEEP_LATEST": "1"}
    ref = _reference(s3, bucket, tmp_path, 30, **extra)
    acc = dict(_rows(ref, "eval_accuracy"))
    best = max(acc, key=lambda s: (acc[s], -s))  # HF: the first of equal values
    assert best <= 20, acc  # the test's premise: commits follow the best one
    stops = [f"T{best + 2}", f"T{best + 3}", ""]
    assert _interrupted(s3, bucket, tmp_path, stops, 30, **extra) == [75, 75, 0]
    kept = {c.step for c in store_for(s3, f"s3://{bucket}/int").list_checkpoints() if c.committed}
    assert best in kept, sorted(kept)
    assert _rows(tmp_path / "int.jsonl", "loss") == _rows(ref, "loss")
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    assert same_params(tmp_path / "a.pt.best", tmp_path / "b.pt.best")
    assert not same_params(tmp_path / "b.pt", tmp_path / "b.pt.best")


def test_early_stopping_and_best_metric_resume_exactly(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """EarlyStoppingCallback(patience=2) on eval loss, higher taken as better (so that the
    first evaluation is the best), a save at every evaluation: killed right after the step-5
    (eval-best) save and the step-10 save, the run stops where the uninterrupted one does,
    which needs HF's best metric after the step-5 evaluation and the patience counter after
    step 10's."""
    extra = {
        "HF_USER_METRIC": "loss",
        "HF_USER_GREATER": "1",
        "HF_USER_PATIENCE": "2",
        "LAZARUS_SAVE_EVERY_STEPS": "5",
    }
    ref = _reference(s3, bucket, tmp_path, 40, **extra)
    evals = _rows(ref, "eval_loss")
    assert evals[-1][0] == 15, evals  # the test's premise: it stopped early, at the 3rd
    killed = -signal.SIGKILL
    codes = _interrupted(s3, bucket, tmp_path, ["K6", "K11", ""], 40, **extra)
    assert codes == [killed, killed, 0]
    assert _rows(tmp_path / "int.jsonl", "eval_loss")[-1] == evals[-1]
    assert _rows(tmp_path / "int.jsonl", "loss")[-3:] == _rows(ref, "loss")[-3:]
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    a = json.loads((tmp_path / "a.pt.state").read_text())
    assert json.loads((tmp_path / "b.pt.state").read_text()) == a


def test_collate_time_masking_resumes_bitwise(s3: Any, bucket: str, tmp_path: Path) -> None:
    """The collator masks from torch's global RNG; 9 micro-batches an epoch, accumulation 2:
    SIGTERMs mid-epoch (3, 7) and at an epoch's end (5) resume to the same losses."""
    extra = {"HF_USER_ACCUM": "2"}
    ref = _reference(s3, bucket, tmp_path, 12, **extra)
    assert _interrupted(s3, bucket, tmp_path, ["T3", "T5", "T7", ""], 12, **extra) == [
        75,
        75,
        75,
        0,
    ]
    assert _rows(tmp_path / "int.jsonl", "loss") == _rows(ref, "loss")
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")


def test_iterable_dataset_resumed_past_its_first_pass_is_refused(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """10 batches a pass, a stop at step 12 (the second pass), which HF would resume by
    skipping 12 batches from the stream's start: refused before training (78), saying what
    to do."""
    extra = {"HF_USER_ITERABLE": "1"}
    codes = _interrupted(s3, bucket, tmp_path, ["T12", ""], 15, **extra)
    assert codes == [75, 78]
    term = termination(tmp_path)
    assert "first pass" in term["message"] and "repeat" in term["message"], term
    assert [s for s, _ in _rows(tmp_path / "int.jsonl", "loss")] == list(range(1, 13))


def test_hf_trainer_with_deepspeed_is_refused_before_training(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    env = trainer_env(s3, f"s3://{bucket}/ds", tmp_path, HF_USER_DEEPSPEED="1")
    assert _run(env, tmp_path, tmp_path / "ds.jsonl", "d.pt", 10) == 78
    term = termination(tmp_path)
    assert term["outcome"] == "permanent-error", term
    assert "from_deepspeed" in term["message"] and "deepspeed=" in term["message"], term
    assert not (tmp_path / "ds.jsonl").exists()  # not one step trained


def test_iterable_dataset_resumed_within_its_first_pass_is_exact(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """10 batches a pass, masked from the global RNG at collate time, each process loading
    its own batches (dispatch_batches=False): SIGTERMs at steps 3 and 6, which HF resumes by
    fetching and dropping 3 and 6 batches, resume to the uninterrupted run's losses."""
    extra = {"HF_USER_ITERABLE": "1", "HF_USER_SHARD": "1"}
    ref = _reference(s3, bucket, tmp_path, 9, **extra)
    assert _interrupted(s3, bucket, tmp_path, ["T3", "T6", ""], 9, **extra) == [75, 75, 0]
    assert _rows(tmp_path / "int.jsonl", "loss") == _rows(ref, "loss")
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")


def _warnings(s3: Any, bucket: str, tmp: Path, **extra: str) -> str:
    """A short run's stderr (it completes: a warning stops nothing)."""
    env = trainer_env(s3, f"s3://{bucket}/w", tmp, **extra)
    p = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp / "w.jsonl"), "6", str(tmp / "w.pt"), str(tmp)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stderr


def test_iterable_dataset_dispatched_by_accelerate_is_warned(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """Accelerate's default for an IterableDataset (dispatch_batches) loads outside the
    fetches Lazarus resumes: warned once, naming the setting that makes it exact."""
    err = _warnings(s3, bucket, tmp_path, HF_USER_ITERABLE="1")
    assert err.count("Accelerate dispatches the training batches") == 1, err[-3000:]
    assert "accelerator_config={'dispatch_batches': False}" in err


def test_dataloader_workers_are_warned(s3: Any, bucket: str, tmp_path: Path) -> None:
    """dataloader_num_workers=2: the collator's masks are drawn in worker processes, which a
    resume starts afresh: warned once, saying what makes it exact."""
    err = _warnings(s3, bucket, tmp_path, HF_USER_WORKERS="2")
    assert err.count("dataloader_num_workers=2: randomness drawn while loading") == 1, err[-3000:]
    assert "dataloader_num_workers=0 makes it exact" in err


def test_fp16_grad_scaler_resumes_exactly(s3: Any, bucket: str, tmp_path: Path) -> None:
    """fp16 with HF's GradScaler (hf_user_script's CpuAmpTrainer): the scale grows, overflows
    fp16 (a skipped step, grad_norm Infinity in HF's log) and backs off; SIGTERMs at steps 5
    (growth tracker 2) and 9 (just grown) resume to the same scales, trackers and losses."""
    extra = {"HF_USER_FP16": "1"}
    ref = _reference(s3, bucket, tmp_path, 14, **extra)
    scales = [s for _, s in _rows(ref, "scale")]
    assert min(scales[1:]) < scales[0] < max(scales), scales  # premise: backed off, grew
    assert _interrupted(s3, bucket, tmp_path, ["T5", "T9", ""], 14, **extra) == [75, 75, 0]
    log = tmp_path / "int.jsonl"
    assert _rows(log, "scale") == _rows(ref, "scale")
    assert _rows(log, "growth") == _rows(ref, "growth")
    assert _rows(log, "loss") == _rows(ref, "loss")
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")


def _refused(s3: Any, bucket: str, tmp: Path, cmd: list[str], **extra: str) -> dict[str, Any]:
    """A run refused before training: exit 78, not one step logged; its termination message."""
    env = trainer_env(s3, f"s3://{bucket}/r", tmp, **extra)
    args = [str(tmp / "r.jsonl"), "10", str(tmp / "r.pt"), str(tmp / "hf-out")]
    p = subprocess.run(
        [*cmd, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert p.returncode == 78, p.stderr[-3000:]
    # torchrun's agent prints its own traceback after the worker ended: the worker's is before.
    assert "Traceback" not in p.stderr.split("torch/distributed/elastic/")[0], p.stderr[-3000:]
    assert not (tmp / "r.jsonl").exists()  # not one step trained
    term = termination(tmp)
    assert term["outcome"] == "permanent-error", term
    return term


def test_hf_trainer_with_fsdp_is_refused_before_training(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """TrainingArguments(fsdp=True) under torchrun (HF refuses fsdp outside distributed
    training itself), behind lazarus-launch, which maps torchrun's 1 back to 78."""
    cmd = [sys.executable, "-m", "lazarus_trainer.launch", *torchrun(1, str(SCRIPT))]
    term = _refused(s3, bucket, tmp_path, cmd, HF_USER_FSDP="1")
    assert "FSDP (TrainingArguments(fsdp=...)) is not supported" in term["message"], term
    assert "FSDP2 in your own loop" in term["message"], term


def test_hf_trainer_with_a_lora_model_resumes_bitwise(s3: Any, bucket: str, tmp_path: Path) -> None:
    """A LoRA model (peft's get_peft_model over the script's model: the embedding and the
    output projection, dropout in the adapter) with load_best, higher eval loss taken as
    better (so that the best is not the last evaluation): SIGTERMs mid-interval (3) and on
    the best evaluation's step (10) resume to the uninterrupted run's losses, final and best
    weights, best metric and trainable/frozen split."""
    extra = {"HF_USER_PEFT": "lora", "HF_USER_METRIC": "loss", "HF_USER_GREATER": "1"}
    errs: list[str] = []
    ref = _reference(s3, bucket, tmp_path, 12, errs, **extra)
    stops = ["T3", "T10", ""]
    assert _interrupted(s3, bucket, tmp_path, stops, 12, errs, **extra) == [75, 75, 0]
    assert _rows(tmp_path / "int.jsonl", "loss") == _rows(ref, "loss")
    assert _rows(tmp_path / "int.jsonl", "eval_accuracy") == _rows(ref, "eval_accuracy")
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    assert same_params(tmp_path / "a.pt.best", tmp_path / "b.pt.best")
    a = json.loads((tmp_path / "a.pt.state").read_text())
    assert json.loads((tmp_path / "b.pt.state").read_text()) == a
    evals = dict(_rows(ref, "eval_loss"))
    assert a["best_metric"] == evals[10] == max(evals.values()), evals  # premise: best at 10
    assert not same_params(tmp_path / "b.pt", tmp_path / "b.pt.best")
    # premise: the base is frozen, the adapter trains
    assert [n.removeprefix("base_model.model.") for n in a["trainable"]] == [
        "emb.lora_embedding_A.default",
        "emb.lora_embedding_B.default",
        "out.lora_A.default.weight",
        "out.lora_B.default.weight",
    ], a


@pytest.mark.parametrize("kind", ["loha", "lokr", "ia3", "prompt", "ptuning", "prefix"])
def test_hf_trainer_with_peft_adapters_resumes_bitwise(
    s3: Any, bucket: str, tmp_path: Path, kind: str
) -> None:
    """The other adapter types Lazarus takes under HF Trainer (hf_state.PEFT_VERIFIED; prompt
    learning on a tiny GPT-2): a SIGTERM at step 4 resumes to the same losses, evaluations,
    weights and trainable parameters."""
    extra = {"HF_USER_PEFT": kind}
    ref = _reference(s3, bucket, tmp_path, 7, **extra)
    assert _interrupted(s3, bucket, tmp_path, ["T4", ""], 7, **extra) == [75, 0]
    assert _rows(tmp_path / "int.jsonl", "loss") == _rows(ref, "loss")
    assert _rows(tmp_path / "int.jsonl", "eval_loss") == _rows(ref, "eval_loss")
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    a = json.loads((tmp_path / "a.pt.state").read_text())
    assert json.loads((tmp_path / "b.pt.state").read_text()) == a
    assert a["trainable"] and all(".default" in n for n in a["trainable"]), a


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("two", ["2 adapters (default, second)", "model.delete_adapter(name)"]),
        ("adalora", ["PEFT's ADALORA (adapter)", "verified: LORA, LOHA, LOKR, IA3, PROMPT_TUNING"]),
        ("qlora", ["quantized model (quantization_config: bitsandbytes)", "without quantization"]),
        ("multitask", ["PEFT's MULTITASK_PROMPT_TUNING (prompt learning)", "e.g. LoraConfig"]),
    ],
)
def test_hf_trainer_with_an_unverified_peft_model_is_refused_before_training(
    s3: Any, bucket: str, tmp_path: Path, kind: str, says: list[str]
) -> None:
    """Several adapters (a second added with add_adapter), types no test verifies (AdaLoRA,
    whose rank allocator is outside the state dict; multitask prompt tuning), QLoRA (a 4-bit
    bitsandbytes base): refused, exit 78, before a step, saying what to do."""
    term = _refused(s3, bucket, tmp_path, [sys.executable, str(SCRIPT)], HF_USER_PEFT=kind)
    assert all(s in term["message"] for s in says), term
