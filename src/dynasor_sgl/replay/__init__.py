"""Replaying recorded full-budget runs: the replay engine, labelled runs, calibration,
held-out folds."""
