"""Training loop for GFM (``rssn train``): one device or DDP, CPU or CUDA (+AMP).

Layout of a run folder::

    RUN/run.json             parameters, versions, summary
    RUN/log.csv              one row per logged step (losses, lr, throughput, validation)
    RUN/loss.png             the loss curve
    RUN/last.pth             the latest full checkpoint (model, optimizer, position, RNG)
    RUN/checkpoints/step-0001000.pth   every --checkpoint-every steps
    RUN/model.pth            the final weights, no optimizer (for predict/eval)

Under ``torchrun`` (WORLD_SIZE > 1) every rank trains on its own part of the data
(DistributedDataParallel; gloo on CPU, nccl on GPU) and rank 0 writes the files.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from rssn.io import atomic_path, write_bytes_atomic
from rssn.records import RunRecord, read_run

from .data import CROP_SIZES, OUTPUT_SIZE, MattingStream, make_source
from .losses import gfm_loss
from .model import build_gfm, prepare_input
from .model.checkpoints import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

LOSS_KEYS = ("total", "glance", "focus", "cm", "rim")
Validator = Callable[[torch.nn.Module, int], dict]


@dataclass
class TrainResult:
    out: Path
    steps: int
    epoch: int
    losses: list[float] = field(default_factory=list)
    checkpoint: Path | None = None
    model: torch.nn.Module | None = None
    summary: dict = field(default_factory=dict)


# -- environment --------------------------------------------------------------------
def pick_device(device: str = "auto") -> torch.device:
    """``auto``: the local rank's CUDA device when CUDA is available, else the CPU;
    a device this machine lacks is a ValueError (see :func:`gfm_train.infer.resolve_device`)."""
    from .infer import resolve_device

    return resolve_device(device, local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def _init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), True


def _all_have(flag: bool, world: int, device: torch.device) -> bool:
    """True when every rank still has a batch (ranks stop an epoch together)."""
    if world == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _progress_enabled(rank: int, progress: bool | None) -> bool:
    from rssn.executor import progress_enabled

    return rank == 0 and (progress_enabled() if progress is None else progress)


# -- batches ----------------------------------------------------------------------
def batch_to(batch: dict, device: torch.device, convention: str) -> tuple[torch.Tensor, dict]:
    """Network input and loss targets on ``device`` (images stay 0-255 for the composition loss)."""
    nb = device.type == "cuda"
    image = batch["image"].to(device, non_blocking=nb).float()
    targets = {
        "image": image,
        "fg": batch["fg"].to(device, non_blocking=nb).float(),
        "bg": batch["bg"].to(device, non_blocking=nb).float(),
        "alpha": batch["alpha"].to(device, non_blocking=nb),
        "maps": {k: v.to(device, non_blocking=nb) for k, v in batch["maps"].items()},
    }
    return prepare_input(image, convention), targets


def _loader(stream: MattingStream, batch_size: int, workers: int, device: torch.device) -> DataLoader:
    return DataLoader(stream, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                      drop_last=True, persistent_workers=False)


# -- logs ----------------------------------------------------------------------------
def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))


def _read_csv(path: Path, upto_step: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if int(r["step"]) <= upto_step]


def plot_losses(rows: list[dict], path: Path) -> None:
    """The loss curve (total and parts; validation loss when present) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [int(r["step"]) for r in rows]
    for key in LOSS_KEYS + ("val_loss",):
        vals = [(s, float(r[key])) for s, r in zip(steps, rows) if r.get(key) not in (None, "")]
        if vals:
            ax.plot(*zip(*vals), label=key, marker="o" if key == "val_loss" else None, linewidth=2 if key == "total" else 1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# -- validation --------------------------------------------------------------------------
def make_validator(source, rosta: str, convention: str, size: int, batch_size: int = 4,
                   max_batches: int | None = None) -> Validator:
    """A validation hook: mean GFM loss, alpha MAE and MSE on whole images squashed to ``size``."""
    stream = MattingStream(source, size=size, augment_data=False)

    @torch.no_grad()
    def validate(model: torch.nn.Module, step: int) -> dict:
        device = next(model.parameters()).device
        totals = {"val_loss": 0.0, "val_mae": 0.0, "val_mse": 0.0}
        n = 0
        for i, batch in enumerate(DataLoader(stream, batch_size=batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            x, targets = batch_to(batch, device, convention)
            out = model(x)
            k = x.shape[0]
            totals["val_loss"] += float(gfm_loss(rosta, out, targets)["total"]) * k
            diff = out["alpha"].float() - targets["alpha"]
            totals["val_mae"] += float(diff.abs().mean()) * k
            totals["val_mse"] += float((diff ** 2).mean()) * k
            n += k
        return {key: v / max(n, 1) for key, v in totals.items()} if n else {}

    return validate


# -- the loop -------------------------------------------------------------------------------
def _rng_state(device: torch.device) -> dict:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict | None, device: torch.device) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(
    out: str | Path,
    *,
    shards: str | Path | list | None = None,
    dataset: str | Path | None = None,
    backbone: str = "r34",
    rosta: str = "TT",
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-5,
    size: int = OUTPUT_SIZE,
    crop_sizes: tuple[int, ...] = CROP_SIZES,
    workers: int = 2,
    seed: int = 0,
    pretrained: str | None = None,
    input_convention: str = "imagenet",
    device: str = "auto",
    amp: bool = True,
    checkpoint_every: int = 1000,
    log_every: int = 10,
    shuffle_buffer: int = 1000,
    split: str = "train",
    resume: bool = False,
    validate: Validator | None = None,
    val_every: int = 0,
    progress: bool | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train GFM from composite shards (COMP track) or real photos (ORI track).

    Parameters
    ----------
    out : run folder (see module docs).
    shards, dataset : exactly one: shard folder/files, or a prepared folder / raw layout of real photos.
    backbone, rosta : the network (``tiny`` is the small test backbone).
    steps, epochs : stop after ``steps`` optimizer steps or ``epochs`` passes (one is needed; steps wins).
    batch_size : per rank. lr : Adam learning rate (1e-5 in the published scripts).
    size, crop_sizes : output side and the crop sides drawn before resizing.
    workers : DataLoader processes per rank. seed : every random choice derives from it.
    pretrained : None, "torchvision" or an encoder weights file (new runs only).
    input_convention : "imagenet" (normalised; suits torchvision weights) or "raw255" (the authors').
    device : "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    amp : mixed precision on CUDA (bfloat16 where supported, else float16 with loss scaling).
    checkpoint_every : steps between checkpoints (one is always written at the end).
    log_every : steps between CSV rows. shuffle_buffer : webdataset shuffle buffer (shards only).
    split : the split of ``dataset`` to train on.
    resume : continue from ``out/last.pth`` (same data order and RNG state).
    validate, val_every : a hook ``validate(model, step) -> {name: value}`` run on rank 0 every
        ``val_every`` steps and at the end; its values go to the CSV.
    progress : show a progress bar (default: unless RSSN_PROGRESS=0).
    threads : CPU threads for torch in this process (default: torch's choice). On a shared
        machine fewer threads than cores is often faster.

    Returns
    -------
    TrainResult with the final step, per-step total losses of this run, the last
    checkpoint path and the (unwrapped) model.
    """
    if steps is None and epochs is None:
        raise ValueError("give --steps or --epochs")
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    out = Path(out)
    if threads is not None:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    rank, world, created_group = _init_distributed(dev)
    try:
        return _train(**locals())
    except Exception as e:
        if rank == 0:
            _mark_failed(out, e)
        raise
    finally:
        if created_group and dist.is_initialized():
            dist.destroy_process_group()


def _mark_failed(out: Path, error: Exception) -> None:
    """Record a failed run in run.json (when this run got as far as writing one)."""
    try:
        data = read_run(out)
    except (OSError, ValueError):
        return
    if data.get("status") == "running":
        RunRecord(out, data).finish({**data.get("summary", {}), "error": f"{type(error).__name__}: {error}"},
                                    status="failed")


def _train(*, out: Path, shards, dataset, backbone, rosta, steps, epochs, batch_size, lr, size, crop_sizes, workers,
           seed, pretrained, input_convention, device, amp, checkpoint_every, log_every, shuffle_buffer, split, resume,
           validate, val_every, progress, threads, dev, rank, world, created_group) -> TrainResult:
    config = {
        "shards": [str(s) for s in shards] if isinstance(shards, (list, tuple)) else (str(shards) if shards else None),
        "dataset": str(dataset) if dataset else None, "backbone": backbone, "rosta": rosta, "steps": steps,
        "epochs": epochs, "batch_size": batch_size, "world_size": world, "lr": lr, "size": size,
        "crop_sizes": list(crop_sizes), "workers": workers, "seed": seed, "pretrained": pretrained,
        "input_convention": input_convention, "amp": amp, "checkpoint_every": checkpoint_every,
        "shuffle_buffer": shuffle_buffer, "split": split, "threads": threads,
    }
    source = make_source(shards, dataset, split=split, shuffle_buffer=shuffle_buffer)

    torch.manual_seed(seed)
    last_path = out / "last.pth"
    step, epoch, pos = 0, 0, 0
    ckpt_meta: dict = {}
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"{last_path}: nothing to resume (no checkpoint in {out})")
        model, ckpt_meta = load_checkpoint(last_path, map_location="cpu")
        if (model.backbone, model.rosta) != (backbone, rosta):
            raise ValueError(f"{last_path} holds GFM-{model.backbone}-{model.rosta}, not {backbone}-{rosta}")
        input_convention = config["input_convention"] = ckpt_meta["input_convention"]
        step, epoch = ckpt_meta["step"], ckpt_meta["epoch"]
        pos = int(ckpt_meta.get("position", {}).get("batch", 0))
        old = ckpt_meta.get("config", {})
        for k in ("batch_size", "world_size", "workers", "seed", "size"):
            if k in old and old[k] != config[k]:
                log.warning("resuming with %s=%s (was %s): the data order will differ", k, config[k], old[k])
    else:
        model = build_gfm(backbone, rosta, pretrained=pretrained)
    model.to(dev).train()

    use_amp = amp and dev.type == "cuda"
    amp_dtype = torch.float16 if use_amp and not torch.cuda.is_bf16_supported() else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if resume:
        if "optimizer" in ckpt_meta:
            optimizer.load_state_dict(ckpt_meta["optimizer"])
        if ckpt_meta.get("scaler"):
            scaler.load_state_dict(ckpt_meta["scaler"])
        _restore_rng(ckpt_meta.get("rng"), dev)

    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    total_steps = steps if steps is not None else None
    stream = MattingStream(source, seed=seed, crop_sizes=crop_sizes, size=size, rank=rank, world_size=world)
    record = RunRecord.start(out, "train", config, seed=seed) if rank == 0 else None
    csv_path = out / "log.csv"
    rows = _read_csv(csv_path, step) if rank == 0 else []

    def save(final: bool = False) -> Path:
        rng = _rng_state(dev)
        extra = {"position": {"epoch": epoch, "batch": pos}}
        if scaler.is_enabled():
            extra["scaler"] = scaler.state_dict()
        save_checkpoint(last_path, model, input_convention=input_convention, optimizer=optimizer, step=step,
                        epoch=epoch, config=config, rng=rng, extra=extra)
        if checkpoint_every and step % checkpoint_every == 0:
            save_checkpoint(out / "checkpoints" / f"step-{step:07d}.pth", model, input_convention=input_convention,
                            optimizer=optimizer, step=step, epoch=epoch, config=config, rng=rng, extra=extra)
        if final:
            save_checkpoint(out / "model.pth", model, input_convention=input_convention, step=step, epoch=epoch,
                            config=config)
        return last_path

    def run_validation() -> dict:
        if validate is None:
            return {}
        vals: dict = {}
        if rank == 0:
            model.eval()
            vals = validate(model, step)
            model.train()
        if world > 1:
            dist.barrier()
        return vals

    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not _progress_enabled(rank, progress),
               dynamic_ncols=True)
    losses: list[float] = []
    t_start = time.perf_counter()
    window_t, window_n = time.perf_counter(), 0
    samples_seen = 0

    def done() -> bool:
        if total_steps is not None:
            return step >= total_steps
        return epoch >= epochs

    while not done():
        stream.set_position(epoch, pos, batch_size)
        it = iter(_loader(stream, batch_size, workers, dev))
        got_any = pos > 0
        while not done():
            batch = next(it, None)
            if not _all_have(batch is not None, world, dev):
                break
            got_any = True
            x, targets = batch_to(batch, dev, input_convention)
            with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=use_amp):
                outputs = net(x)
            parts = gfm_loss(rosta, outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts["total"]).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            pos += 1
            n = x.shape[0] * world
            samples_seen += n
            window_n += n
            loss_value = float(parts["total"].detach())
            losses.append(loss_value)
            bar.update(1)
            now = time.perf_counter()
            rate = window_n / max(now - window_t, 1e-9)
            bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{rate:.1f}", epoch=epoch)
            val = run_validation() if val_every and step % val_every == 0 else {}
            last = done()
            if rank == 0 and (step % max(log_every, 1) == 0 or last or val):
                row = {"step": step, "epoch": epoch, **{k: f"{float(v.detach()):.6f}" for k, v in parts.items()},
                       "lr": optimizer.param_groups[0]["lr"], "samples_per_s": f"{rate:.2f}",
                       "elapsed_s": f"{now - t_start:.1f}", **{k: f"{v:.6f}" for k, v in val.items()}}
                rows.append(row)
                window_t, window_n = now, 0
            if rank == 0 and checkpoint_every and step % checkpoint_every == 0 and not last:
                save()
                _write_csv(csv_path, rows)
        else:
            break  # finished by step count inside the epoch
        if not got_any:
            raise ValueError("the training data yielded no batch (fewer samples than --batch-size per rank?)")
        epoch, pos = epoch + 1, 0

    bar.close()
    final_val = run_validation() if validate is not None and not (val_every and step % val_every == 0) else {}
    if final_val and rank == 0:
        rows.append({"step": step, "epoch": epoch, **{k: f"{v:.6f}" for k, v in final_val.items()}})
    ckpt = None
    if rank == 0:
        ckpt = save(final=True)
        _write_csv(csv_path, rows)
        if rows:
            plot_losses(rows, out / "loss.png")
        elapsed = time.perf_counter() - t_start
        summary = {"steps": step, "epoch": epoch, "final_loss": losses[-1] if losses else None,
                   "first_loss": losses[0] if losses else None, "seconds": round(elapsed, 1),
                   "samples_per_s": round(samples_seen / max(elapsed, 1e-9), 2), "device": str(dev),
                   "world_size": world, "amp": str(amp_dtype).replace("torch.", "") if use_amp else None,
                   "checkpoint": "last.pth", "model": "model.pth", **final_val}
        record.finish(summary)
    else:
        summary = {}
    if world > 1:
        dist.barrier()
    return TrainResult(out=out, steps=step, epoch=epoch, losses=losses, checkpoint=ckpt, model=model, summary=summary)
