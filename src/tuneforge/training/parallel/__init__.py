"""Data-parallel training over several processes.

A run with `devices` N > 1 trains in N processes (ranks). Every rank builds the same model (the
same seed), and rank 0 hands the others its resumed state (weights, optimizer, counters); each
step's micro-batches are planned for all ranks together (`Plan` with the world size) and each
rank passes its share through the model. The loss of a step is a mean over the tokens of every
rank's share (the recipe's denominator is summed over the ranks), and the gradients are summed
over the ranks before the update, so N processes with a batch of B each make exactly the update
one process makes with a batch of N x B (up to the order of float additions). Every rank then
applies the same update. Only rank 0 reports, evaluates, writes checkpoints (the same files as a
one-process run, so a checkpoint resumes with any number of processes) and saves the model.

* `ranks`: the rank contract (torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
  MASTER_PORT), how many ranks a spec trains in, the process group and the collectives the
  training loop uses.
* `sharding`: full fine-tuning over several CUDA GPUs shards the model with FSDP instead of
  keeping a copy of it on every GPU; adapters (LoRA, QLoRA) are small, and every rank keeps
  them whole.
* `rank_training`: one rank's entry point (`train_rank`, which any launcher calls with the rank
  contract set) and what every rank trains.
* `launcher`: the launcher (`launch`), which starts one process per rank and supervises them
  from the job's worker process; `ray_ranks`: ranks 1..N-1 as Ray actors on other nodes, which
  the same supervisor watches.
"""
