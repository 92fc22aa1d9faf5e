// `hwnas train --db F --arch ID [--run RUN] [--epochs N] [--seed S] [--out weights.bin]`:
// retrains one stored architecture from scratch at full fidelity and measures it once on the
// held-out test split.
//
//   * The genome comes from the database (ID: numeric id or unique hash prefix, as `hwnas show`);
//     the task, the training schedule and the seed come from the stored config of --run (default:
//     the latest run that evaluated the architecture).  Only runs whose evaluator is "train" can
//     be retrained (a tabular run has no training recipe).
//   * Full fidelity: every training sample of the task (the config's train_subset is ignored;
//     the validation split stays held out of the training images exactly as the config says),
//     the configured optimiser and cosine schedule over --epochs (default: the config's epochs),
//     one progress line per epoch with elapsed time and ETA.
//   * Then, exactly once, the task's TEST split (Fashion-MNIST: the 10k t10k files, loaded only
//     here; generated tasks: a fresh sample from a seed no search uses) is scored and stored in
//     the database's test_results table, which no strategy or front ever reads; `hwnas show`
//     prints it under "TEST (held out; not used for selection)".
//   * The weights are saved in the module state format (nn/state_file.hpp; written to a
//     temporary file and renamed), and the batch-1 host latency of the trained model is measured.
//
// Hidden option for tests and quick looks: --train-subset N trains on the first N training
// samples only; the stored figure then records "train_subset": N so it is never mistaken for a
// full-fidelity result.
// Errors: one "error: ..." line; exit 2 for bad input (missing database, unknown architecture or
// run, a run that is not trained by the "train" evaluator), 1 for anything else.
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_train_command(CLI::App& app);

}  // namespace hwnas::search
