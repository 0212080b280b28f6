"""Worker for the DDP test: trains a tiny model for a few steps and saves the weights.

Run under ``torchrun --nproc_per_node=2 tests/ddp_worker.py OUT [REFERENCE_BATCH]`` (gloo on CPU)
or as a plain process (one rank with the whole batch); writes OUT/rank<r>.pt.
"""
import os
import sys

import torch

import anydiff as ad
from anydiff.nn import ResidualMLP
from anydiff.training import Trainer


def main(out: str, reference_batch: int = 0) -> None:
    torch.manual_seed(0)
    model = ResidualMLP(2, hidden=32, depth=2)
    X = torch.randn(512, 2, generator=torch.Generator().manual_seed(1)) * torch.tensor([2.0, 0.5])
    trainer = Trainer(model, ad.schedules.cosine(100), batch_size=64, max_steps=6, learning_rate=1e-2,
                      warmup_steps=2, reference_batch=reference_batch, device="cpu", verbose=False, log_every=3,
                      seed=3)
    trainer.fit(X)
    rank = int(os.environ.get("RANK", "0"))
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, os.path.join(out, f"rank{rank}.pt"))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
