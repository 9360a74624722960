"""DDP: two CPU processes (gloo) train a few steps on their own halves of the data and agree on weights."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from test_train import write_shards  # noqa: E402 - shard fixture writer shared with the training tests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, shards: str, out: str, states: str) -> None:
    import os

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), RSSN_PROGRESS="0")
    from gfm_train.train import train

    result = train(out, shards=shards, backbone="tiny", rosta="TT", steps=3, batch_size=2, lr=1e-3, size=64,
                   crop_sizes=(64, 96), workers=0, device="cpu", seed=0, log_every=1)
    torch.save({k: v.clone() for k, v in result.model.state_dict().items()}, Path(states) / f"rank{rank}.pt")


def test_two_gloo_processes_agree(tmp_path):
    write_shards(tmp_path / "shards", n=8, per_shard=2)
    states = tmp_path / "states"
    states.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "shards"), str(tmp_path / "run"), str(states)),
             nprocs=2, join=True)
    a = torch.load(states / "rank0.pt", weights_only=True)
    b = torch.load(states / "rank1.pt", weights_only=True)
    for k in a:
        if k.endswith("running_mean") or k.endswith("running_var") or k.endswith("num_batches_tracked"):
            continue  # batch-norm statistics: DDP broadcasts them before each forward, the last update stays local
        assert torch.equal(a[k], b[k]), k
    # the weights moved, and rank 0 wrote the run folder
    from gfm_train.model import build_gfm, load_checkpoint

    torch.manual_seed(0)
    init = build_gfm("tiny", "TT").state_dict()
    assert not torch.equal(init["glance.decoder4_g.0.weight"], a["glance.decoder4_g.0.weight"])
    net, meta = load_checkpoint(tmp_path / "run" / "last.pth")
    assert meta["config"]["world_size"] == 2 and meta["step"] == 3
    assert torch.equal(net.state_dict()["focus.decoder1_f.0.weight"], a["focus.decoder1_f.0.weight"])
