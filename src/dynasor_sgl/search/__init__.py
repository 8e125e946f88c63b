"""Search over branches: voting among sampled answers and the tree that MCTS and REBASE grow."""
