// Data-parallel supernet training: what one process needs to train its shard of every batch in
// lock step with the others (PyTorch DDP's scheme).  Every rank holds the same supernet, draws the
// same batches and paths from the shared seed, computes the loss on its contiguous rows of each
// batch scaled by its share of the rows, and the gradients are summed over the ranks before the
// same optimizer step everywhere, so the weights stay identical and equal, up to summation order,
// to one process's on the whole batch.  oneshot/ never sees the transport: search/ fills the two
// collectives over MPI (search/mpi_data_parallel.hpp).  A default DataShard is one process.
//
// Batch norm: a rank normalises with its shard's batch statistics (as DDP without SyncBatchNorm
// does), so a network with batch norm trains on per-shard statistics.  spos averages the running
// statistics a step writes back over the ranks (weighted by share: the running mean becomes the
// whole batch's, the variance the shards' mean), so its banks stay identical and rank 0 can score
// subnets with them; darts leaves them per rank, as it never reads them (it derives from alpha).
#pragma once

#include <functional>
#include <utility>
#include <vector>

#include "evaluators/datasets.hpp"
#include "nn/autograd.hpp"

namespace hwnas::oneshot {

struct DataShard {
  int rank = 0;
  int ranks = 1;
  // Element-wise sum over all ranks, in place.  A collective: every rank calls it at the same
  // point of the training with a buffer of the same length.
  std::function<void(std::vector<float>&)> all_reduce_sum;
  // True iff every rank passed true.  A collective, called once before the first step, so a rank
  // whose setup failed (data, device) makes all ranks stop instead of waiting in a sum forever.
  std::function<bool(bool ok)> all_ok;

  bool active() const { return ranks > 1; }
  // This rank's rows [begin, end) of a batch of n rows: contiguous, sizes differ by at most one.
  std::pair<int, int> rows(int n) const;
  // The loss factor of this rank's rows, so the summed gradient is the whole batch's mean one.
  float share(int n) const;
};

// This rank's rows of `b` (all of it for one process).  Throws std::invalid_argument when the
// batch has fewer rows than there are ranks.
eval::Batch shard_batch(const eval::Batch& b, const DataShard& s);

// One gradient exchange in a single all-reduce of one flat buffer: the gradients of `params`,
// then `extra` (losses, statistics), summed over the ranks and written back in place.  A
// parameter no gradient reached on some rank gets the summed one iff any rank had one (a flag per
// parameter travels in the same buffer), so every rank steps the same parameters.
void all_reduce_gradients(const std::vector<nn::Var>& params, std::vector<float>& extra,
                          const DataShard& s);

}  // namespace hwnas::oneshot
